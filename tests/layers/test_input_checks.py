"""Input and argument checks of every attention block: empty batches, empty feature maps, bad constructor
arguments, and ``torch.fx`` symbolic tracing (which must not trip over the checks)."""

import inspect
import math
import re

import pytest
import torch

from psa_zoo.layers import create_attn, get_attn, list_attn
from psa_zoo.layers._helpers import is_symbolic_tracing

BLOCKS = list_attn()
# (block, impl) pairs: every block once, blocks with an ``impl=`` switch once per implementation.
VARIANTS = [
    (name, impl)
    for name in BLOCKS
    for impl in (("fast", "reference") if "impl" in inspect.signature(get_attn(name)).parameters else (None,))
]
VARIANT_IDS = [name if impl is None else f"{name}-{impl}" for name, impl in VARIANTS]


def _build(name: str, impl: str | None, channels: int = 16) -> torch.nn.Module:
    """The block with random weights (zero-initialised outputs and γ = 0 would hide most of the math)."""
    block = create_attn(name, channels, **({} if impl is None else {"impl": impl}))
    with torch.no_grad():
        for param in block.parameters():
            param.copy_(torch.randn_like(param) * 0.3 + (0.5 if param.numel() == 1 else 0.0))
    return block


@pytest.mark.parametrize(("name", "impl"), VARIANTS, ids=VARIANT_IDS)
@pytest.mark.parametrize("train", [False, True], ids=["eval", "train"])
def test_empty_batch_gives_an_empty_output_and_gradient(name, impl, train):
    block = _build(name, impl).train(train)
    x = torch.zeros(0, 16, 5, 7, requires_grad=True)
    out = block(x)
    assert out.shape == (0, 16, 5, 7)
    out.sum().backward()
    assert x.grad.shape == x.shape


@pytest.mark.parametrize(("name", "impl"), VARIANTS, ids=VARIANT_IDS)
@pytest.mark.parametrize("shape", [(2, 16, 0, 7), (2, 16, 5, 0), (0, 16, 0, 0)], ids=str)
def test_empty_feature_map_is_one_clear_error_for_every_block(name, impl, shape):
    block = _build(name, impl)
    with pytest.raises(ValueError) as error:
        block(torch.zeros(shape))
    owner, rest = str(error.value).split(" was built for ", 1)
    assert owner == type(block).__name__
    assert rest == (
        f"16 channels and expects an input [N, 16, H, W] with H, W ≥ 1, got shape {shape}: a feature map "
        "without positions has nothing to attend over; leave it out before the block (an empty batch, "
        "N = 0, is fine)"
    )


@pytest.mark.parametrize("name", BLOCKS)
def test_wrong_channel_count_says_how_to_fix_it(name):
    block = create_attn(name, 16)
    with pytest.raises(ValueError, match=r"got shape \(2, 8, 4, 4\): build the block with channels=8"):
        block(torch.zeros(2, 8, 4, 4))


@pytest.mark.parametrize("name", BLOCKS)
@pytest.mark.parametrize("channels", [0, -4, 16.0, True])
def test_bad_channels_are_rejected_by_the_block_itself(name, channels):
    with pytest.raises(ValueError, match=rf"channels.*{re.escape(repr(channels))}"):
        get_attn(name)(channels)  # not through create_attn, which checks channels before the block


BAD_ARGUMENTS = [
    ("se", "rd_ratio", 0),
    ("se", "rd_ratio", -0.25),
    ("se", "rd_ratio", math.nan),
    ("se", "rd_channels", 0),
    ("se", "rd_channels", -2),
    ("cbam", "reduction", 0),
    ("cbam", "reduction", -16),
    ("cbam", "kernel_size", 6),
    ("cbam", "kernel_size", 0),
    ("cbam", "kernel_size", -7),
    ("cbam", "kernel_size", 7.0),
    ("gc", "ratio", 0),
    ("gc", "ratio", -1 / 16),
    ("nl", "reduction", 0),
    ("nl", "reduction", -2),
    ("ea", "num_heads", 0),
    ("ea", "num_heads", -1),
    ("ea", "num_heads", 3),
    ("ea", "key_channels", 0),
    ("ea", "value_channels", -8),
    ("psa_p", "channels", 7),
    ("psa_s", "channels", 4),
    ("psa_p_paper", "channels", 15),
    ("psa_s_paper", "channels", 9),
]


@pytest.mark.parametrize(("name", "arg", "value"), BAD_ARGUMENTS, ids=lambda v: str(v))
def test_bad_constructor_arguments_name_the_argument_and_the_value(name, arg, value):
    kwargs = {"channels": 16, arg: value}
    with pytest.raises(ValueError, match=rf"{arg}.*{re.escape(repr(value))}") as error:
        get_attn(name)(**kwargs)
    assert re.search(r"must|needs", str(error.value)), "the message must say what is accepted"


def test_cbam_odd_kernel_sizes_are_accepted():
    for kernel_size in (1, 3, 7):
        block = create_attn("cbam", 16, kernel_size=kernel_size).eval()
        assert block(torch.zeros(1, 16, 5, 5)).shape == (1, 16, 5, 5)


@pytest.mark.parametrize(("name", "impl"), VARIANTS, ids=VARIANT_IDS)
def test_fx_symbolic_trace_matches_eager_outputs_and_gradients(name, impl):
    block = _build(name, impl).eval()
    traced = torch.fx.symbolic_trace(block)
    x = torch.randn(2, 16, 5, 7)
    eager_x, traced_x = x.clone().requires_grad_(), x.clone().requires_grad_()
    expected, out = block(eager_x), traced(traced_x)
    torch.testing.assert_close(out, expected)
    expected.square().sum().backward()
    out.square().sum().backward()
    torch.testing.assert_close(traced_x.grad, eager_x.grad)
    assert traced(torch.zeros(0, 16, 3, 4)).shape == (0, 16, 3, 4)
    assert not is_symbolic_tracing()  # the flag is only up while tracing


@pytest.mark.parametrize("name", ["psa_p", "psa_s_paper"])
def test_fx_keeps_the_gate_products_as_leaf_calls(name):
    """The gate products pick their memory-saving autograd function at run time: traced, they stay calls."""
    graph = torch.fx.symbolic_trace(create_attn(name, 16)).graph
    targets = {getattr(node.target, "__name__", None) for node in graph.nodes if node.op == "call_function"}
    assert targets & {"apply_parallel_gates", "apply_sequential_gates"}
