"""PSA: fast form = reference form, parameter counts, init, and fidelity to the released code."""

import zlib
from collections import defaultdict

import pytest
import torch
from safetensors.torch import load_file

from psa_zoo.bench._measure import saved_for_backward
from psa_zoo.layers import PsaP, PsaPaperP, PsaPaperS, PsaS, create_attn
from psa_zoo.layers._helpers import apply_parallel_gates, apply_sequential_gates, gated_product, gated_sum
from tests.conftest import relative_error
from tests.keylists import read_key_list

PSA_NAMES = ["psa_p", "psa_s", "psa_p_paper", "psa_s_paper"]
# (N, C, H, W): odd sizes, H or W = 1, batch 1, the HRNet-W48 widths at small maps.
FAST_SHAPES = [
    (2, 16, 8, 8),
    (1, 8, 1, 1),
    (3, 32, 1, 17),
    (2, 48, 9, 1),
    (1, 96, 5, 7),
    (2, 64, 13, 11),
    (4, 192, 4, 3),
    (1, 384, 2, 3),
    (2, 24, 16, 12),
]
HRNET_W48_PSA_WIDTHS = {48: 32, 96: 32, 192: 28, 384: 12}  # width → number of BasicBlocks with PSA


def _pair(name: str, channels: int, **kwargs):
    fast = create_attn(name, channels, **kwargs)
    with torch.no_grad():  # random fan-in-scaled weights everywhere, LayerNorm weights around 1
        for param in fast.parameters():
            fan_in = param[0].numel() if param.ndim == 4 else 1
            param.copy_(torch.randn_like(param) * fan_in**-0.5 + (1.0 if param.ndim == 3 else 0.0))
    reference = create_attn(name, channels, impl="reference", **kwargs)
    reference.load_state_dict(fast.state_dict())
    return fast, reference


def _seed(*parts) -> int:
    return zlib.crc32(repr(parts).encode())


def _error(actual: torch.Tensor, expected: torch.Tensor) -> float:
    """Relative error; gradients that are exactly zero in theory (PSA_s with C = 8 normalises over one
    value) count as equal when they differ by float64 rounding (absolute 1e-12)."""
    diff = (actual.double() - expected.double()).norm().item()
    return 0.0 if diff < 1e-12 else diff / max(expected.double().norm().item(), 1e-30)


def _outputs_and_gradients(module: torch.nn.Module, x: torch.Tensor, grad_out: torch.Tensor) -> dict:
    module.zero_grad(set_to_none=True)
    x = x.detach().clone().requires_grad_(True)
    out = module(x)
    out.backward(grad_out.to(out.dtype))
    results = {"output": out.detach(), "input gradient": x.grad}
    results.update({name: param.grad for name, param in module.named_parameters()})
    return results


def _compare_fast_and_reference(name: str, shape, dtype: torch.dtype, tolerance: float) -> None:
    """Outputs, input gradient and every parameter gradient of the fast form within ``tolerance`` of the
    reference form. Where a gradient is ill-conditioned (the float32 reference itself is off from float64
    by more than ``tolerance``), the fast form must be at least about as accurate as the reference."""
    torch.manual_seed(_seed(name, shape))
    fast, reference = (m.to(dtype) for m in _pair(name, shape[1]))
    x = torch.randn(shape, dtype=dtype)
    grad_out = torch.randn(shape, dtype=dtype)
    got = _outputs_and_gradients(fast, x, grad_out)
    expected = _outputs_and_gradients(reference, x, grad_out)
    exact = (
        _outputs_and_gradients(reference.double(), x.double(), grad_out)
        if dtype != torch.float64
        else expected
    )
    for key, value in got.items():
        error = _error(value, expected[key])
        if error < tolerance:
            continue
        reference_error = _error(expected[key], exact[key])
        assert reference_error > tolerance, (key, error)
        assert _error(value, exact[key]) <= 2 * reference_error, (key, error, reference_error)


@pytest.mark.parametrize("name", PSA_NAMES)
@pytest.mark.parametrize("shape", FAST_SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_fast_psa_matches_reference_outputs_and_gradients(name, shape):
    """float32, relative error < 1e-5 on the output, the input gradient and every parameter gradient.

    Exception: PSA_s with C/8 ≤ 2 normalises its bottleneck over ≤ 2 values, whose LayerNorm output is
    ±1 whatever the input; every gradient upstream of it is then rounding noise in float32, so those
    shapes are compared in float64.
    """
    if name == "psa_s" and shape[1] < 8:
        pytest.skip("PSA_s needs C ≥ 8")
    if name == "psa_s" and shape[1] // 8 <= 2:
        _compare_fast_and_reference(name, shape, torch.float64, 1e-10)
    else:
        _compare_fast_and_reference(name, shape, torch.float32, 1e-5)


@pytest.mark.parametrize("name", PSA_NAMES)
def test_fast_psa_equals_reference_in_float64(name):
    for shape in FAST_SHAPES:
        if not (name == "psa_s" and shape[1] < 8):
            _compare_fast_and_reference(name, shape, torch.float64, 1e-10)


@pytest.mark.parametrize("name", PSA_NAMES)
def test_fast_psa_matches_reference_without_autograd(name):
    """The no-grad path reuses buffers in place; it must give the same numbers."""
    fast, reference = _pair(name, 32)
    x = torch.randn(2, 32, 7, 5).to(memory_format=torch.channels_last)
    with torch.no_grad():
        out = fast(x)
        expected = reference(x)
    assert out.is_contiguous(memory_format=torch.channels_last)
    assert relative_error(out, expected) < 1e-5


@pytest.mark.parametrize("apply", [apply_parallel_gates, apply_sequential_gates])
@pytest.mark.parametrize("channels_last", [False, True])
def test_gating_gradients_are_exact(apply, channels_last):
    x = torch.randn(2, 6, 5, 4, dtype=torch.float64)
    if channels_last:
        x = x.to(memory_format=torch.channels_last)
    channel = torch.rand(2, 6, 1, 1, dtype=torch.float64)
    spatial = torch.rand(2, 1, 5, 4, dtype=torch.float64)
    inputs = tuple(t.requires_grad_(True) for t in (x, channel, spatial))
    assert torch.autograd.gradcheck(apply, inputs)
    out = apply(*inputs)
    plain = x * (channel + spatial) if apply is apply_parallel_gates else x * channel * spatial
    torch.testing.assert_close(out, plain)
    assert out.is_contiguous(memory_format=torch.channels_last) == channels_last
    grads = torch.autograd.grad(out, inputs, torch.ones_like(out))
    expected = torch.autograd.grad(plain, inputs, torch.ones_like(plain))
    for grad, want in zip(grads, expected, strict=True):
        torch.testing.assert_close(grad, want)


@pytest.mark.parametrize("apply", [apply_parallel_gates, apply_sequential_gates])
@pytest.mark.parametrize("x_layout", ["contiguous", "channels_last"])
@pytest.mark.parametrize("upstream_layout", ["contiguous", "channels_last", "expanded"])
def test_gating_gradient_comes_back_in_x_layout(apply, x_layout, upstream_layout):
    """dx has x's memory format whatever the upstream gradient's (another layout, or the stride-0 gradient
    of ``.sum()``), and equals the plain product's."""
    x = torch.randn(2, 6, 5, 4)
    if x_layout == "channels_last":
        x = x.to(memory_format=torch.channels_last)
    channel, spatial = torch.rand(2, 6, 1, 1), torch.rand(2, 1, 5, 4)
    upstream = {
        "contiguous": torch.randn(2, 6, 5, 4),
        "channels_last": torch.randn(2, 6, 5, 4).to(memory_format=torch.channels_last),
        "expanded": torch.tensor(1.5).expand(2, 6, 5, 4),
    }[upstream_layout]
    (grad,) = torch.autograd.grad(apply(x.requires_grad_(True), channel, spatial), x, upstream)
    parallel = apply is apply_parallel_gates
    expected = upstream * (channel + spatial) if parallel else upstream * channel * spatial
    assert grad.is_contiguous(memory_format=torch.channels_last) == (x_layout == "channels_last")
    assert grad.is_contiguous() == (x_layout == "contiguous")
    torch.testing.assert_close(grad, expected)


@pytest.mark.parametrize("apply", [apply_parallel_gates, apply_sequential_gates])
def test_gating_has_exact_second_derivatives(apply):
    """create_graph=True records a differentiable backward (gradient penalties, Hessian-vector products)."""
    x = torch.randn(2, 3, 2, 3, dtype=torch.float64).to(memory_format=torch.channels_last)
    channel = torch.rand(2, 3, 1, 1, dtype=torch.float64)
    spatial = torch.rand(2, 1, 2, 3, dtype=torch.float64)
    inputs = tuple(t.requires_grad_(True) for t in (x, channel, spatial))
    assert torch.autograd.gradgradcheck(apply, inputs)


@pytest.mark.parametrize("gate", [gated_sum, gated_product])
def test_gate_products_cast_gates_to_x_dtype_and_keep_layouts(gate):
    x = torch.randn(2, 6, 5, 4).to(memory_format=torch.channels_last).bfloat16()
    channel, spatial = torch.rand(2, 6, 1, 1), torch.rand(2, 1, 5, 4)  # float32
    out = gate(x, channel, spatial)
    plain = x * (channel + spatial) if gate is gated_sum else x * channel * spatial  # float32 by promotion
    assert out.dtype == torch.bfloat16 and out.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(out.float(), plain, rtol=2e-2, atol=2e-2)  # bf16 rounding: 8 bits
    given = torch.empty(2, 6, 5, 4, dtype=torch.bfloat16)  # contiguous: a given buffer keeps its layout
    assert gate(x, channel, spatial, out=given) is given and given.is_contiguous()
    torch.testing.assert_close(given, out, rtol=0, atol=0)


def test_gating_checks_gate_shapes():
    x = torch.randn(2, 6, 5, 4)
    with pytest.raises(ValueError, match=r"\[N, C, 1, 1\] and \[N, 1, H, W\]"):
        apply_parallel_gates(x, torch.rand(2, 6, 1, 1), torch.rand(2, 1, 4, 5))


@pytest.mark.parametrize("name", PSA_NAMES)
def test_psa_keeps_no_input_sized_tensor_for_backward(name):
    """Activation memory while training: the gating saves x and the small gates, not their broadcast
    product. PSA_s additionally keeps its per-channel spatial softmax, C/2 × HW (half of x)."""
    block = create_attn(name, 64)
    x = torch.randn(2, 64, 32, 32, requires_grad=True)
    saved = saved_for_backward(lambda: block(x), exclude=(x, *block.parameters()))
    allowed = 0.5 * x.nbytes if name == "psa_s" else 0
    assert saved <= allowed + 0.1 * x.nbytes


def test_paper_bias_option_keeps_fast_equal_to_reference():
    for cls in (PsaPaperP, PsaPaperS):
        fast = cls(16, bias=True)
        with torch.no_grad():
            for param in fast.parameters():
                param.copy_(torch.randn_like(param))
        reference = cls(16, bias=True, impl="reference")
        reference.load_state_dict(fast.state_dict())
        x = torch.randn(2, 16, 5, 4)
        assert relative_error(fast(x), reference(x)) < 1e-5


@pytest.mark.parametrize("channels", [16, 48, 96, 192, 384])
def test_parameter_counts_follow_the_formulas(channels):
    def count(module):
        return sum(p.numel() for p in module.parameters())

    c = channels
    assert count(PsaP(c)) == 2 * c * c + c
    mid = c // 8  # conv_up.0 (+bias), LayerNorm (w, b), conv_up.3 (+bias), then the four q/v convs
    assert count(PsaS(c)) == (c // 2) * mid + mid + 2 * mid + mid * c + c + (1 + 3 * (c // 2)) * c
    assert count(PsaPaperP(c)) == count(PsaPaperS(c)) == 2 * c * c + 3 * c


def test_hrnet_w48_psa_parameter_totals():
    """104 BasicBlocks of HRNet-W48 stages 2–4 carry PSA (paper Table 2: 63.6M → 70.0M / 69.1M)."""
    assert sum(HRNET_W48_PSA_WIDTHS.values()) == 104
    total_p = sum(n * sum(p.numel() for p in PsaP(c).parameters()) for c, n in HRNET_W48_PSA_WIDTHS.items())
    total_s = sum(n * sum(p.numel() for p in PsaS(c).parameters()) for c, n in HRNET_W48_PSA_WIDTHS.items())
    assert total_p == 6_355_200
    assert total_s == 5_384_544


def test_hrnet_init_makes_psa_p_near_identity():
    block = PsaP(64, init="hrnet").eval()
    x = torch.randn(2, 64, 16, 12)
    out = block(x)
    assert relative_error(out, x) < 5e-3
    assert all(m.weight.std() < 0.002 for m in block.modules() if isinstance(m, torch.nn.Conv2d))


def test_official_init_is_kaiming_on_query_and_value_convs():
    block = PsaP(256)
    expected_std = (2 / 256) ** 0.5
    for conv in (block.conv_q_left, block.conv_v_left, block.conv_v_right):
        assert abs(conv.weight.std().item() - expected_std) < 0.15 * expected_std
    default_std = (3 * 128) ** -0.5  # PyTorch's default (uniform ±1/sqrt(fan_in)), not re-initialised
    assert abs(block.conv_up.weight.std().item() - default_std) < 0.1 * default_std


def test_psa_p_spatial_gate_lies_in_the_released_range():
    """Released PSA_p: σ(softmax(·)) ∈ (0.5, σ(1)] — the spatial gate is almost constant on big maps."""
    block = PsaP(32)
    x = torch.randn(3, 32, 6, 5)
    gate = block._spatial_gate_reference(x)
    assert gate.min() > 0.5
    assert gate.max() <= torch.sigmoid(torch.tensor(1.0)) + 1e-6


def test_psa_s_starts_near_quarter_of_input_with_hrnet_init():
    block = PsaS(64, init="hrnet").eval()
    x = torch.randn(2, 64, 8, 8)
    ratio = (block(x) / x).median().item()
    assert 0.1 < ratio < 0.4


@pytest.mark.parametrize("cls", [PsaP, PsaS, PsaPaperP, PsaPaperS])
def test_odd_channels_are_rejected(cls):
    with pytest.raises(ValueError, match="even channel count"):
        cls(47)


def test_psa_s_needs_eight_channels_and_bad_options_are_rejected():
    with pytest.raises(ValueError, match="at least 8"):
        PsaS(6)
    with pytest.raises(ValueError, match="init must be 'official' or 'hrnet'"):
        PsaP(16, init="xavier")
    with pytest.raises(ValueError, match="impl must be 'fast' or 'reference'"):
        PsaP(16, impl="quick")


# --- fidelity to the released code (official-format fixtures in ../shared) -----------------------------
def _released_psa_blocks(state_dict: dict) -> dict[str, dict[str, torch.Tensor]]:
    blocks: dict[str, dict[str, torch.Tensor]] = defaultdict(dict)
    for key, value in state_dict.items():
        if ".deattn." in key:
            prefix, leaf = key.split(".deattn.")
            blocks[prefix.removeprefix("module.")][leaf] = value
    return blocks


@pytest.mark.parametrize("variant, cls", [("psa_p", PsaP), ("psa_s", PsaS)])
@pytest.mark.parametrize("impl", ["fast", "reference"])
def test_released_psa_blocks_load_strictly_and_reproduce_official_outputs(shared_dir, variant, cls, impl):
    folder = shared_dir / "fixtures" / "official_psa_seg"
    checkpoint = torch.load(folder / f"{variant}_checkpoint.pth", map_location="cpu", weights_only=True)
    blocks = _released_psa_blocks(checkpoint["state_dict"])
    assert len(blocks) == 12
    for state in blocks.values():  # every released block loads with strict=True
        cls(state["conv_q_right.weight"].shape[1], impl=impl).load_state_dict(state, strict=True)
    io = load_file(folder / f"io_{variant}.safetensors")
    for name in ("backbone.stage2.0.branches.0.0", "backbone.stage4.0.branches.3.0"):
        state = blocks[name]
        block = cls(state["conv_q_right.weight"].shape[1], impl=impl).eval()
        block.load_state_dict(state, strict=True)
        with torch.no_grad():
            out = block(io[f"psa.{name}.deattn.input"])
        torch.testing.assert_close(out, io[f"psa.{name}.deattn.output"], atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("variant, cls, total", [("psa_p", PsaP, 6_355_200), ("psa_s", PsaS, 5_384_544)])
def test_released_w48_key_layout_matches_ours(shared_dir, variant, cls, total):
    """Keys and shapes of every deattn in the released-size W48 model equal our module's state dict."""
    official = read_key_list(shared_dir / "fixtures" / "official_psa_seg" / f"keys_full_w48_{variant}.txt")
    blocks: dict[str, dict[str, tuple[int, ...]]] = defaultdict(dict)
    for key, tensor in official.items():
        if ".deattn." in key:
            prefix, leaf = key.split(".deattn.")
            blocks[prefix][leaf] = tuple(tensor.shape)
    assert len(blocks) == 104
    counted = 0
    for shapes in blocks.values():
        ours = {k: tuple(v.shape) for k, v in cls(shapes["conv_q_right.weight"][1]).state_dict().items()}
        assert ours == shapes
        counted += sum(torch.Size(s).numel() for s in shapes.values())
    assert counted == total


def _psa_p_weights(block: PsaP) -> tuple[torch.Tensor, ...]:
    return (*block._weights(), block.conv_up.weight.view(block.channels, block.channels // 2))


@pytest.mark.parametrize("channels_last", [False, True])
def test_fused_psa_p_backward_passes_gradcheck(channels_last):
    """Finite differences against the hand-written backward of the one-node PSA_p, for x and every weight."""
    from psa_zoo.layers._psa_p_fused import PsaPFunction

    torch.manual_seed(0)
    block = PsaP(6).double()
    x = torch.randn(2, 6, 4, 3, dtype=torch.float64)
    if channels_last:
        x = x.to(memory_format=torch.channels_last)
    weights = [w.detach().clone().requires_grad_(True) for w in _psa_p_weights(block)]
    inputs = (x.requires_grad_(True), *weights)
    assert torch.autograd.gradcheck(lambda *t: PsaPFunction.apply(*t), inputs)
    out = PsaPFunction.apply(*inputs)
    (grad_x,) = torch.autograd.grad(out, x, torch.randn_like(out))
    assert grad_x.is_contiguous(memory_format=torch.channels_last) == channels_last


@pytest.mark.parametrize("x_layout", ["contiguous", "channels_last"])
@pytest.mark.parametrize("upstream_layout", ["contiguous", "channels_last", "expanded"])
def test_fused_psa_p_gradient_comes_back_in_x_layout(x_layout, upstream_layout):
    """The one-node PSA_p reads the upstream gradient where it lies (no copy); dx has x's layout and equals
    the reference form's gradient through plain autograd."""
    torch.manual_seed(0)
    fast = PsaP(8)
    reference = PsaP(8, impl="reference")
    reference.load_state_dict(fast.state_dict())
    x = torch.randn(2, 8, 5, 3)
    if x_layout == "channels_last":
        x = x.to(memory_format=torch.channels_last)
    upstream = {
        "contiguous": torch.randn(2, 8, 5, 3),
        "channels_last": torch.randn(2, 8, 5, 3).to(memory_format=torch.channels_last),
        "expanded": torch.tensor(0.7).expand(2, 8, 5, 3),
    }[upstream_layout]
    grads = [torch.autograd.grad(m(x.requires_grad_(True)), x, upstream)[0] for m in (fast, reference)]
    assert grads[0].is_contiguous(memory_format=torch.channels_last) == (x_layout == "channels_last")
    assert grads[0].is_contiguous() == (x_layout == "contiguous")
    assert relative_error(grads[0], grads[1]) < 1e-5


def test_chunked_inference_equals_one_chunk_and_reports_whole_batch_gates():
    from psa_zoo.layers._psa_p_fused import psa_p_inference

    block = PsaP(16)
    x = torch.randn(5, 16, 6, 7)
    weights = _psa_p_weights(block)
    seen = []
    with torch.no_grad():
        whole = psa_p_inference(x, *weights, chunk_bytes=1 << 30)
        per_sample = psa_p_inference(x, *weights, chunk_bytes=1, gate_hook=lambda a, s: seen.append((a, s)))
        empty = psa_p_inference(x[:0], *weights, gate_hook=lambda a, s: seen.append((a, s)))
    torch.testing.assert_close(per_sample, whole, rtol=1e-6, atol=1e-7)
    reference = PsaP(16, impl="reference")
    reference.load_state_dict(block.state_dict())
    with torch.no_grad():
        assert relative_error(per_sample, reference(x)) < 1e-5
    assert seen[0][0].shape == (5, 16, 1, 1) and seen[0][1].shape == (5, 1, 6, 7)  # one call, all samples
    assert empty.shape == (0, 16, 6, 7) and seen[1][0].shape == (0, 16, 1, 1)


def _cache_tree(root, entries):
    for i, (level, kind, size) in enumerate(entries):
        index = root / f"index{i}"
        index.mkdir(parents=True)
        for name, value in (("level", level), ("type", kind), ("size", size)):
            (index / name).write_text(f"{value}\n")
    return str(root)


def test_last_level_cache_is_the_highest_data_or_unified_level(tmp_path):
    from psa_zoo.layers._psa_p_fused import last_level_cache_bytes

    xeon = [(1, "Data", "48K"), (1, "Instruction", "64K"), (2, "Unified", "2048K"), (3, "Unified", "491520K")]
    assert last_level_cache_bytes(_cache_tree(tmp_path / "xeon", xeon)) == 491520 * 1024
    no_l3 = [(1, "Data", "32K"), (2, "Unified", "1M"), (3, "Instruction", "8M")]
    assert last_level_cache_bytes(_cache_tree(tmp_path / "no_l3", no_l3)) == 1 << 20
    unreadable = [(2, "Unified", "2048K"), (3, "Unified", "lots")]  # a size it cannot read is skipped
    assert last_level_cache_bytes(_cache_tree(tmp_path / "odd", unreadable)) == 2048 * 1024
    assert last_level_cache_bytes(str(tmp_path / "absent")) is None


def test_batches_split_only_when_large_samples_outgrow_the_cache():
    from psa_zoo.layers._psa_p_fused import CHUNK_FROM, runs_in_chunks

    big = torch.empty(4, CHUNK_FROM // 4, 1, 1)  # four samples of CHUNK_FROM bytes (float32): X is 4 MiB
    assert runs_in_chunks(big, cache_bytes=None)  # cache unknown: split, as before the cache was read
    assert runs_in_chunks(big, cache_bytes=4 << 20)  # X is more than half of it
    assert not runs_in_chunks(big, cache_bytes=8 << 20)  # X fits half of it: one batch
    assert not runs_in_chunks(big[:1], cache_bytes=None)  # one sample: nothing to split
    assert not runs_in_chunks(big[:, :-1], cache_bytes=None)  # samples under CHUNK_FROM


@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("precision", ["float32", "bfloat16", "autocast"])
def test_psa_p_inference_gives_the_training_forward_bit_for_bit(channels_last, precision):
    """The no-autograd path (whole batch, its own short sequence of ops) and the one-node autograd forward
    compute the same function in the same order, casts included: equal bits, output and both gates."""
    torch.manual_seed(0)
    block = PsaP(16)
    x = torch.randn(3, 16, 7, 5)
    if precision == "bfloat16":
        block, x = block.bfloat16(), x.bfloat16()
    if channels_last:
        x = x.to(memory_format=torch.channels_last)
    seen = []
    block._gate_hook = lambda a, s: seen.append((a, s))
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "autocast"):
        trained = block(x.requires_grad_(True))  # PsaPFunction
        with torch.no_grad():
            inferred = block(x)  # psa_p_inference
    assert torch.equal(inferred, trained.detach())
    assert inferred.is_contiguous(memory_format=torch.channels_last) == channels_last
    for before, after in zip(seen[0], seen[1], strict=True):
        assert torch.equal(before.detach(), after)
    assert seen[1][0].shape == (3, 16, 1, 1) and seen[1][1].shape == (3, 1, 7, 5)


def test_fused_psa_p_refuses_a_second_backward_instead_of_a_wrong_one():
    block = PsaP(8)
    x = torch.randn(2, 8, 4, 4, requires_grad=True)
    (grad,) = torch.autograd.grad(block(x).square().sum(), x, create_graph=True)
    with pytest.raises(RuntimeError, match="marked with @once_differentiable"):
        grad.sum().backward()


def test_fused_psa_p_skips_the_input_gradient_when_x_needs_none():
    block = PsaP(8)
    x = torch.randn(2, 8, 4, 4)  # a frozen trunk's output: only the block's weights train
    block(x).square().sum().backward()
    reference = PsaP(8, impl="reference")
    reference.load_state_dict(block.state_dict())
    reference(x).square().sum().backward()
    for p, q in zip(block.parameters(), reference.parameters(), strict=True):
        assert relative_error(p.grad, q.grad) < 1e-5


def test_fused_psa_p_trains_under_bf16_autocast():
    torch.manual_seed(0)
    block = PsaP(32)
    x = torch.randn(2, 32, 8, 8, requires_grad=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = block(x)
    out.float().square().mean().backward()
    grads = [x.grad] + [p.grad for p in block.parameters()]
    reference = PsaP(32, impl="reference")
    reference.load_state_dict(block.state_dict())
    x32 = x.detach().clone().requires_grad_(True)
    reference(x32).square().mean().backward()
    expected = [x32.grad] + [p.grad for p in reference.parameters()]
    for grad, want in zip(grads, expected, strict=True):
        assert grad.dtype == torch.float32  # parameters' and input's own dtype
        assert relative_error(grad, want) < 0.05  # bf16 rounding of the large products only
