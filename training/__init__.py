"""Training scripts and their configs (they write the weights shipped in weights/)."""
