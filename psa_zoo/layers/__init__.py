"""Attention blocks of PSA's Table 1 behind one registry.

>>> from psa_zoo.layers import create_attn, list_attn
>>> block = create_attn("psa_p", 64)          # [N, 64, H, W] → [N, 64, H, W]

Every block takes ``channels`` first, so a class or ``functools.partial`` also fits timm's ``attn_layer=``.
Inputs are ``[N, C, H, W]`` with H, W ≥ 1 (an empty batch, N = 0, gives an empty output); anything else
raises one ``ValueError`` wording for all blocks. The checks stand aside under ``torch.fx`` symbolic
tracing and keep running under ``torch.compile`` / ``torch.export``.

``record_attention(model)`` records the gates of a model's PSA, SE and CBAM blocks for an input, without
changing the output (``attention_maps.py``).
"""

from ._registry import attn_factory, create_attn, get_attn, list_attn, register_attn
from .attention_maps import AttentionMaps, AttentionRecord, list_attention_blocks, record_attention
from .cbam import Cbam
from .dual_attention import ChannelAttention, DualAttention, PositionAttention
from .efficient_attention import EfficientAttention
from .global_context import GlobalContext
from .non_local import NonLocal2d
from .psa import PsaP, PsaS
from .psa_paper import PsaPaperP, PsaPaperS
from .simplified_non_local import SimplifiedNonLocal2d
from .squeeze_excite import SqueezeExcite

register_attn("psa_p", PsaP)
register_attn("psa_s", PsaS)
register_attn("psa_p_paper", PsaPaperP)
register_attn("psa_s_paper", PsaPaperS)
register_attn("nl", NonLocal2d)
register_attn("snl", SimplifiedNonLocal2d)
register_attn("gc", GlobalContext)
register_attn("se", SqueezeExcite)
register_attn("cbam", Cbam)
register_attn("da", DualAttention)
register_attn("ea", EfficientAttention)

__all__ = [
    "AttentionMaps",
    "AttentionRecord",
    "Cbam",
    "ChannelAttention",
    "DualAttention",
    "EfficientAttention",
    "GlobalContext",
    "NonLocal2d",
    "PositionAttention",
    "PsaP",
    "PsaPaperP",
    "PsaPaperS",
    "PsaS",
    "SimplifiedNonLocal2d",
    "SqueezeExcite",
    "attn_factory",
    "create_attn",
    "get_attn",
    "list_attention_blocks",
    "list_attn",
    "record_attention",
    "register_attn",
]
