"""``pretrained_backbone=True`` through timm's real loader and huggingface_hub's real cache, offline."""

from pathlib import Path

import huggingface_hub.constants
import pytest
import timm
import torch
from safetensors.torch import save_file

import psa_zoo
from psa_zoo.models._loading import is_attention_key

COMMIT = "0123456789abcdef0123456789abcdef01234567"


def _populate_hub_cache(cache: Path, timm_name: str) -> dict[str, torch.Tensor]:
    """Write a Hub-cache snapshot of ``timm/<timm_name>`` holding random weights; return them."""
    torch.manual_seed(1)
    source = timm.create_model(timm_name.split(".")[0], pretrained=False)
    with torch.no_grad():
        for tensor in source.state_dict().values():
            if tensor.is_floating_point():
                tensor.copy_(torch.randn_like(tensor))
    state = {k: v.contiguous() for k, v in source.state_dict().items()}
    repo = cache / f"models--timm--{timm_name}"
    snapshot = repo / "snapshots" / COMMIT
    snapshot.mkdir(parents=True)
    save_file(state, snapshot / "model.safetensors")
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(COMMIT)
    return state


@pytest.fixture
def offline(monkeypatch):
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)


@pytest.mark.parametrize(
    ("name", "timm_name", "backbone_key", "timm_key"),
    [
        ("deeplabv3plus_mbv2_psa", "mobilenetv2_100.ra_in1k", "backbone.blocks.3.1.conv_dw.weight",
         "blocks.3.1.conv_dw.weight"),
        ("hrnet_w18_psa_p", "hrnet_w18.ms_in1k", "stage3.0.branches.2.1.conv2.weight",
         "stage3.0.branches.2.1.conv2.weight"),
    ],
)  # fmt: skip
def test_pretrained_backbone_loads_timm_weights_from_the_hub_cache(
    tmp_path, offline, name, timm_name, backbone_key, timm_key
):
    state = _populate_hub_cache(tmp_path, timm_name)
    model = psa_zoo.create_model(name, pretrained_backbone=True, cache_dir=str(tmp_path))
    loaded = model.state_dict()
    torch.testing.assert_close(loaded[backbone_key], state[timm_key], rtol=0, atol=0)
    fresh = psa_zoo.create_model(name)
    assert not torch.equal(fresh.state_dict()[backbone_key], state[timm_key])
    # attention blocks and heads keep their own initialisation
    attn_keys = [k for k in loaded if is_attention_key(k)]
    assert attn_keys


def test_pretrained_backbone_offline_without_cache_says_so(tmp_path, offline):
    with pytest.raises(FileNotFoundError, match=r"not in the local cache, and HF_HUB_OFFLINE=1"):
        psa_zoo.create_model("deeplabv3plus_mbv2", pretrained_backbone=True, cache_dir=str(tmp_path))


def _stalling_server():
    """A loopback TCP server that accepts connections and never answers (a Hub that does not respond)."""
    import socket
    import threading

    server = socket.create_server(("127.0.0.1", 0))
    held = []

    def accept():
        while True:
            try:
                held.append(server.accept()[0])
            except OSError:  # closed
                return

    threading.Thread(target=accept, daemon=True).start()
    return server, held


def test_pretrained_backbone_with_an_unanswering_hub_fails_within_the_bound(tmp_path, monkeypatch):
    import time

    from psa_zoo.models import _loading

    server, held = _stalling_server()
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(huggingface_hub.constants, "ENDPOINT", f"http://127.0.0.1:{server.getsockname()[1]}")
    monkeypatch.setattr(_loading, "HUB_PROBE_TIMEOUT_S", 1.0)
    start = time.monotonic()
    try:
        with pytest.raises(
            FileNotFoundError, match=r"not in the local cache, and http://127\.0\.0\.1:\d+ did not"
        ):
            psa_zoo.create_model("deeplabv3plus_mbv2", pretrained_backbone=True, cache_dir=str(tmp_path))
    finally:
        server.close()
        for connection in held:
            connection.close()
    # one request with a 1 s timeout (about 3 s here: connect and read phases), no retries; the Hub
    # client's own retries take about a minute
    assert time.monotonic() - start < 8


def test_pretrained_backbone_with_a_refusing_hub_fails_at_once(tmp_path, monkeypatch):
    import socket

    with socket.create_server(("127.0.0.1", 0)) as probe:
        port = probe.getsockname()[1]  # closed again: connections to it are refused
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(huggingface_hub.constants, "ENDPOINT", f"http://127.0.0.1:{port}")
    with pytest.raises(FileNotFoundError, match=r"did not answer \(one request, timeout 5 s: \w+\)"):
        psa_zoo.create_model("deeplabv3plus_mbv2", pretrained_backbone=True, cache_dir=str(tmp_path))
