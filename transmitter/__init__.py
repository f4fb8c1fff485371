"""Transmitter service: semantic encoder, power normalization, symbol streaming."""
