"""Channel emulator service: fading and noise per user, channel state for the receiver."""
