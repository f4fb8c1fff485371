"""``python -m receiver``: run the receiver service (settings: SEMCOM_* env vars)."""

from shared.service import load_model, load_diffusion_decoders, main

from .server import ReceiverService, register


def build(config):
    model = load_model(config)
    service = ReceiverService(config, model, load_diffusion_decoders(config, model))
    return register(service), service.close


if __name__ == "__main__":
    main("Receiver", "receiver_port", "receiver_metrics_port", build)
