"""mini-Xception sizes against key-point mini-Xception (Selvam et al.) and Arriaga et al.,
heads, shapes."""

import pytest
import torch

from fer_lightning.nets.heads import ClassifierHead
from fer_lightning.nets.mini_xception import MiniXception

GAP = {"pool": "gap", "hidden": [], "dropout": 0.0, "conv_kernel": 3}
FC = {"pool": "flatten", "hidden": [3072, 1536], "dropout": 0.5}


def n_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_gap_model_has_the_key_point_papers_size():
    # Selvam et al. Fig. 4a: "about 0.2 Million parameters"; 5 residual modules at 48x48.
    assert n_params(MiniXception(7, 1, 48, GAP)) == 201_079


def test_fc_model_has_the_key_point_papers_size():
    # Selvam et al. Fig. 4b: "about 8 Million Parameters".
    assert n_params(MiniXception(7, 1, 48, FC)) == 8_064_631


def test_four_modules_reproduce_arriaga_mini_xception():
    # Arriaga et al.'s mini_XCEPTION (4 modules, 16..128 filters): about 57-60 K parameters.
    assert n_params(MiniXception(7, 1, 48, GAP, num_modules=4)) == 56_951


@pytest.mark.parametrize("head", [GAP, FC, {"pool": "gap", "hidden": [64], "dropout": 0.5}])
@pytest.mark.parametrize("size, channels", [(48, 1), (64, 3)])
def test_logits_shape(head, size, channels):
    net = MiniXception(8, channels, size, head)
    assert net(torch.randn(2, channels, size, size)).shape == (2, 8)


def test_feature_side_matches_forward():
    net = MiniXception(7, 1, 48, GAP)
    features = net.modules_(net.stem(torch.randn(1, 1, 48, 48)))
    assert features.shape[-1] == MiniXception.feature_side(48, 5) == 2


def test_too_small_image_names_the_key_and_minimum():
    with pytest.raises(ValueError, match=r"data.image_size=32 .* needs data.image_size >= 36"):
        MiniXception(7, 1, 32, GAP)


def test_head_rejects_unknown_pool():
    with pytest.raises(ValueError, match=r"head.pool must be one of \['gap', 'flatten'\]"):
        ClassifierHead(16, 7, (2, 2), pool="max")
