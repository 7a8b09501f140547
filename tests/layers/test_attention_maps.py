"""Gate recording (``record_attention``) and the overlays of ``psa_zoo.visualize``.

Recorded gates are checked against the block equations written out here (released PSA_p / PSA_s, the
paper's PSA, SE, CBAM; see /work/shared/reference/psa_and_attention_blocks.md §1.2–1.4, 3.4, 3.5) and
against the block output rebuilt from them; outputs and gradients with and without recording must be
bit-identical.
"""

from __future__ import annotations

import copy

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from psa_zoo.layers import (
    AttentionMaps,
    Cbam,
    GlobalContext,
    PsaP,
    PsaS,
    SqueezeExcite,
    create_attn,
    list_attention_blocks,
    record_attention,
)
from psa_zoo.visualize import overlay_attention, save_attention_grid
from tests.models._tiny import tiny_model

GATING = [
    ("psa_p", "fast"),
    ("psa_p", "reference"),
    ("psa_s", "fast"),
    ("psa_s", "reference"),
    ("psa_p_paper", "fast"),
    ("psa_p_paper", "reference"),
    ("psa_s_paper", "fast"),
    ("psa_s_paper", "reference"),
    ("se", None),
    ("cbam", None),
]


def _block(name: str, impl: str | None, channels: int = 16) -> nn.Module:
    block = create_attn(name, channels, **({"impl": impl} if impl else {}))
    if isinstance(block, Cbam):  # its BN weight starts at 0 (a constant 0.5 gate); give it something to show
        bn = block.spatial_gate.spatial.bn
        with torch.no_grad():
            bn.weight.fill_(1.5)
            bn.running_mean.fill_(0.2)
            bn.running_var.fill_(2.0)
    return block


def _enter(model: nn.Module, blocks=None) -> None:
    with record_attention(model, blocks):
        pass


def _hooks(model: nn.Module) -> list[tuple[str, int, int, bool]]:
    return [
        (n, len(m._forward_pre_hooks), len(m._forward_hooks), "_gate_hook" in vars(m))
        for n, m in model.named_modules()
    ]


# --- the gates, written out from the equations ------------------------------------------------------
def _w(conv: nn.Conv2d) -> torch.Tensor:
    return conv.weight.flatten(1)  # [out, in]


def _layer_norm(z: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """Over dim 1 of [N, D]: (z − mean) / sqrt(biased var + eps) · weight + bias."""
    mean = z.mean(1, keepdim=True)
    var = ((z - mean) ** 2).mean(1, keepdim=True)
    return (z - mean) / torch.sqrt(var + eps) * weight.flatten() + bias.flatten()


def _released_channel_gate(block, x: torch.Tensor) -> torch.Tensor:
    """σ(W_z(W_v X · softmax_HW(W_q X))) [N, C]; PSA_s's W_z = conv → LN([C/8]) → ReLU → conv."""
    flat = x.flatten(2)
    query = torch.softmax(_w(block.conv_q_right) @ flat, dim=2)  # [N, 1, HW]
    context = ((_w(block.conv_v_right) @ flat) @ query.transpose(1, 2)).squeeze(2)  # [N, C/2]
    if isinstance(block, PsaP):
        z = context @ _w(block.conv_up).T
    else:
        first, norm, _, last = block.conv_up
        hidden = _layer_norm(context @ _w(first).T + first.bias, norm.weight, norm.bias).clamp_min(0)
        z = hidden @ _w(last).T + last.bias
    return torch.sigmoid(z)


def _released_spatial_gate(block, y: torch.Tensor) -> torch.Tensor:
    """PSA_p: σ(softmax_HW(GAP(W_q Y)ᵀ · W_v Y)); PSA_s: σ(GAP(W_q Y)ᵀ · softmax_HW(W_v Y)). [N, 1, H, W]."""
    n, _, h, w = y.shape
    flat = y.flatten(2)
    query = (_w(block.conv_q_left) @ flat).mean(2)  # [N, C/2]
    value = _w(block.conv_v_left) @ flat  # [N, C/2, HW]
    if isinstance(block, PsaP):
        logits = torch.einsum("nk,nkp->np", query, value).softmax(dim=1)
    else:
        logits = torch.einsum("nk,nkp->np", query, value.softmax(dim=2))
    return torch.sigmoid(logits).view(n, 1, h, w)


def _paper_gates(block, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Eq. 1–5: A_ch = σ(LN(W_z(W_v X · softmax_HW(W_q X)))), A_sp = σ(softmax_C/2(W_q GAP(Y))ᵀ · W_v Y)."""
    n, _, h, w = x.shape
    flat = x.flatten(2)
    query = torch.softmax(_w(block.ch_wq) @ flat, dim=2)
    context = ((_w(block.ch_wv) @ flat) @ query.transpose(1, 2)).squeeze(2)
    channel = torch.sigmoid(
        _layer_norm(context @ _w(block.ch_wz).T, block.ch_norm.weight, block.ch_norm.bias)
    )
    y = flat * channel[:, :, None] if block.sequential else flat
    pooled_query = torch.softmax(y.mean(2) @ _w(block.sp_wq).T, dim=1)  # [N, C/2]
    spatial = torch.sigmoid(torch.einsum("nk,nkp->np", pooled_query, _w(block.sp_wv) @ y))
    return channel, spatial.view(n, 1, h, w)


def _expected_gates(block, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
    if isinstance(block, PsaP | PsaS):
        channel = _released_channel_gate(block, x)
        y = x if isinstance(block, PsaP) else x * channel[:, :, None, None]
        return channel, _released_spatial_gate(block, y)
    if isinstance(block, SqueezeExcite):  # σ(W2 ReLU(W1 GAP(x) + b1) + b2)
        hidden = (x.mean((2, 3)) @ _w(block.fc1).T + block.fc1.bias).clamp_min(0)
        return torch.sigmoid(hidden @ _w(block.fc2).T + block.fc2.bias), None
    if isinstance(block, Cbam):  # σ(mlp(avg) + mlp(max)), then σ(BN(conv7([max_c y, mean_c y]))), BN in eval
        _, first, _, last = block.channel_gate.mlp

        def mlp(v):
            return (v @ first.weight.T + first.bias).clamp_min(0) @ last.weight.T + last.bias

        channel = torch.sigmoid(mlp(x.mean((2, 3))) + mlp(x.amax((2, 3))))
        y = x * channel[:, :, None, None]
        conv, bn = block.spatial_gate.spatial.conv, block.spatial_gate.spatial.bn
        pooled = torch.cat([y.amax(1, keepdim=True), y.mean(1, keepdim=True)], dim=1)
        z = F.conv2d(pooled, conv.weight, padding=conv.weight.shape[-1] // 2)
        z = (z - bn.running_mean) / torch.sqrt(bn.running_var + bn.eps) * bn.weight + bn.bias
        return channel, torch.sigmoid(z)
    return _paper_gates(block, x)


# --- recording does not change the forward ----------------------------------------------------------
@pytest.mark.parametrize("train", [False, True], ids=["eval", "train"])
@pytest.mark.parametrize(("name", "impl"), GATING)
def test_outputs_are_bit_identical_with_and_without_recording(name, impl, train):
    block = _block(name, impl).train(train)
    recorded_copy = copy.deepcopy(block)  # train-mode BN statistics move: each run gets the same start
    x = torch.randn(3, 16, 7, 5)
    plain = block(x)
    with record_attention(recorded_copy) as record:
        recorded = recorded_copy(x)
    assert torch.equal(plain, recorded)
    assert list(record) == [""] and record[""].kind == type(block).__name__
    if train:  # and the same statistics afterwards
        for a, b in zip(block.state_dict().values(), recorded_copy.state_dict().values(), strict=True):
            assert torch.equal(a, b)


@pytest.mark.parametrize(("name", "impl"), [("psa_p", "fast"), ("psa_s", "fast"), ("cbam", None)])
def test_gradients_are_bit_identical_with_and_without_recording(name, impl):
    block = _block(name, impl).train()
    x = torch.randn(2, 16, 6, 6)
    grad_out = torch.randn(2, 16, 6, 6)

    def grads(module, record: bool):
        xi = x.clone().requires_grad_(True)
        if record:
            with record_attention(module):
                module(xi).backward(grad_out)
        else:
            module(xi).backward(grad_out)
        return [xi.grad] + [p.grad for p in module.parameters()]

    plain, recorded = grads(copy.deepcopy(block), False), grads(copy.deepcopy(block), True)
    assert all(torch.equal(a, b) for a, b in zip(plain, recorded, strict=True))


def test_whole_model_output_is_identical_and_every_psa_block_is_recorded():
    model = tiny_model("hrnet_w18_psa_p").eval()
    x = torch.randn(2, 3, 64, 48)
    with torch.no_grad():
        plain = model(x)
        with record_attention(model) as record:
            recorded = model(x)
    assert torch.equal(plain, recorded)
    expected_names = [n for n, m in model.named_modules() if isinstance(m, PsaP)]
    assert len(expected_names) == 9 and list(record) == expected_names == list_attention_blocks(model)


# --- the recorded tensors are the gates -------------------------------------------------------------
@pytest.mark.parametrize(("name", "impl"), GATING)
def test_recorded_gates_follow_the_equations_and_rebuild_the_output(name, impl):
    block = _block(name, impl).double().eval()
    x = torch.randn(2, 16, 6, 5, dtype=torch.float64)
    with torch.no_grad(), record_attention(block) as record:
        out = block(x)
    maps = record[""]
    expected_channel, expected_spatial = _expected_gates(block, x)
    assert maps.channel_gate.shape == (2, 16)
    torch.testing.assert_close(maps.channel_gate, expected_channel, rtol=1e-10, atol=1e-12)
    ch = maps.channel_gate[:, :, None, None]
    if expected_spatial is None:  # SE: out = x ⊙ gate
        assert maps.spatial_gate is None
        rebuilt = x * ch
    else:
        assert maps.spatial_gate.shape == (2, 1, 6, 5)
        torch.testing.assert_close(maps.spatial_gate, expected_spatial, rtol=1e-10, atol=1e-12)
        sequential = name in ("psa_s", "psa_s_paper", "cbam")  # out = (x ⊙ ch) ⊙ sp, else x ⊙ ch + x ⊙ sp
        rebuilt = (x * ch) * maps.spatial_gate if sequential else x * ch + x * maps.spatial_gate
    torch.testing.assert_close(out, rebuilt, rtol=1e-12, atol=1e-12)


def test_gates_are_recorded_for_the_named_blocks_of_a_model():
    """The record's names are the model's: a block's recorded gates are those of its own input."""
    model = tiny_model("deeplabv3plus_mbv2_psa").eval()
    names = list_attention_blocks(model)
    assert names and all(n.startswith("backbone.blocks.") and n.endswith(".attn") for n in names)
    chosen = names[-1]
    inputs = {}
    handle = model.get_submodule(chosen).register_forward_pre_hook(lambda m, a: inputs.setdefault("x", a[0]))
    with torch.no_grad(), record_attention(model, [chosen]) as record:
        model(torch.randn(1, 3, 64, 64))
    handle.remove()
    assert list(record) == [chosen]
    block, x = model.get_submodule(chosen), inputs["x"]
    torch.testing.assert_close(record[chosen].channel_gate, _released_channel_gate(block, x))
    torch.testing.assert_close(record[chosen].spatial_gate, _released_spatial_gate(block, x))


def test_every_call_is_kept_and_the_mapping_gives_the_first():
    block = _block("psa_s", "fast").double().eval()
    first, second = (
        torch.randn(1, 16, 4, 4, dtype=torch.float64),
        torch.randn(2, 16, 3, 5, dtype=torch.float64),
    )
    with torch.no_grad(), record_attention(block) as record:
        block(first)
        block(second)
    calls = record.calls("")
    assert [c.spatial_gate.shape for c in calls] == [(1, 1, 4, 4), (2, 1, 3, 5)]
    torch.testing.assert_close(record[""].channel_gate, _released_channel_gate(block, first))
    torch.testing.assert_close(calls[1].channel_gate, _released_channel_gate(block, second))


def test_empty_batch_records_empty_gates():
    block = _block("psa_p", "fast")
    with record_attention(block) as record:
        block(torch.zeros(0, 16, 3, 4))
    assert record[""].channel_gate.shape == (0, 16) and record[""].spatial_gate.shape == (0, 1, 3, 4)


def test_recorded_gates_are_detached_copies():
    block = _block("psa_p", "fast").train()
    x = torch.randn(1, 16, 4, 4, requires_grad=True)
    with record_attention(block) as record:
        block(x).sum().backward()
    maps = record[""]
    assert not maps.channel_gate.requires_grad and not maps.spatial_gate.requires_grad
    before = maps.spatial_gate.clone()
    block(x)  # outside the context: nothing new, nothing overwritten
    assert len(record.calls("")) == 1 and torch.equal(maps.spatial_gate, before)


# --- selection, hooks, errors -----------------------------------------------------------------------
def test_patterns_select_blocks_and_no_hook_remains():
    model = tiny_model("hrnet_w18_psa_p").eval()
    before = _hooks(model)
    with record_attention(model, "stage4.*") as record:
        assert _hooks(model) != before
        model(torch.randn(1, 3, 32, 32))
    assert _hooks(model) == before
    assert record.blocks == [n for n in list_attention_blocks(model) if n.startswith("stage4.")]
    assert list(record) == record.blocks and len(record) == 4
    exact = "stage2.0.branches.1.0.deattn"
    with record_attention(model, [exact, "stage3.0.branches.0.*"]) as record:
        model(torch.randn(1, 3, 32, 32))
    assert list(record) == ["stage2.0.branches.1.0.deattn", "stage3.0.branches.0.0.deattn"]


def test_hooks_are_removed_when_the_body_raises():
    model = nn.Sequential(_block("cbam", None), _block("se", None), _block("psa_p_paper", "fast"))
    before = _hooks(model)
    with pytest.raises(ZeroDivisionError), record_attention(model):
        _ = 1 / 0
    assert _hooks(model) == before


def test_unknown_names_raise_one_error_listing_available_blocks():
    model = tiny_model("hrnet_w18_psa_p")
    with pytest.raises(
        ValueError, match=r"'stage9\.\*', 'nope'.*'stage2\.0\.branches\.0\.0\.deattn'.*9 in all"
    ):
        _enter(model, ["stage4.*", "stage9.*", "nope"])
    with pytest.raises(ValueError, match="must be qualified module names"):
        _enter(model, [3])
    with pytest.raises(ValueError, match="blocks is empty"):
        _enter(model, [])


def test_blocks_without_gates_are_not_recorded_and_naming_them_says_why():
    model = nn.Sequential(GlobalContext(16), SqueezeExcite(16), create_attn("nl", 16))
    assert list_attention_blocks(model) == ["1"]
    with pytest.raises(ValueError, match="'0' is a GlobalContext, which adds a context vector"):
        _enter(model, ["0"])
    with pytest.raises(ValueError, match=r"NonLocal2d.*affinity"):
        _enter(model, "2")
    with pytest.raises(ValueError, match=r"no attention block with gates.*GlobalContext"):
        _enter(GlobalContext(16))
    with record_attention(model) as record:
        model(torch.randn(1, 16, 3, 3))
    assert list(record) == ["1"] and record["1"].spatial_gate is None


def test_recording_a_block_twice_at_once_is_refused_and_leaves_the_first_recording_working():
    block = _block("psa_p", "fast")
    with record_attention(block) as outer:
        with pytest.raises(RuntimeError, match="already being recorded"), record_attention(block):
            pass
        block(torch.randn(1, 16, 3, 3))
    assert len(outer.calls("")) == 1 and outer[""].spatial_gate.shape == (1, 1, 3, 3)


# --- overlays ---------------------------------------------------------------------------------------
# The jet colour map runs from dark blue (RGB 0, 0, 128) at the minimum to dark red (128, 0, 0) at the max.
JET_LOW, JET_HIGH = (0, 0, 128), (128, 0, 0)


def _image(height: int, width: int) -> np.ndarray:
    return np.random.default_rng(height * 100 + width).integers(0, 256, (height, width, 3), dtype=np.uint8)


def test_overlay_puts_the_gate_maximum_in_red_and_minimum_in_blue():
    image = _image(4, 5)
    gate = torch.full((1, 4, 5), 0.6)
    gate[0, 1, 3], gate[0, 2, 0] = 0.7, 0.55
    colour = np.asarray(overlay_attention(image, gate, alpha=1.0))
    assert tuple(colour[1, 3]) == JET_HIGH and tuple(colour[2, 0]) == JET_LOW
    assert np.array_equal(np.asarray(overlay_attention(image, gate, alpha=0.0)), image)
    flat = np.asarray(overlay_attention(image, np.full((4, 5), 0.5), alpha=1.0))  # constant: all minimum
    assert (flat == JET_LOW).all()


def test_overlay_resizes_bilinearly_and_blends():
    """Against torch's bilinear resize (half-pixel centres) and the blend written out."""
    image = _image(8, 6)
    gate = torch.tensor([[0.2, 0.9, 0.4], [0.6, 0.3, 0.8]], dtype=torch.float64)  # [h=2, w=3] → 8 × 6
    normalised = (gate - gate.min()) / (gate.max() - gate.min())
    resized = F.interpolate(normalised[None, None], size=(8, 6), mode="bilinear", align_corners=False)[0, 0]
    levels = np.rint(resized.numpy() * 255).astype(np.uint8)
    colour = cv2.applyColorMap(levels, cv2.COLORMAP_JET)[..., ::-1].astype(np.float64)
    expected = np.rint(0.7 * image + 0.3 * colour)
    actual = np.asarray(overlay_attention(image, gate[None], alpha=0.3)).astype(np.float64)
    assert actual.shape == (8, 6, 3)
    assert np.abs(actual - expected).max() <= 1  # float32 vs float64 rounding at .5 only


def test_overlay_rejects_bad_gates_and_alpha():
    image = _image(4, 4)
    for bad in (torch.rand(2, 3, 3), torch.rand(5), torch.tensor([[float("nan")]])):
        with pytest.raises(ValueError, match="spatial_gate"):
            overlay_attention(image, bad)
    with pytest.raises(ValueError, match="alpha"):
        overlay_attention(image, torch.rand(3, 3), alpha=1.5)


def _recorded_maps() -> dict[str, AttentionMaps]:
    model = nn.Sequential(*(_block(n, i, 8) for n, i in [("psa_p", "fast"), ("se", None), ("psa_s", "fast")]))
    with torch.no_grad(), record_attention(model) as record:
        model(torch.randn(2, 8, 6, 5))
    return dict(record)


def test_grid_has_one_labelled_tile_per_spatial_gate(tmp_path):
    maps = _recorded_maps()  # blocks "0" (PsaP), "1" (SE: no spatial gate), "2" (PsaS)
    image = _image(60, 50)
    out = save_attention_grid(image, maps, tmp_path / "attn.png", sample=1, tile_size=60)
    assert out == tmp_path / "attn.png" and sorted(p.name for p in tmp_path.iterdir()) == ["attn.png"]
    grid = np.asarray(Image.open(out).convert("RGB"))
    assert grid.shape == (14 + 60, 2 * 50, 3)  # a 14 px label strip above each 60 × 50 tile, two tiles
    for column, name in enumerate(["0", "2"]):
        tile = grid[14:, column * 50 : (column + 1) * 50]
        assert np.array_equal(tile, np.asarray(overlay_attention(image, maps[name].spatial_gate[1])))
        label = grid[:14, column * 50 : (column + 1) * 50]
        assert label.max() > 200 and (label == 0).mean() > 0.5  # white text on black
    save_attention_grid(image, maps, out, tile_size=30)  # replaces the file, still nothing else left
    assert Image.open(out).size == (2 * 25, 14 + 30) and len(list(tmp_path.iterdir())) == 1


def test_grid_spreads_max_blocks_over_the_depth(tmp_path):
    image = _image(12, 12)
    maps = {f"b{i}": AttentionMaps("PsaP", None, torch.rand(1, 1, 3, 3)) for i in range(5)}
    grid = np.asarray(
        Image.open(save_attention_grid(image, maps, tmp_path / "g.png", max_blocks=3, tile_size=12))
    )
    assert grid.shape == (2 * (14 + 12), 2 * 12, 3)  # 3 tiles → 2 × 2 grid, the last cell empty
    tiles = [grid[14:26, :12], grid[14:26, 12:], grid[40:52, :12]]
    for tile, name in zip(tiles, ["b0", "b2", "b4"], strict=True):
        assert np.array_equal(tile, np.asarray(overlay_attention(image, maps[name].spatial_gate[0])))
    assert not grid[26:, 12:].any()


def test_grid_errors(tmp_path):
    image = _image(8, 8)
    se_only = {"se": AttentionMaps("SqueezeExcite", torch.rand(1, 4), None)}
    with pytest.raises(ValueError, match="spatial gate"):
        save_attention_grid(image, se_only, tmp_path / "a.png")
    maps = {"b": AttentionMaps("PsaP", None, torch.rand(2, 1, 3, 3))}
    with pytest.raises(ValueError, match="sample 2 is out of range"):
        save_attention_grid(image, maps, tmp_path / "a.png", sample=2)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        save_attention_grid(image, maps, tmp_path / "missing" / "a.png")
    with pytest.raises(ValueError, match="is a folder"):
        save_attention_grid(image, maps, tmp_path)
    assert list(tmp_path.iterdir()) == []
