"""Offline measurements of the codecs (quality versus channel, speed)."""
