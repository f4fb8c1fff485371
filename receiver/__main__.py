"""``python -m receiver``: run the receiver service (settings: SEMCOM_* env vars)."""

from shared.service import load_model, main

from .server import ReceiverService, register


def build(config):
    service = ReceiverService(config, load_model(config))
    return register(service), service.close


if __name__ == "__main__":
    main("Receiver", "receiver_port", "receiver_metrics_port", build)
