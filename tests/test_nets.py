"""mini-Xception sizes against key-point mini-Xception (Selvam et al.) and Arriaga et al.,
heads, shapes; the net contract every family declares (nets/base.py)."""

import inspect
from pathlib import Path

import pytest
import torch

import fer_lightning
from fer_lightning.config import ConfigError, build_net, check_config, net_class
from fer_lightning.data.encodings import ENCODINGS
from fer_lightning.modules.classifier import param_groups
from fer_lightning.nets.base import FERNet, StagedFineTunable
from fer_lightning.nets.heads import POOLS, ClassifierHead
from fer_lightning.nets.mini_xception import MiniXception
from fer_lightning.nets.vgg_cbam import VGGCBAM

GAP = {"pool": "gap", "hidden": [], "dropout": 0.0, "conv_kernel": 3}
FC = {"pool": "flatten", "hidden": [3072, 1536], "dropout": 0.5}


def n_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_gap_model_has_the_papers_size():
    # Selvam et al. Fig. 4a: "about 0.2 Million parameters"; 5 residual modules at 48x48.
    assert n_params(MiniXception(7, 1, 48, GAP)) == 201_079


def test_fc_model_has_the_papers_size():
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


# --- the declared net contract (nets/base.py) ------------------------------------------

FAMILIES = sorted(p.stem for p in (Path(fer_lightning.__file__).parent / "conf" / "model")
                  .glob("*.yaml") if not p.stem.startswith("_"))


@pytest.mark.parametrize("family", FAMILIES)
def test_every_family_declares_the_contract(make_cfg, family):
    cfg = make_cfg(f"model={family}")
    declared = net_class(cfg)
    assert issubclass(declared, FERNet)
    assert declared.landmark_encoding in ENCODINGS
    assert set(declared.supported_heads) <= set(POOLS)
    with torch.device("meta"):
        net = build_net(cfg, num_classes=7)
    forward = inspect.signature(net.forward).parameters
    assert set(net.input_keys) <= set(forward), "forward must take every declared batch key"


def test_a_target_that_is_no_family_is_a_config_error(make_cfg):
    cfg = make_cfg("model._target_=torch.nn.Linear")
    with pytest.raises(ConfigError, match=r"model._target_=torch.nn.Linear is not a network "
                                          r"family: it must subclass .*FERNet"):
        check_config(cfg)


def test_a_family_declaring_an_unknown_head_fails_at_definition():
    with pytest.raises(TypeError, match=r"supported_heads must be a non-empty subset of "
                                        r"\['gap', 'flatten'\], got \['max'\]"):
        type("Bad", (FERNet,), {"supported_heads": ("max",)})


def test_nets_receive_plain_containers(make_cfg):
    cfg = make_cfg("model=ms_fpn", "model.backbone=resnet18", "data.image_size=64",
                   "landmarks=groundtruth")
    with torch.device("meta"):
        net = build_net(cfg, num_classes=7)
    assert type(net.detector.config.rpn_post_nms_top_n) is dict
    cfg = make_cfg("model=vgg_cbam", "model.layers=[8,M,8]")
    seen = {}
    original = VGGCBAM.__init__

    def spy(self, *args, **kwargs):
        seen.update(kwargs)
        original(self, *args, **kwargs)

    with pytest.MonkeyPatch.context() as patch, torch.device("meta"):
        patch.setattr(VGGCBAM, "__init__", spy)
        build_net(cfg, num_classes=7)
    assert type(seen["layers"]) is list and type(seen["head"]) is dict


def test_staged_finetune_hooks_are_the_declared_protocol():
    assert isinstance(MiniXception(7, 1, 48, GAP), FERNet)
    assert not isinstance(MiniXception(7, 1, 48, GAP), StagedFineTunable)
    with torch.device("meta"):
        assert isinstance(VGGCBAM(7, 3, 32, GAP), StagedFineTunable)


# --- optimizer parameter groups: Keras-style L2 on conv kernels ------------------------

def test_conv_l2_groups_hold_exactly_the_chosen_kernels():
    net = MiniXception(7, 1, 48, GAP)
    groups = param_groups(net, conv_l2=0.01, conv_l2_modules=r"^(stem|modules_\.\d+\.main)\.")
    kernels, rest = groups
    assert kernels["weight_decay"] == pytest.approx(0.02) and "weight_decay" not in rest
    expected = [m.weight for name, m in net.named_modules() if isinstance(m, torch.nn.Conv2d)
                and (name.startswith("stem.") or ".main." in name)]
    assert [id(p) for p in kernels["params"]] == [id(p) for p in expected]
    assert len(expected) == 2 + 5 * 4  # 2 stem convs + 2 SepConvs x (depthwise, pointwise) x 5
    assert sorted(map(id, kernels["params"] + rest["params"])) == \
        sorted(map(id, net.parameters()))  # a partition: nothing lost, nothing twice
    shortcuts = {id(m.weight) for name, m in net.named_modules() if "shortcut" in name
                 and isinstance(m, torch.nn.Conv2d)}
    assert shortcuts and not shortcuts & {id(p) for p in kernels["params"]}
    every_conv = param_groups(net, conv_l2=0.01)[0]["params"]
    assert len(every_conv) == sum(isinstance(m, torch.nn.Conv2d) for m in net.modules())


def test_conv_l2_weight_decay_is_the_keras_l2_loss_term():
    torch.manual_seed(0)
    net = MiniXception(7, 1, 48, GAP, num_modules=2)
    twin = MiniXception(7, 1, 48, GAP, num_modules=2)
    twin.load_state_dict(net.state_dict())
    image, label = torch.randn(4, 1, 48, 48), torch.tensor([0, 1, 2, 3])
    decayed = torch.optim.SGD(param_groups(net, conv_l2=0.01), lr=0.1)
    torch.nn.functional.cross_entropy(net(image), label).backward()
    decayed.step()
    plain = torch.optim.SGD(twin.parameters(), lr=0.1)
    kernels = [m.weight for m in twin.modules() if isinstance(m, torch.nn.Conv2d)]
    loss = torch.nn.functional.cross_entropy(twin(image), label)
    (loss + 0.01 * sum((w ** 2).sum() for w in kernels)).backward()  # Keras' l2(0.01)
    plain.step()
    for a, b in zip(net.parameters(), twin.parameters(), strict=True):
        torch.testing.assert_close(a, b)


def test_conv_l2_bad_settings_name_the_key():
    net = MiniXception(7, 1, 48, GAP)
    with pytest.raises(ValueError, match=r"optimizer.conv_l2 must be >= 0, got -1"):
        param_groups(net, conv_l2=-1)
    with pytest.raises(ValueError, match=r"optimizer.conv_l2_modules='nothing' matches no "
                                         r"Conv2d; the convs are named like \['stem.0.0'"):
        param_groups(net, conv_l2=0.01, conv_l2_modules="nothing")
    with pytest.raises(ValueError, match=r"optimizer.conv_l2_modules='\(' is not a regular"):
        param_groups(net, conv_l2=0.01, conv_l2_modules="(")
    with pytest.raises(ValueError, match=r"torch.optim.AdamW's weight_decay is decoupled"):
        param_groups(net, conv_l2=0.01, optimizer_target="torch.optim.AdamW")
    assert len(param_groups(net)) == 1


def test_keypoint_experiment_puts_arriaga_l2_into_the_optimizer(make_cfg):
    from fer_lightning.train import build_module

    cfg = make_cfg("+experiment=mini_xception_ferplus", "data=synthetic",
                   "landmarks=groundtruth")
    assert (cfg.callbacks.model_checkpoint.monitor, cfg.callbacks.model_checkpoint.mode) == \
        ("val/loss", "min")  # Arriaga: ModelCheckpoint('val_loss', save_best_only=True)
    module = build_module(cfg, build_net(cfg, 7), torch.nn.CrossEntropyLoss(), list("abcdefg"))
    optimizer = module.configure_optimizers()["optimizer"]
    kernels, rest = optimizer.param_groups
    assert kernels["weight_decay"] == pytest.approx(0.02) and rest["weight_decay"] == 0.0
    assert len(kernels["params"]) == 22 and all(p.ndim == 4 for p in kernels["params"])
    assert isinstance(optimizer, torch.optim.Adam) and optimizer.defaults["lr"] == 1e-3
