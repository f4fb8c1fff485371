"""The out-of-distribution latent adapter g_w of paper 003 sec. III-D, eq. 14.

A single linear layer over the channels of the latent the synthesis (generator) reads:
``z_hat = W z + b`` at every token, with W (C, C) and b (C,). For the rate-adaptive codec it
sits between the rate decoder f_d and the synthesis g_s (:meth:`RateAdaptiveJSCC.reconstruct`,
C = 2K = 128 real channels). W = I, b = 0 is the identity: in-domain traffic.

The parameters are per image: a batch of B latents is transformed by B (W, b) pairs in one
einsum (a batch may mix users, and users without an adapter ride along as the identity).

Wire format of one adapter (:meth:`LatentAdapter.to_bytes`), little endian:
``b"SCLA" | version u16 | channels u16 | W (C*C float16, row-major) | b (C float16)``.
"""

from __future__ import annotations

import struct

import numpy as np
import torch
from torch import nn

ADAPTER_MAGIC = b"SCLA"
ADAPTER_FORMAT_VERSION = 1
_HEADER = struct.Struct("<4sHH")


def adapter_bytes(channels: int) -> int:
    """Size in bytes of the wire format of a ``channels``-channel adapter."""
    return _HEADER.size + 2 * (channels * channels + channels)


class LatentAdapter(nn.Module):
    """g_w(z) = W z + b over the channel axis, one (W, b) per image.

    Shapes: weight (B, C, C) (row o holds the weights of output channel o), bias (B, C);
    latent (B, C, h, w) -> (B, C, h, w). A batch-1 adapter applies to every image.
    """

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor):
        super().__init__()
        if weight.dim() != 3 or weight.shape[1] != weight.shape[2] or bias.shape != weight.shape[:2]:
            raise ValueError(f"adapter needs weight (B, C, C) and bias (B, C), got {tuple(weight.shape)} "
                             f"and {tuple(bias.shape)}")
        self.weight = nn.Parameter(weight.float())
        self.bias = nn.Parameter(bias.float())

    @property
    def channels(self) -> int:
        return self.weight.shape[-1]

    @property
    def parameter_count(self) -> int:
        """Learned numbers of one image's adapter, C^2 + C."""
        return self.channels * self.channels + self.channels

    @classmethod
    def identity(cls, channels: int, batch: int = 1) -> "LatentAdapter":
        """W = I, b = 0: leaves the latent unchanged (bit for bit)."""
        return cls(torch.eye(channels).expand(batch, channels, channels).clone(), torch.zeros(batch, channels))

    @classmethod
    def stack(cls, adapters: list["LatentAdapter | None"], channels: int) -> "LatentAdapter":
        """One batch-1 adapter per image (``None`` = identity) -> a batch-B adapter."""
        identity = cls.identity(channels)
        chosen = [identity if adapter is None else adapter for adapter in adapters]
        if any(adapter.channels != channels or adapter.weight.shape[0] != 1 for adapter in chosen):
            raise ValueError(f"every adapter of a batch must be a single {channels}-channel adapter")
        return cls(torch.cat([a.weight.detach() for a in chosen]), torch.cat([a.bias.detach() for a in chosen]))

    def forward(self, latent: torch.Tensor) -> torch.Tensor:
        weight, bias = self.weight.to(latent), self.bias.to(latent)
        if weight.shape[0] == 1:
            return torch.einsum("oc,bchw->bohw", weight[0], latent) + bias[0][None, :, None, None]
        return torch.einsum("boc,bchw->bohw", weight, latent) + bias[:, :, None, None]

    def to_bytes(self) -> bytes:
        """The wire format (module doc) of a batch-1 adapter; float16, so
        :meth:`from_bytes` returns the parameters rounded to float16."""
        if self.weight.shape[0] != 1:
            raise ValueError("only a single image's adapter is serialized")
        values = torch.cat([self.weight.detach()[0].flatten(), self.bias.detach()[0]]).cpu().numpy()
        return _HEADER.pack(ADAPTER_MAGIC, ADAPTER_FORMAT_VERSION, self.channels) + values.astype("<f2").tobytes()

    @classmethod
    def from_bytes(cls, payload: bytes, channels: int) -> "LatentAdapter":
        """Inverse of :meth:`to_bytes` for a codec whose latent has ``channels`` channels;
        ``ValueError`` on a payload of another format, version, size or with non-finite values."""
        if len(payload) < _HEADER.size:
            raise ValueError(f"adapter payload of {len(payload)} bytes is shorter than its {_HEADER.size}-byte header")
        magic, version, size = _HEADER.unpack_from(payload)
        if magic != ADAPTER_MAGIC:
            raise ValueError("adapter payload does not start with the SCLA magic")
        if version != ADAPTER_FORMAT_VERSION:
            raise ValueError(f"adapter format version {version} is not served (this release reads "
                             f"{ADAPTER_FORMAT_VERSION})")
        if size != channels:
            raise ValueError(f"adapter is for a {size}-channel latent, the codec's has {channels}")
        if len(payload) != adapter_bytes(channels):
            raise ValueError(f"adapter payload is {len(payload)} bytes, a {channels}-channel adapter is "
                             f"{adapter_bytes(channels)}")
        values = torch.from_numpy(np.frombuffer(payload, dtype="<f2", offset=_HEADER.size).astype(np.float32))
        if not torch.isfinite(values).all():
            raise ValueError("adapter parameters are not all finite")
        weight, bias = values[: channels * channels], values[channels * channels:]
        return cls(weight.reshape(1, channels, channels), bias[None])
