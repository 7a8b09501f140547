import importlib.util

import torch

from psa_zoo.layers import PsaS
from tests.conftest import REPO_ROOT


def test_torch_hub_local_attention_block_entrypoint():
    block = torch.hub.load(
        str(REPO_ROOT), "attention_block", source="local", name="psa_s", channels=16, init="hrnet"
    )
    assert isinstance(block, PsaS)
    assert block(torch.randn(1, 16, 4, 4)).shape == (1, 16, 4, 4)


def test_hubconf_declares_dependencies_and_documents_entrypoints():
    spec = importlib.util.spec_from_file_location("hubconf", REPO_ROOT / "hubconf.py")
    hubconf = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(hubconf)
    assert {"torch", "timm"} <= set(hubconf.dependencies)
    public = [n for n in vars(hubconf) if callable(getattr(hubconf, n)) and not n.startswith("_")]
    assert public == ["attention_block"]
    assert "Returns" in hubconf.attention_block.__doc__
