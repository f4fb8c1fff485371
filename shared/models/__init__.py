"""Neural networks of semcom (kept apart from channel, scheduling and service code)."""

from .deepjscc import DeepJSCC, DeepJSCCConfig, latent_to_symbols, symbols_to_latent
from .rate_adaptive import RateAdaptiveConfig, RateAdaptiveJSCC

__all__ = ["DeepJSCC", "DeepJSCCConfig", "RateAdaptiveConfig", "RateAdaptiveJSCC", "latent_to_symbols",
           "symbols_to_latent"]
