import importlib.util

import torch

import psa_zoo
from psa_zoo.layers import PsaS
from tests.conftest import REPO_ROOT


def _hubconf():
    spec = importlib.util.spec_from_file_location("hubconf", REPO_ROOT / "hubconf.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_hubconf_has_one_documented_entrypoint_per_model():
    hubconf = _hubconf()
    assert {"torch", "timm"} <= set(hubconf.dependencies)
    public = sorted(n for n in vars(hubconf) if callable(getattr(hubconf, n)) and not n.startswith("_"))
    assert public == sorted([*psa_zoo.list_models(), "attention_block"])
    for name in public:
        doc = getattr(hubconf, name).__doc__
        assert doc and "Returns" in doc, name
    assert "coco_256x192" in hubconf.hrnet_w32.__doc__


def test_torch_hub_local_model_entrypoint():
    model = torch.hub.load(str(REPO_ROOT), "hrnet_w18_psa_p", source="local", num_classes=3, attn="se")
    assert isinstance(model, psa_zoo.HRNetPose)
    assert model(torch.randn(1, 3, 64, 48)).shape == (1, 3, 16, 12)


def test_torch_hub_local_attention_block_entrypoint():
    block = torch.hub.load(
        str(REPO_ROOT), "attention_block", source="local", name="psa_s", channels=16, init="hrnet"
    )
    assert isinstance(block, PsaS)
    assert block(torch.randn(1, 16, 4, 4)).shape == (1, 16, 4, 4)
