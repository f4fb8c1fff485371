"""Neural networks of semcom (kept apart from channel, scheduling and service code)."""

from .deepjscc import DeepJSCC, DeepJSCCConfig, latent_to_symbols, symbols_to_latent

__all__ = ["DeepJSCC", "DeepJSCCConfig", "latent_to_symbols", "symbols_to_latent"]
