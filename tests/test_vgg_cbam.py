"""model=vgg_cbam (VGG16-CBAM, Ghimire et al.): parameter counts, CBAM maths, pre-trained
loading, input scaling, experiments."""

import logging

import pytest
import torch
from torch import nn
from torchvision.models import vgg16

from fer_lightning.config import build_net
from fer_lightning.nets.cbam import CBAM, ChannelGate, SpatialGate
from fer_lightning.nets.vgg_cbam import VGGCBAM
from fer_lightning.train import train

PAPER_HEAD = {"pool": "gap", "hidden": [512, 512], "dropout": 0.5}
FAST = ("trainer.fast_dev_run=true", "logger=none", "data.batch_size=4")
CONVS = [(64, 3), (64, 64), (128, 64), (128, 128), (256, 128), (256, 256), (256, 256),
         (512, 256), (512, 512), (512, 512), (512, 512), (512, 512), (512, 512)]
VGGFACE_NAMES = [f"conv{b}_{i}" for b, n in enumerate((2, 2, 3, 3, 3), 1) for i in range(1, n + 1)]


def count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def meta_net(**kwargs) -> VGGCBAM:
    with torch.device("meta"):
        return VGGCBAM(**{"num_classes": 7, "in_channels": 3, "image_size": 224,
                          "head": PAPER_HEAD, **kwargs})


def test_vgg16_base_is_torchvisions_features_with_its_parameter_count():
    net = meta_net()
    assert count(net.features) == 14_714_688
    with torch.device("meta"):
        reference = vgg16(weights=None).features
    assert {k: v.shape for k, v in net.features.state_dict().items()} == \
        {k: v.shape for k, v in reference.state_dict().items()}
    assert count(meta_net(in_channels=1).features) == 14_714_688 - 2 * 64 * 9


def test_cbam_adds_the_papers_66k_parameters():
    added = count(CBAM(512))
    assert added == 66_130  # 2 * 512 * 64 + 64 + 512 (channel MLP) + 2 * 3 * 3 (spatial conv)
    assert abs(added - 66_000) / 66_000 < 0.01
    assert count(meta_net()) - count(meta_net(cbam=False)) == added
    official = CBAM(512, reduction=16, spatial_kernel=7, spatial_batch_norm=True)
    assert count(official) == 2 * 512 * 32 + 32 + 512 + 2 * 49 + 2


def test_gates_match_hand_computation():
    x = torch.randn(2, 4, 5, 5)
    channel = ChannelGate(4, reduction=2)
    for parameter in channel.parameters():
        nn.init.zeros_(parameter)
    assert torch.allclose(channel(x), 0.5 * x)  # sigmoid(0 + 0)
    spatial = SpatialGate(kernel_size=1)
    with torch.no_grad():
        spatial.conv.weight.copy_(torch.tensor([1.0, 0.0]).view(1, 2, 1, 1))  # the max pool
    expected = x * torch.sigmoid(x.amax(dim=1, keepdim=True))
    assert torch.allclose(spatial(x), expected)
    with torch.no_grad():
        spatial.conv.weight.copy_(torch.tensor([0.0, 1.0]).view(1, 2, 1, 1))  # the mean pool
    assert torch.allclose(spatial(x), x * torch.sigmoid(x.mean(dim=1, keepdim=True)))


def test_bad_cbam_settings_name_the_key():
    with pytest.raises(ValueError, match="model.spatial_kernel"):
        SpatialGate(kernel_size=4)
    with pytest.raises(ValueError, match="model.reduction"):
        ChannelGate(8, reduction=16)


def test_experiment_head_is_the_papers_classifier(make_cfg):
    cfg = make_cfg("+experiment=vgg_cbam", "data=synthetic")
    assert cfg.data.image_size == 224 and cfg.data.channels == 3
    assert cfg.loss._target_.endswith("WeightedCrossEntropy")
    with torch.device("meta"):
        net = build_net(cfg, num_classes=7)
    layers = list(net.head.body)
    assert isinstance(layers[0], nn.AdaptiveAvgPool2d)
    linears = [m for m in net.head.modules() if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(512, 512), (512, 512), (512, 7)]
    # GAP, dropout, FC 512, ReLU, dropout, FC 512, ReLU, classifier: no dropout before it
    kinds = [type(m).__name__ for m in net.head.modules()
             if isinstance(m, (nn.Dropout, nn.Linear))]
    assert kinds == ["Dropout", "Linear", "Dropout", "Linear", "Linear"]
    assert {m.p for m in net.head.modules() if isinstance(m, nn.Dropout)} == {0.5}
    with torch.device("meta"):
        flat = build_net(make_cfg("+experiment=vgg_cbam", "data=synthetic", "head=fc"), 7)
    assert [m for m in flat.head.modules() if isinstance(m, nn.Linear)][0].in_features == \
        512 * 7 * 7


def test_image_too_small_is_a_clear_error():
    with pytest.raises(ValueError, match=r"data.image_size >= 32"):
        meta_net(image_size=16)
    with pytest.raises(ValueError, match="model.layers"):
        meta_net(layers=["M", 8])


def fake_torchvision_state() -> dict[str, torch.Tensor]:
    state = {f"features.{i}.{kind}": torch.randn(*shape) for i, (out, inp) in zip(
        [0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28], CONVS, strict=True)
        for kind, shape in (("weight", (out, inp, 3, 3)), ("bias", (out,)))}
    state.update({"classifier.0.weight": torch.randn(4, 8), "classifier.6.bias": torch.randn(4)})
    return state


def fake_vggface_state(separator: str = "") -> dict[str, torch.Tensor]:
    state = {}
    for name, (out, inp) in zip(VGGFACE_NAMES, CONVS, strict=True):
        name = name.replace("conv", f"conv{separator}")
        state[f"{name}.weight"] = torch.randn(out, inp, 3, 3)
        state[f"{name}.bias"] = torch.randn(out)
    state.update({f"fc{i}.weight": torch.randn(3, 3) for i in (6, 7, 8)})
    return state


def test_loads_torchvision_imagenet_layout(tmp_path):
    state = fake_torchvision_state()
    path = tmp_path / "vgg16.pth"
    torch.save(state, path)
    net = VGGCBAM(7, 3, 32, PAPER_HEAD, pretrained_path=str(path))
    assert torch.equal(net.features[0].weight, state["features.0.weight"])
    assert torch.equal(net.features[28].weight, state["features.28.weight"])
    assert torch.equal(net.features[17].bias, state["features.17.bias"])


@pytest.mark.parametrize("separator", ["", "_"])
def test_loads_vggface_layouts_into_one_channel_base(tmp_path, separator):
    state = fake_vggface_state(separator)
    path = tmp_path / "vgg_face.pth"
    torch.save({"state_dict": state}, path)
    net = VGGCBAM(7, 1, 32, PAPER_HEAD, pretrained_path=str(path))
    first = f"conv{separator}1_1.weight"
    assert net.features[0].weight.shape == (64, 1, 3, 3)
    assert torch.allclose(net.features[0].weight, state[first].sum(dim=1, keepdim=True))
    assert torch.equal(net.features[2].weight, state[f"conv{separator}1_2.weight"])
    assert torch.equal(net.features[28].weight, state[f"conv{separator}5_3.weight"])
    assert torch.equal(net.features[26].bias, state[f"conv{separator}5_2.bias"])


def test_one_channel_sum_gives_the_response_to_a_replicated_grey_image(tmp_path):
    state = fake_vggface_state()
    torch.save(state, tmp_path / "face.pth")
    grey = VGGCBAM(7, 1, 32, PAPER_HEAD, pretrained_path=str(tmp_path / "face.pth"))
    rgb = VGGCBAM(7, 3, 32, PAPER_HEAD, pretrained_path=str(tmp_path / "face.pth"))
    image = torch.rand(1, 1, 32, 32)
    assert torch.allclose(grey.features[0](image), rgb.features[0](image.expand(1, 3, 32, 32)),
                          atol=1e-5)


def test_bad_checkpoints_are_reported_strictly(tmp_path):
    state = fake_vggface_state()
    state["extra.weight"] = torch.randn(2)
    torch.save(state, tmp_path / "extra.pth")
    with pytest.raises(ValueError, match=r"unexpected keys \['extra.weight'\]"):
        VGGCBAM(7, 3, 32, PAPER_HEAD, pretrained_path=str(tmp_path / "extra.pth"))
    state = fake_vggface_state()
    del state["conv5_3.weight"], state["conv5_3.bias"]
    torch.save(state, tmp_path / "short.pth")
    with pytest.raises(ValueError, match="found 12 convolutions"):
        VGGCBAM(7, 3, 32, PAPER_HEAD, pretrained_path=str(tmp_path / "short.pth"))
    state = fake_vggface_state()
    state["conv3_1.weight"] = torch.randn(256, 64, 3, 3)
    torch.save(state, tmp_path / "shape.pth")
    with pytest.raises(ValueError, match="'conv3_1.weight' has shape"):
        VGGCBAM(7, 3, 32, PAPER_HEAD, pretrained_path=str(tmp_path / "shape.pth"))
    with pytest.raises(FileNotFoundError, match="model.pretrained_path"):
        VGGCBAM(7, 3, 32, PAPER_HEAD, pretrained_path=str(tmp_path / "missing.pth"))


def test_no_path_warns_and_meta_build_reads_nothing(caplog, tmp_path):
    with caplog.at_level(logging.WARNING):
        VGGCBAM(7, 3, 32, PAPER_HEAD)
    assert "the VGG base starts from random weights; accuracy will not match VGG16-CBAM" \
        in caplog.text
    caplog.clear()
    unreadable = tmp_path / "not-a-checkpoint.pth"
    unreadable.write_bytes(b"not torch")
    with caplog.at_level(logging.WARNING):
        meta_net(pretrained_path=str(unreadable))  # a real build would fail to read it
    assert caplog.text == ""
    with pytest.raises(FileNotFoundError, match="model.pretrained_path=.*not-there.pth"):
        meta_net(pretrained_path=str(tmp_path / "not-there.pth"))  # the config check's build


VGG_EXPERIMENTS = ["vgg_cbam", "baseline_small_cnn", "baseline_vgg16_imagenet_fc",
                   "baseline_vgg16_vggface_fc", "baseline_vgg16_vggface_gap"]


@pytest.mark.parametrize("experiment", VGG_EXPERIMENTS)
def test_experiment_runs_on_synthetic(make_cfg, experiment):
    results = train(make_cfg(f"+experiment={experiment}", "data=synthetic",
                             "data.image_size=32", *FAST))
    assert len(results["test"]["confusion_matrix"]) == 7


def test_landmark_overlay_applies(make_cfg):
    results = train(make_cfg("model=vgg_cbam", "landmarks=groundtruth", "data.image_size=32",
                             "model.layers=[8,M,8,M,8,M,8,M,8,M]", *FAST))
    assert results["num_parameters"] > 0


VGGFACE_MEAN_255 = torch.tensor([129.186279296875, 104.76238250732422, 93.59396362304688])


def test_vggface_layout_gets_vggface_input_scaling(tmp_path):
    torch.save(fake_vggface_state(), tmp_path / "vgg_face.pth")
    net = VGGCBAM(7, 3, 32, PAPER_HEAD, pretrained_path=str(tmp_path / "vgg_face.pth"),
                  data_mean=0.5, data_std=0.5)
    assert net.input_adapter.target == "vggface"
    normalised = torch.rand(2, 3, 4, 4) * 2 - 1  # what the data pipeline feeds: (p - .5) / .5
    pixels = normalised * 0.5 + 0.5
    expected = pixels * 255 - VGGFACE_MEAN_255.view(1, 3, 1, 1)  # 0..255 minus the mean face
    torch.testing.assert_close(net.input_adapter(normalised), expected, rtol=1e-5, atol=1e-3)
    # per-channel data statistics and a grey (1-channel) base: the mean of the three
    grey = VGGCBAM(7, 1, 32, PAPER_HEAD, pretrained_path=str(tmp_path / "vgg_face.pth"),
                   data_mean=[0.4], data_std=[0.2])
    torch.testing.assert_close(grey.input_adapter(torch.zeros(1, 1, 2, 2)),
                               torch.full((1, 1, 2, 2), 0.4 * 255 - VGGFACE_MEAN_255.mean()))


def test_other_layouts_and_input_norm_data_keep_the_data_scaling(tmp_path):
    torch.save(fake_torchvision_state(), tmp_path / "imagenet.pth")
    torch.save(fake_vggface_state(), tmp_path / "vgg_face.pth")
    image = torch.randn(1, 3, 4, 4)
    for path, norm in ((tmp_path / "imagenet.pth", "auto"), (tmp_path / "vgg_face.pth", "data"),
                       (None, "auto")):
        net = VGGCBAM(7, 3, 32, PAPER_HEAD, pretrained_path=path and str(path), input_norm=norm)
        assert net.input_adapter.target == "data"
        assert torch.equal(net.input_adapter(image), image)
    with pytest.raises(ValueError, match=r"model.input_norm must be one of \['auto', 'data', "
                                         r"'vggface'\], got 'bgr'"):
        meta_net(input_norm="bgr")


def test_input_scaling_travels_in_the_state_dict(tmp_path):
    torch.save(fake_vggface_state(), tmp_path / "vgg_face.pth")
    trained = VGGCBAM(7, 3, 32, PAPER_HEAD, pretrained_path=str(tmp_path / "vgg_face.pth"))
    rebuilt = VGGCBAM(7, 3, 32, PAPER_HEAD)  # e.g. from a checkpoint, no weights file
    rebuilt.load_state_dict(trained.state_dict())
    image = torch.randn(1, 3, 4, 4)
    torch.testing.assert_close(rebuilt.input_adapter(image), trained.input_adapter(image))


def test_experiment_with_vggface_weights_scales_the_input_as_vggface(make_cfg, tmp_path):
    torch.save(fake_vggface_state(), tmp_path / "vgg_face.pth")
    cfg = make_cfg("+experiment=vgg_cbam", "data=synthetic", "data.image_size=32",
                   f"model.pretrained_path={tmp_path / 'vgg_face.pth'}")
    net = build_net(cfg, num_classes=7)
    assert net.input_adapter.target == "vggface"
    scale = 255 * cfg.data.std
    torch.testing.assert_close(net.input_adapter.scale.flatten(), torch.full((3,), scale))
