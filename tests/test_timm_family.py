"""model=timm: any timm model by name, in_chans from the data, local weights, the baselines
of VGG16-CBAM (Ghimire et al.)."""

import logging

import pytest
import timm
import torch
from torch import nn

from fer_lightning.config import ConfigError, build_net, check_config
from fer_lightning.nets.backbones import TimmBackbone
from fer_lightning.train import train

GAP = {"pool": "gap", "hidden": [512, 512], "dropout": 0.5}
FLAT = {"pool": "flatten", "hidden": [], "dropout": 0.0}
FAST = ("trainer.fast_dev_run=true", "logger=none", "data.batch_size=4")


def test_model_name_and_channels_reach_timm(make_cfg):
    cfg = make_cfg("model=timm", "model.name=resnet18", "data.channels=1", "head=fc")
    check_config(cfg)
    with torch.device("meta"):
        net = build_net(cfg, num_classes=7)
    assert net.backbone.conv1.in_channels == 1
    assert isinstance(net.backbone.layer4, nn.Sequential)
    first = next(m for m in net.head.modules() if isinstance(m, nn.Linear))
    assert first.in_features == 512 * 2 * 2  # resnet18 reduces 48 px by 32 -> 2x2 (rounded up)


def test_flatten_head_sees_the_real_feature_map():
    net = TimmBackbone(7, 3, 64, FLAT, arch="resnet18")
    assert net(torch.rand(2, 3, 64, 64)).shape == (2, 7)
    assert net.head.body[1][-1].in_features == 512 * 2 * 2


def test_too_small_input_and_unknown_name_are_clear_errors(make_cfg):
    with pytest.raises(ConfigError, match="data.image_size=48 is too small for timm model"):
        check_config(make_cfg("model=timm", "model.name=inception_v3"))
    with pytest.raises(ConfigError, match="model.name='no_such_net' is not a timm model"):
        check_config(make_cfg("model=timm", "model.name=no_such_net"))
    with pytest.raises(ValueError, match="model.pretrained_key_map='bogus'"):
        TimmBackbone(7, 3, 32, GAP, arch="resnet18", pretrained_key_map="bogus")


def save_timm_weights(path, name="resnet18", prefix=""):
    model = timm.create_model(name, pretrained=False)  # 3 channels, 1000-class fc
    state = {prefix + k: v for k, v in model.state_dict().items()}
    torch.save(state, path)
    return model.state_dict()


def test_loads_local_weights_into_one_channel_model(tmp_path):
    state = save_timm_weights(tmp_path / "r18.pth")
    net = TimmBackbone(7, 1, 32, GAP, arch="resnet18", pretrained_path=str(tmp_path / "r18.pth"))
    assert torch.allclose(net.backbone.conv1.weight, state["conv1.weight"].sum(1, keepdim=True))
    assert torch.equal(net.backbone.layer4[1].conv2.weight, state["layer4.1.conv2.weight"])
    assert torch.equal(net.backbone.bn1.running_mean, state["bn1.running_mean"])


def test_key_maps_rename_before_a_strict_load(tmp_path):
    state = save_timm_weights(tmp_path / "wrapped.pth", prefix="net.backbone.")
    extra = torch.load(tmp_path / "wrapped.pth")
    extra["net.head.body.2.weight"] = torch.randn(7, 512)
    torch.save({"state_dict": extra}, tmp_path / "wrapped.ckpt")
    net = TimmBackbone(7, 3, 32, GAP, arch="resnet18", pretrained_key_map="lightning",
                       pretrained_path=str(tmp_path / "wrapped.ckpt"))
    assert torch.equal(net.backbone.layer1[0].conv1.weight, state["layer1.0.conv1.weight"])
    inline = [[r"^net\.backbone\.", ""]]
    with pytest.raises(ValueError, match=r"unexpected keys \['net.head.body.2.weight'\]"):
        TimmBackbone(7, 3, 32, GAP, arch="resnet18", pretrained_key_map=inline,
                     pretrained_path=str(tmp_path / "wrapped.ckpt"))
    with pytest.raises(ValueError, match="missing keys"):
        TimmBackbone(7, 3, 32, GAP, arch="resnet18", pretrained_path=str(tmp_path / "wrapped.pth"))


def test_no_path_warns_and_meta_build_reads_nothing(caplog, tmp_path):
    with caplog.at_level(logging.WARNING):
        TimmBackbone(7, 3, 32, GAP, arch="resnet18")
    assert "timm model 'resnet18' starts from random weights" in caplog.text
    caplog.clear()
    unreadable = tmp_path / "not-a-checkpoint.pth"
    unreadable.write_bytes(b"not torch")
    with torch.device("meta"), caplog.at_level(logging.WARNING):
        TimmBackbone(7, 3, 32, GAP, arch="resnet18", pretrained_path=str(unreadable))
    assert caplog.text == ""


def test_missing_weights_file_fails_at_the_config_check(make_cfg, tmp_path):
    missing = tmp_path / "none.pth"
    with pytest.raises(ConfigError, match=f"model.pretrained_path='{missing}': no such file"):
        check_config(make_cfg("model=timm", "model.name=resnet18",
                              f"model.pretrained_path={missing}"))


@pytest.mark.parametrize("experiment, size", [("baseline_resnet50_imagenet", 32),
                                              ("baseline_resnet50_vggface", 32),
                                              ("baseline_inceptionv3_gap", 75)])
def test_baseline_experiment_runs_on_synthetic(make_cfg, experiment, size):
    results = train(make_cfg(f"+experiment={experiment}", "data=synthetic",
                             f"data.image_size={size}", *FAST))
    assert len(results["test"]["confusion_matrix"]) == 7


def test_landmark_overlay_applies(make_cfg):
    results = train(make_cfg("model=timm", "model.name=resnet18", "landmarks=groundtruth",
                             "head=fc", *FAST))
    assert results["num_parameters"] > 0
