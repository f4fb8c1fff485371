"""``python -m channel_emulator``: run the channel emulator service (settings: SEMCOM_* env vars)."""

from shared.serving.service import main

from .server import ChannelEmulatorService, register


def build(config):
    service = ChannelEmulatorService(config)
    return register(service), service.close


if __name__ == "__main__":
    main("ChannelEmulator", "channel_port", "channel_metrics_port", build)
