"""``python -m receiver``: run the receiver service (settings: SEMCOM_* env vars)."""

from shared.serving.service import load_codec, load_diffusion_decoders, main

from .server import ReceiverService, register


def build(config):
    codec = load_codec(config)
    service = ReceiverService(config, codec, load_diffusion_decoders(config, codec))
    return register(service), service.close


if __name__ == "__main__":
    main("Receiver", "receiver_port", "receiver_metrics_port", build)
