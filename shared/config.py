"""One source of truth for configuration.

Every field has a default; each can be overridden by an environment variable named
``SEMCOM_<FIELD>`` (upper case), e.g. ``SEMCOM_RECEIVER_PORT=60053``. Values are parsed
to the field's type. :func:`load_config` is the only way services and the CLI obtain
their settings.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
WEIGHTS_DIR = REPO_ROOT / "weights"
BASELINE_WEIGHTS = REPO_ROOT / "weights" / "deepjscc_baseline.safetensors"
RATE_ADAPTIVE_WEIGHTS = REPO_ROOT / "weights" / "rate_adaptive.safetensors"
ROBUST_WEIGHTS = REPO_ROOT / "weights" / "rate_adaptive_robust.safetensors"  # robust transmitter, same receiver
VAE_UPSAMPLER_WEIGHTS = tuple(REPO_ROOT / "weights" / f"vae_upsampler_x{r}.safetensors" for r in (2, 4))  # baseline + F_d/F_u
DEFAULT_WEIGHTS = RATE_ADAPTIVE_WEIGHTS  # the codec the services serve unless SEMCOM_WEIGHTS says otherwise
SAMPLE_IMAGES = REPO_ROOT / "samples"  # three Kodak photos shipped in the repository (samples/README.md)
KODAK_IMAGES = REPO_ROOT.parent / "shared" / "data" / "kodak"  # the full evaluation set, beside a checkout


@dataclass(frozen=True)
class ServiceSettings:
    """Settings shared by the three services and the client, but the decoder modes' weights
    (:data:`SemcomConfig` adds those)."""

    # Network endpoints (gRPC). The services listen (gRPC and /metrics) on bind_host, by default
    # on host: loopback unless an address of choice is configured (compose and Kubernetes set 0.0.0.0).
    host: str = "127.0.0.1"
    bind_host: str = ""
    # gRPC server reflection (lists every service and message to any client): off unless enabled.
    reflection: bool = False
    # Security (shared/serving/security.py). TLS: this process's certificate and key and the CA of
    # the services' and clients' certificates (PEM files; scripts/make_certs.sh makes a dev CA); the
    # channel emulator and receiver then require a client certificate (mTLS). Without them the
    # services speak plaintext: on loopback, elsewhere only with plaintext = true.
    tls_cert_file: str = ""
    tls_key_file: str = ""
    tls_ca_file: str = ""
    plaintext: bool = False
    # Authentication: "<token> <identity>" lines; a client's identity is its user_id, "@service" the
    # services' own (the only one admitted to the internal RPCs). "": no authentication.
    auth_tokens_file: str = ""
    # The token a client presents (a service presents the "@service" token of auth_tokens_file).
    token: str = ""
    transmitter_port: int = 50051
    channel_port: int = 50052
    receiver_port: int = 50053
    # Where each service looks for its downstream peer; empty means host:port above.
    channel_address: str = ""
    receiver_address: str = ""
    # Prometheus exporters (HTTP /metrics), one per service.
    transmitter_metrics_port: int = 9101
    channel_metrics_port: int = 9102
    receiver_metrics_port: int = 9103
    # Servers close each client connection after this many seconds (0: never; streams in
    # flight finish first), so clients re-resolve DNS and spread over replicas that were
    # added later (docker compose up --scale receiver=N).
    grpc_max_connection_age_s: float = 0.0
    # gRPC message size limit in bytes; a 24 MP photo as PNG or its symbols fit.
    max_message_bytes: int = 256 * 1024 * 1024
    # Input validation.
    max_image_pixels: int = 40_000_000
    # Decoding cost bound: pixels an input image may have per byte of its file (a 1.2 kB PNG of
    # 3000x3000 one-bit pixels is 7500; photos are under 10, flat synthetic images under 500).
    max_image_pixels_per_byte: float = 1000.0
    max_image_bytes: int = 64 * 1024 * 1024
    min_image_side: int = 16
    min_snr_db: float = -10.0
    max_snr_db: float = 40.0
    # Model and compute.
    weights: str = str(DEFAULT_WEIGHTS)
    # The networks of the receiver's decoder modes are fields too, one per network a registered
    # mode needs (shared.decoding: teacher_weights, consistency_weights, generative_weights,
    # finetune_weights; "" = none: its modes are not served), added below.
    # Folder of the learned perceptual metrics' networks (lpips.pt2, dists.pt2: shared.perceptual)
    # that `semcom eval` and `semcom send --json` score with; "" or a missing file skips that metric.
    perceptual_weights: str = ""
    device: str = "auto"  # "auto" | "cpu" | "cuda" | "cuda:N"
    torch_threads: int = 0  # 0: leave PyTorch's default
    # Runtime of the codec's analysis/synthesis networks (shared.models.runtime): "auto" (onnx on
    # the CPU, eager on CUDA) | "eager" | "compile" (torch.compile, inductor) | "onnx" (ONNX Runtime).
    runtime: str = "auto"
    # Receiver scheduling (MU-GSC): concurrent workers, bounded queue, dynamic batching.
    receiver_workers: int = 2
    receiver_queue_size: int = 256
    receiver_max_batch: int = 8  # images decoded together (same grid, rate and mode)
    receiver_max_wait_ms: float = 2.0  # how long a worker waits to fill a batch
    receiver_scheduler: str = "fair"  # "fair": per-user round robin; "fifo": arrival order
    # Out-of-distribution latent adapters (Transmitter.Adapt): users whose adapters the receiver
    # keeps (least recently used evicted), and the most images one Adapt request may carry.
    receiver_adapter_cache: int = 1024
    adapt_max_images: int = 8
    # Transmitter encoder and channel emulator: workers behind one bounded queue each,
    # served per user round robin ("fair") or in arrival order ("fifo").
    transmitter_workers: int = 2
    transmitter_queue_size: int = 256
    transmitter_scheduler: str = "fair"
    channel_workers: int = 2
    channel_queue_size: int = 256
    channel_scheduler: str = "fair"
    # Per-user admission: requests one user may have in each service's queue and workers at once
    # (0: no quota); beyond it that user is answered RESOURCE_EXHAUSTED, the others are admitted.
    user_quota: int = 64
    # Channel kinds whose users share slots (mu_mimo): how long a slot's first frame waits for the
    # frames of other users (up to the slot's K) before it is sent with those that came.
    channel_slot_window_ms: float = 5.0
    # Logging.
    log_level: str = "INFO"

    @property
    def listen_host(self) -> str:
        """The address the services' gRPC servers and metrics exporters bind."""
        return self.bind_host or self.host

    @property
    def channel_target(self) -> str:
        return self.channel_address or f"{self.host}:{self.channel_port}"

    @property
    def receiver_target(self) -> str:
        return self.receiver_address or f"{self.host}:{self.receiver_port}"

    @property
    def transmitter_target(self) -> str:
        return f"{self.host}:{self.transmitter_port}"

    def resolve_device(self) -> str:
        """The torch device string: ``cuda`` when present and asked for by ``auto``."""
        if self.device != "auto":
            return self.device
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"


def _decoder_weight_fields() -> list[tuple[str, type, dataclasses.Field]]:
    """One ``<network>_weights`` field per network the registered decoder modes need
    (:func:`shared.decoding.mode_weights`), defaulting to its shipped file."""
    from .decoding import mode_weights

    return [(w.config_field, str, dataclasses.field(default=str(WEIGHTS_DIR / w.default_file)))
            for w in mode_weights().values()]


SemcomConfig = dataclasses.make_dataclass("SemcomConfig", _decoder_weight_fields(), bases=(ServiceSettings,),
                                          frozen=True)
SemcomConfig.__module__ = __name__
SemcomConfig.__doc__ = """Settings shared by the three services and the client: :class:`ServiceSettings` and
the decoder modes' weight paths."""


def _parse(value: str, kind: type):
    if kind is bool:
        return value.strip().lower() in {"1", "true", "yes", "on"}
    return kind(value)


def load_config(**overrides) -> SemcomConfig:
    """Defaults, then ``SEMCOM_*`` environment variables, then explicit ``overrides``."""
    values = {}
    for f in dataclasses.fields(SemcomConfig):
        env = os.environ.get(f"SEMCOM_{f.name.upper()}")
        if env is not None:
            kind = type(f.default)
            try:
                values[f.name] = _parse(env, kind)
            except ValueError as exc:
                raise ValueError(f"SEMCOM_{f.name.upper()}={env!r} is not a valid {kind.__name__}") from exc
    values.update({k: v for k, v in overrides.items() if v is not None})
    return SemcomConfig(**values)
