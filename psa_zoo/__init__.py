"""psa_zoo: Polarized Self-Attention (Liu et al., 2021, arXiv 2107.00782) and its comparison blocks."""

from . import layers
from .layers import create_attn, list_attn

__version__ = "0.1.0.dev0"

__all__ = ["__version__", "create_attn", "layers", "list_attn"]
