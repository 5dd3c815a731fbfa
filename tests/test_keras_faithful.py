"""Keras-faithful mini_xception / mba blocks: TF 'same' pooling, Keras BatchNorm options,
and old configs (without the options) rebuilding the nets they were trained with."""

from __future__ import annotations

import pytest
import torch
from omegaconf import OmegaConf
from torch import nn

from fer_lightning.build import build_net
from fer_lightning.nets.blocks import NormOptions
from fer_lightning.nets.mba import MBANet
from fer_lightning.nets.mini_xception import MiniXception

GAP = {"pool": "gap"}


def test_tf_pool_pads_after_on_even_maps():
    """4x4 map, 3x3 stride 2: TF pads 0 before and 1 after, so the first window covers
    rows/cols 0..2 (max 10), torch's symmetric padding covers -1..1 (max 5)."""
    x = torch.arange(16.0).view(1, 1, 4, 4)
    tf = NormOptions(padding="tf").max_pool()(x)
    symmetric = NormOptions(padding="symmetric").max_pool()(x)
    assert tf.flatten().tolist() == [10.0, 11.0, 14.0, 15.0]
    assert symmetric.flatten().tolist() == [5.0, 7.0, 13.0, 15.0]


def test_tf_pool_pads_symmetrically_on_odd_maps():
    x = torch.randn(1, 2, 5, 5)
    assert torch.equal(NormOptions(padding="tf").max_pool()(x),
                       NormOptions(padding="symmetric").max_pool()(x))


def test_keras_options_reach_every_batchnorm():
    net = MiniXception(7, 1, 64, GAP, num_modules=4, padding="tf", bn_eps=1e-3,
                       bn_momentum=0.01)
    norms = [m for m in net.modules() if isinstance(m, nn.BatchNorm2d)]
    assert len(norms) == 2 + 3 * 4
    assert {(m.eps, m.momentum) for m in norms} == {(1e-3, 0.01)}


def test_options_change_no_parameter_count():
    def count(**options):
        return sum(p.numel() for p in MiniXception(7, 1, 64, GAP, num_modules=4,
                                                   **options).parameters())
    assert count() == count(padding="tf", bn_eps=1e-3, bn_momentum=0.01) == 56_951


@pytest.mark.parametrize("key, value, message", [
    ("padding", "same", "model.padding must be one of"),
    ("bn_eps", 0.0, "model.bn_eps must be > 0"),
    ("bn_momentum", 1.5, "model.bn_momentum must be in"),
])
def test_bad_option_names_its_key(key, value, message):
    with pytest.raises(ValueError, match=message):
        MiniXception(7, 1, 48, GAP, **{key: value})


def _config(model: dict, image_size: int = 64):
    return OmegaConf.create({
        "model": model, "head": {"name": "gap", "pool": "gap", "hidden": [], "dropout": 0.0,
                                 "conv_kernel": 3, "final_dropout": True},
        "data": {"channels": 1, "image_size": image_size}, "landmarks": {"enabled": False}})


def test_old_config_without_the_options_rebuilds_the_old_net():
    """A stored config written before the options existed (no padding / bn_* keys) must
    give the symmetric pooling and torch BatchNorm it was trained with."""
    old = _config({"_target_": "fer_lightning.nets.mini_xception.MiniXception",
                   "name": "mini_xception", "num_modules": 4, "base_width": 16,
                   "stem_width": 8})
    net = build_net(old, 7)
    assert isinstance(net.modules_[0].main[-1], nn.MaxPool2d)
    assert type(net.modules_[0].main[-1]).__name__ == "MaxPool2d"
    assert {m.eps for m in net.modules() if isinstance(m, nn.BatchNorm2d)} == {1e-5}


def test_yaml_defaults_are_keras_for_both_families():
    for name in ("mini_xception", "mba"):
        model = OmegaConf.load(f"conf/model/{name}.yaml")
        assert (model.padding, model.bn_eps, model.bn_momentum) == ("tf", 1e-3, 0.01), name


def test_mba_uses_tf_pooling_and_keras_norm():
    net = MBANet(7, 1, 48, {"pool": "flatten"}, padding="tf", bn_eps=1e-3, bn_momentum=0.01)
    pools = [m for m in net.modules() if isinstance(m, nn.MaxPool2d)]
    assert pools and all(type(m).__name__ == "MaxPool2dSame" for m in pools)
    assert {m.eps for m in net.modules() if isinstance(m, nn.BatchNorm2d)} == {1e-3}
