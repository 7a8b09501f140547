from functools import partial

import pytest
import timm
import torch

from psa_zoo.layers import PsaP, create_attn, get_attn, list_attn, register_attn

TABLE1_BLOCKS = {"psa_p", "psa_s", "psa_p_paper", "psa_s_paper", "nl", "snl", "gc", "se", "cbam", "da", "ea"}


def test_registry_lists_every_table1_block():
    assert set(list_attn()) == TABLE1_BLOCKS
    assert list_attn("psa_*") == ["psa_p", "psa_p_paper", "psa_s", "psa_s_paper"]
    assert list_attn("nothing*") == []


def test_create_attn_builds_the_registered_class_with_kwargs():
    block = create_attn("psa_p", 32, impl="reference")
    assert isinstance(block, PsaP)
    assert block.impl == "reference"
    assert block.channels == 32


def test_unknown_block_name_suggests_close_matches():
    with pytest.raises(ValueError, match=r"unknown attention block 'psa_q'.*'psa_p'"):
        create_attn("psa_q", 16)


def test_bad_channels_and_none_are_rejected():
    with pytest.raises(ValueError, match="positive int"):
        create_attn("se", 0)
    with pytest.raises(ValueError, match="positive int"):
        create_attn("se", 16.0)
    with pytest.raises(ValueError, match="got None"):
        create_attn(None, 16)


def test_get_attn_passes_callables_and_none_through():
    assert get_attn(None) is None
    factory = partial(PsaP, init="hrnet")
    assert get_attn(factory) is factory
    with pytest.raises(ValueError, match="block name, a callable or None"):
        get_attn(3)


def test_register_attn_refuses_duplicates():
    with pytest.raises(ValueError, match="already registered"):
        register_attn("psa_p", PsaP)


@pytest.mark.parametrize("name", sorted(TABLE1_BLOCKS))
def test_blocks_fit_timm_attn_layer_slots(name):
    """timm calls attn_layer(channels) inside its ResNet blocks; every block must fit that slot."""
    model = timm.create_model(
        "resnet10t", pretrained=False, num_classes=3, block_args={"attn_layer": get_attn(name)}
    )
    inserted = [m for m in model.modules() if type(m) is type(get_attn(name)(8))]
    assert len(inserted) == 4  # one per BasicBlock of resnet10t
    out = model(torch.randn(2, 3, 64, 64))
    assert out.shape == (2, 3)
    assert torch.isfinite(out).all()
