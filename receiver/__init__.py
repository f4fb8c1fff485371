"""Receiver service: equalization, decoding and reconstruction, served by a worker pool."""
