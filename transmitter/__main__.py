"""``python -m transmitter``: run the transmitter service (settings: SEMCOM_* env vars)."""

from shared.serving.service import load_codec, main

from .server import TransmitterService, register


def build(config):
    service = TransmitterService(config, load_codec(config))
    return register(service), service.close


if __name__ == "__main__":
    main("Transmitter", "transmitter_port", "transmitter_metrics_port", build)
