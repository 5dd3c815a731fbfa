"""MS-FPN (Zhang et al.): shapes at every stage, anchors, detection targets, losses, runs."""

from __future__ import annotations

import logging
import math

import pytest
import timm
import torch
import torch.nn.functional as F
from torchvision.models.detection.image_list import ImageList

from fer_lightning.config import ConfigError, check_config
from fer_lightning.data.landmarks.schema import REGION_NAMES
from fer_lightning.losses import CrossEntropy, FocalLoss
from fer_lightning.modules.ms_fpn import MSFPNModule, paired_iou
from fer_lightning.nets.ms_fpn import LEVELS, MSFPN
from fer_lightning.train import train

SIZE = 64
GAP = {"pool": "gap", "hidden": [], "dropout": 0.5}
FAST = ("trainer.fast_dev_run=true", "logger=none", "data.batch_size=8")
SYNTHETIC = ("+experiment=ms_fpn", "data=synthetic", "landmarks=groundtruth", "trainer=cpu",
             "trainer.precision=32", "model.backbone=resnet18", f"data.image_size={SIZE}")
# A hand-made face: face, subject-left eye (image right), subject-right eye, nose, mouth.
BOXES = torch.tensor([[6.0, 2.0, 58.0, 62.0], [36.0, 20.0, 50.0, 28.0], [14.0, 20.0, 28.0, 28.0],
                      [26.0, 26.0, 38.0, 40.0], [20.0, 42.0, 44.0, 52.0]])


def make_net(use_landmarks: bool = True, **kwargs) -> MSFPN:
    torch.manual_seed(0)
    return MSFPN(num_classes=7, in_channels=1, image_size=SIZE, head=GAP,
                 use_landmarks=use_landmarks, **{"backbone": "resnet18", **kwargs})


def side(size: int, stride: int) -> int:
    return math.ceil(size / stride)


def test_backbone_and_pyramid_shapes():
    net = make_net()
    image = torch.randn(2, 1, SIZE, SIZE)
    c3, c4, c5 = net.backbone(image)
    assert [tuple(c.shape) for c in (c3, c4, c5)] == [
        (2, 128, 8, 8), (2, 256, 4, 4), (2, 512, 2, 2)]  # resnet18 C3..C5, strides 8..32
    pyramid = net.pyramid(image)
    assert list(pyramid) == list(LEVELS)
    assert [tuple(p.shape) for p in pyramid.values()] == [
        (2, 256, side(SIZE, s), side(SIZE, s)) for s in (8, 16, 32, 64, 128)]


def test_p6_reads_c5_and_p7_reads_relu_p6():
    net = make_net()
    extra = net.fpn.extra_blocks
    assert extra.p6.in_channels == 512  # C5 of resnet18
    assert extra.p6.stride == extra.p7.stride == (2, 2)
    assert extra.p6.kernel_size == extra.p7.kernel_size == (3, 3)
    image = torch.randn(1, 1, SIZE, SIZE)
    c5 = net.backbone(image)[-1]
    pyramid = net.pyramid(image)
    torch.testing.assert_close(pyramid["p6"], extra.p6(c5))
    torch.testing.assert_close(pyramid["p7"], extra.p7(F.relu(pyramid["p6"])))
    assert make_net(p6_from="p5").fpn.extra_blocks.use_P5


def test_nine_anchors_per_position_on_every_level():
    net = make_net()
    generator = net.detector.rpn.anchor_generator
    assert generator.num_anchors_per_location() == [9] * 5
    image = torch.randn(1, 1, SIZE, SIZE)
    levels = list(net.pyramid(image).values())
    anchors = generator(ImageList(image, [(SIZE, SIZE)]), levels)[0]
    assert len(anchors) == sum(9 * side(SIZE, s) ** 2 for s in (8, 16, 32, 64, 128))
    first = generator.cell_anchors[0]  # P3: sides 32 * {1, 2^1/3, 2^2/3}, ratios 1:2 1:1 2:1
    widths, heights = first[:, 2] - first[:, 0], first[:, 3] - first[:, 1]
    sides = torch.tensor([32 * 2 ** (k / 3) for k in range(3)])  # torchvision rounds corners
    relative = ((widths * heights).sqrt()[:, None] / sides - 1).abs()
    assert (relative.min(1).values < 0.03).all() and (relative.argmin(1).bincount() == 3).all()
    ratios = (heights / widths)[:, None] / torch.tensor([0.5, 1.0, 2.0]) - 1
    assert (ratios.abs().min(1).values < 0.05).all()
    assert (ratios.abs().argmin(1).bincount() == 3).all()


def test_region_feature_shapes():
    net = make_net()
    p3 = net.pyramid(torch.randn(2, 1, SIZE, SIZE))["p3"]
    organs, face = net.region_features(p3, BOXES.repeat(2, 1, 1), SIZE)
    assert organs.shape == (2, 4, 128, 14, 14)
    assert face.shape == (2, 128, 56, 56)


def test_detection_targets_for_a_hand_made_box():
    net = make_net()
    rpn = net.detector.rpn
    image = torch.zeros(1, 1, SIZE, SIZE)
    levels = list(net.pyramid(image).values())
    anchors = rpn.anchor_generator(ImageList(image, [(SIZE, SIZE)]), levels)
    box = torch.tensor([[8.0, 8.0, 40.0, 40.0]])  # a 32x32 square: one P3 anchor fits exactly
    labels, matched = rpn.assign_targets_to_anchors(anchors, [{"boxes": box}])
    exact = (anchors[0] == box).all(1)
    assert exact.sum() == 1 and labels[0][exact] == 1.0
    positives = labels[0] == 1.0
    assert (matched[0][positives] == box).all()
    deltas = rpn.box_coder.encode(matched, anchors)[0]
    torch.testing.assert_close(deltas[exact], torch.zeros(1, 4))
    far = anchors[0][:, 0] > 48  # anchors wholly right of the box are background
    assert (labels[0][far & (anchors[0][:, 1] > 48)] == 0.0).all()
    targets = net.detector.targets(BOXES[None])
    assert targets[0]["labels"].tolist() == [1, 2, 3, 4, 5]  # 0 is background


def test_invalid_landmark_samples_add_no_detection_loss():
    net = make_net().eval()  # eval: BatchNorm must not mix the two samples' statistics
    image = torch.randn(2, 1, SIZE, SIZE)
    regions = torch.stack([BOXES, BOXES.flip(0)])  # the second sample's boxes are nonsense
    with torch.no_grad():
        torch.manual_seed(1)  # anchor / RoI sampling is random: same seed, same draws
        mixed = net.detector(image, net.pyramid(image), regions, torch.tensor([True, False]),
                             detect=False)[1]
        torch.manual_seed(1)
        alone = net.detector(image[:1], net.pyramid(image[:1]), regions[:1],
                             torch.tensor([True]), detect=False)[1]
    assert set(mixed) == {"objectness", "rpn_box", "region_class", "region_box"}
    for name in mixed:
        torch.testing.assert_close(mixed[name], alone[name])
    none_valid = net.train().run(image, regions, torch.tensor([False, False]),
                                 detection_loss=True)
    assert all(value.item() == 0.0 for value in none_valid.losses.values())
    sum(none_valid.losses.values()).backward()  # still connected to the detector weights
    assert net.detector.rpn.head.conv[0][0].weight.grad is not None


def test_pseudo_boxes_feed_the_branches_only_where_valid():
    net = make_net().train()
    image = torch.randn(2, 1, SIZE, SIZE)
    regions = BOXES.repeat(2, 1, 1)
    out = net.run(image, regions, torch.tensor([True, False]), detection_loss=True,
                  pseudo_boxes=True)
    torch.testing.assert_close(out.classifier_boxes[0], BOXES)
    torch.testing.assert_close(out.classifier_boxes[1], out.detections.boxes[1])


def test_inference_uses_detections_not_landmarks():
    net = make_net().eval()
    out = net.run(torch.randn(3, 1, SIZE, SIZE))
    assert out.logits.shape == (3, 7)
    assert out.detections.boxes.shape == (3, 5, 4) and out.detections.scores.shape == (3, 5)
    assert (out.detections.boxes >= 0).all() and (out.detections.boxes <= SIZE).all()
    torch.testing.assert_close(out.classifier_boxes, out.detections.boxes)


def test_landmarks_none_is_the_global_only_network():
    net = make_net(use_landmarks=False)
    assert net.detector is None and not hasattr(net, "face_branch")
    assert net(torch.randn(2, 1, SIZE, SIZE)).shape == (2, 7)
    assert net.classifier[-1].in_features == 256  # P3 width only
    assert make_net().classifier[-1].in_features == 256 + 5 * 128  # + 4 organs + face
    assert sum(p.numel() for p in net.parameters()) < sum(
        p.numel() for p in make_net().parameters())


def test_focal_objectness_is_bce_at_gamma_zero():
    logits, labels = torch.randn(20), (torch.rand(20) > 0.5).float()
    net = make_net(detector={"objectness_gamma": 0.0})
    rpn_labels = [labels]
    torch.manual_seed(3)
    objectness, _ = net.detector._rpn_loss(logits, torch.zeros(20, 4), rpn_labels,
                                           [torch.zeros(20, 4)])
    torch.manual_seed(3)
    sampled_pos, sampled_neg = net.detector.rpn.fg_bg_sampler(rpn_labels)
    sampled = (sampled_pos[0] | sampled_neg[0]).bool()
    expected = F.binary_cross_entropy_with_logits(logits[sampled], labels[sampled])
    torch.testing.assert_close(objectness, expected)


def test_focal_emotion_loss_equals_ce_at_gamma_zero_and_hand_value():
    logits, target = torch.tensor([[2.0, 0.5, -1.0]]), torch.tensor([0])
    torch.testing.assert_close(FocalLoss(gamma=0.0)(logits, target), CrossEntropy()(logits, target))
    p = torch.softmax(logits, -1)[0, 0]
    torch.testing.assert_close(FocalLoss(gamma=2.0)(logits, target), -(1 - p) ** 2 * p.log())


def test_paired_iou_by_hand():
    boxes = torch.tensor([[[0.0, 0.0, 10.0, 10.0], [0.0, 0.0, 10.0, 10.0]]])
    targets = torch.tensor([[[0.0, 0.0, 10.0, 10.0], [5.0, 0.0, 15.0, 10.0]]])
    torch.testing.assert_close(paired_iou(boxes, targets), torch.tensor([[1.0, 50 / 150]]))


def test_pretrained_path_loads_local_weights(tmp_path, caplog):
    reference = timm.create_model("resnet18", in_chans=1)
    path = tmp_path / "resnet18.pth"
    torch.save(reference.state_dict(), path)
    net = make_net(pretrained_path=str(path))
    torch.testing.assert_close(net.backbone.conv1.weight, reference.conv1.weight)
    with pytest.raises(FileNotFoundError, match="model.pretrained_path"):
        make_net(pretrained_path=str(tmp_path / "missing.pth"))
    with caplog.at_level(logging.WARNING):
        MSFPN(7, 1, SIZE, GAP, backbone="resnet18")
    assert "the resnet18 backbone of ms_fpn starts from random weights" in caplog.text


def test_bad_choices_name_their_key():
    with pytest.raises(ValueError, match="data.image_size"):
        MSFPN(7, 1, 16, GAP, backbone="resnet18")
    with pytest.raises(ValueError, match="model.p6_from"):
        make_net(p6_from="c4")
    with pytest.raises(ValueError, match="model.detector has unknown keys \\['anchor_size'\\]"):
        make_net(detector={"anchor_size": 3})
    with pytest.raises(ValueError, match="model.backbone"):
        make_net(backbone="resnet_nonexistent")


def test_head_fc_fails_at_check(make_cfg):
    with pytest.raises(ConfigError, match="head.pool in \\['gap'\\]"):
        check_config(make_cfg(*SYNTHETIC, "head=fc"))


def test_module_rejects_unknown_classifier_boxes():
    with pytest.raises(ValueError, match="classifier_boxes"):
        MSFPNModule(make_net(), CrossEntropy(), ["a"] * 7, {"_target_": "torch.optim.Adam"},
                    classifier_boxes="landmarks")


def test_experiment_is_the_paper_setting(make_cfg):
    cfg = make_cfg("+experiment=ms_fpn", tiny=False)
    assert cfg.data.source._target_.endswith("RafDB") and cfg.landmarks.name == "mtcnn"
    assert cfg.model.name == "ms_fpn" and cfg.model.backbone == "resnet50"
    assert cfg.optimizer._target_ == "torch.optim.Adam" and cfg.data.batch_size == 32
    assert cfg.trainer.max_epochs == 50 and cfg.trainer.precision == "16-mixed"
    assert cfg.head.dropout == 0.5 and cfg.loss._target_.endswith("FocalLoss")
    assert cfg.loss.gamma == 2.0
    assert cfg.data.augment is None  # the paper mentions no augmentation
    assert cfg.optimized_metric == "val/mean_class_acc"
    assert cfg.callbacks.model_checkpoint.monitor == "val/mean_class_acc"


def test_no_rafdb_fails_at_once_with_layout_and_synthetic_command(make_cfg, tmp_path):
    # trainer=cpu: on a machine without a GPU the hardware check speaks first
    cfg = make_cfg("+experiment=ms_fpn", f"data.root={tmp_path / 'nowhere'}", "trainer=cpu",
                   "trainer.precision=32", tiny=False)
    with pytest.raises(ConfigError) as error:
        train(cfg)
    message = str(error.value)
    assert str(tmp_path / "nowhere") in message
    assert "EmoLabel/list_patition_label.txt" in message and "Image/aligned" in message
    assert "+experiment=ms_fpn data=synthetic landmarks=groundtruth" in message


@pytest.mark.parametrize("landmarks", ["groundtruth", "none"])
def test_fast_dev_run_on_synthetic(make_cfg, landmarks):
    results = train(make_cfg(*SYNTHETIC, f"landmarks={landmarks}", *FAST))
    assert len(results["test"]["confusion_matrix"]) == 7
    if landmarks == "none":
        assert "region_iou" not in results["test"]
    else:
        assert set(results["test"]["region_iou"]) == {*REGION_NAMES, "mean"}
        assert 0.0 <= results["test"]["region_iou"]["mean"] <= 1.0


def test_fast_dev_run_loss_ce_and_detected_boxes(make_cfg):
    results = train(make_cfg(*SYNTHETIC, "loss=ce", "model.module.classifier_boxes=detected",
                             "model.module.detection_weight=0.5", *FAST))
    assert results["test"]["metrics"]["acc"] >= 0.0


def test_module_needs_as_many_regions_as_the_encoding_gives():
    with pytest.raises(ValueError, match=r"model.num_regions=3, but the regions encoding gives "
                                         r"5 boxes \['face', 'left_eye'"):
        MSFPNModule(make_net(num_regions=3), CrossEntropy(), ["a"] * 7,
                    {"_target_": "torch.optim.Adam"})
    with pytest.raises(ValueError, match="model.num_regions must be >= 2"):
        make_net(num_regions=1)
    net = make_net(num_regions=3).eval()  # face + 2 organs: every shape follows
    out = net.run(torch.randn(2, 1, SIZE, SIZE))
    assert out.detections.boxes.shape == (2, 3, 4) and out.logits.shape == (2, 7)
