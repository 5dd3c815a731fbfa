"""Landmark encodings: heatmap, coords and region boxes, from 68 and from 5 points."""

import math

import pytest
import torch
from torchvision.ops import box_iou

from fer_lightning.data.encodings import (
    draw_heatmap,
    landmark_coords,
    regions_from_landmarks,
)
from fer_lightning.data.landmarks.config import ENCODINGS
from fer_lightning.data.landmarks.schema import (
    FIVE_POINT_FLIP_PERMUTATION,
    GROUPS,
    REGION_NAMES,
)
from fer_lightning.data.sources.synthetic import SyntheticFaces
from fer_lightning.data.transforms import BatchTransform, hflip_with_landmarks

SIZE = 96


def face_landmarks(count: int = 4) -> torch.Tensor:
    source = SyntheticFaces(image_size=SIZE, train_size=count)
    return torch.stack([torch.as_tensor(source.load("train", i).landmarks) for i in range(count)])


def five_points(landmarks68: torch.Tensor) -> torch.Tensor:
    """MTCNN-ordered 5 points from 68: image-left eye, image-right eye, nose, corners."""
    return torch.stack([landmarks68[:, 36:42].mean(1), landmarks68[:, 42:48].mean(1),
                        landmarks68[:, 30], landmarks68[:, 48], landmarks68[:, 54]], 1)


def test_heatmap_is_a_gaussian_of_sigma_pixels_at_each_point():
    point = torch.tensor([[[10.5 / 32, 20.5 / 32]]])  # the centre of pixel (x=10, y=20)
    heatmap = draw_heatmap(point, torch.tensor([True]), 32, 32, sigma=2.0)
    assert heatmap.shape == (1, 1, 32, 32)
    assert heatmap[0, 0, 20, 10].item() == pytest.approx(1.0)
    assert heatmap[0, 0, 20, 13].item() == pytest.approx(math.exp(-9 / 8), rel=1e-5)
    assert heatmap[0, 0, 23, 14].item() == pytest.approx(math.exp(-25 / 8), rel=1e-5)


def test_heatmap_of_invalid_sample_is_empty_and_contours_draw_lines():
    landmarks = face_landmarks(2)
    heatmap = draw_heatmap(landmarks, torch.tensor([True, False]), SIZE, SIZE, sigma=1.0)
    assert heatmap[1].abs().sum() == 0 and heatmap[0].max() > 0.99
    lines = draw_heatmap(landmarks, torch.tensor([True, True]), SIZE, SIZE, style="contours")
    assert (lines[0] > 0.5).sum() > 2 * (heatmap[0] > 0.5).sum()


def test_bad_heatmap_options_name_the_key():
    with pytest.raises(ValueError, match="landmarks.heatmap_style"):
        draw_heatmap(face_landmarks(1), torch.tensor([True]), 8, 8, style="blobs")
    with pytest.raises(ValueError, match="landmarks.heatmap_sigma"):
        draw_heatmap(face_landmarks(1), torch.tensor([True]), 8, 8, sigma=0)


def test_coords_are_zero_for_invalid_samples():
    landmarks = face_landmarks(2)
    coords = landmark_coords(landmarks, torch.tensor([True, False]))
    assert torch.equal(coords[0], landmarks[0]) and coords[1].abs().sum() == 0


def contains(box: torch.Tensor, points: torch.Tensor) -> bool:
    return bool(((points[:, 0] >= box[0]) & (points[:, 0] <= box[2])
                 & (points[:, 1] >= box[1]) & (points[:, 1] <= box[3])).all())


def test_regions_from_68_points_hold_their_organs():
    landmarks = face_landmarks()
    regions, valid = regions_from_landmarks(landmarks, torch.ones(4, dtype=torch.bool), SIZE, SIZE)
    assert regions.shape == (4, len(REGION_NAMES), 4) and valid.all()
    pixels = landmarks * SIZE
    for b in range(4):
        face, left_eye, right_eye, nose, mouth = regions[b]
        assert contains(face, pixels[b])
        assert contains(left_eye, pixels[b, slice(*GROUPS["left_eye"])])
        assert contains(right_eye, pixels[b, slice(*GROUPS["right_eye"])])
        assert contains(nose, pixels[b, [30, 33]])
        assert contains(mouth, pixels[b, [48, 54]])
        # the subject's left eye is on the image's right in an un-mirrored face
        assert left_eye[0] > right_eye[0]


def test_regions_from_5_points_agree_with_68_points():
    landmarks = face_landmarks()
    valid = torch.ones(4, dtype=torch.bool)
    from68, _ = regions_from_landmarks(landmarks, valid, SIZE, SIZE)
    from5, valid5 = regions_from_landmarks(five_points(landmarks), valid, SIZE, SIZE)
    assert valid5.all()
    for region in range(1, 5):  # organs; the face box differs by construction
        ious = box_iou(from68[:, region], from5[:, region]).diagonal()
        assert (ious > 0.5).all(), (REGION_NAMES[region], ious)
    assert (box_iou(from68[:, 0], from5[:, 0]).diagonal() > 0.4).all()


def test_flipped_landmarks_give_mirrored_boxes_with_sides_relabelled():
    """In the mirrored face the eye on the image's right is again the "left eye": its box
    is the mirror of the original right-eye box."""
    for landmarks in (face_landmarks(), five_points(face_landmarks())):
        valid = torch.ones(4, dtype=torch.bool)
        _, flipped = hflip_with_landmarks(torch.zeros(4, 1, SIZE, SIZE), landmarks,
                                          torch.ones(4, dtype=torch.bool))
        boxes, _ = regions_from_landmarks(landmarks, valid, SIZE, SIZE)
        flipped_boxes, _ = regions_from_landmarks(flipped, valid, SIZE, SIZE)
        mirrored = torch.stack([SIZE - boxes[..., 2], boxes[..., 1],
                                SIZE - boxes[..., 0], boxes[..., 3]], -1)
        relabelled = mirrored[:, [0, 2, 1, 3, 4]]
        assert torch.allclose(flipped_boxes[:, 1:], relabelled[:, 1:], atol=1e-3)
        assert (flipped_boxes[:, 1, 0] > flipped_boxes[:, 2, 0]).all()


def test_five_point_flip_permutation_swaps_eyes_and_corners():
    assert FIVE_POINT_FLIP_PERMUTATION.tolist() == [1, 0, 2, 4, 3]


def test_regions_invalid_for_invalid_landmarks_or_boxes_outside_the_image():
    landmarks = face_landmarks(2)
    landmarks[1] = landmarks[1] + 2.0  # the whole face outside the image
    _, valid = regions_from_landmarks(landmarks, torch.tensor([False, True]), SIZE, SIZE)
    assert valid.tolist() == [False, False]


@pytest.mark.parametrize("encoding, key, shape", [
    ("heatmap", "landmark_map", (2, 1, SIZE, SIZE)),
    ("coords", "coords", (2, 68, 2)),
    ("regions", "regions", (2, 5, 4)),
])
def test_batch_transform_renders_the_encoding_the_net_consumes(encoding, key, shape):
    batch = {"image": torch.rand(2, 1, SIZE, SIZE), "landmarks": face_landmarks(2),
             "landmarks_valid": torch.tensor([True, True]), "label": torch.tensor([0, 1])}
    image = batch["image"].clone()
    out = BatchTransform(encoding)(batch, training=False)
    assert out[key].shape == shape
    assert torch.allclose(out["image"], (image - 0.5) / 0.5), "only overlay draws on the image"


def test_unknown_encoding_is_refused():
    with pytest.raises(ValueError, match=r"landmark encoding must be one of \['overlay', "
                                         r"'heatmap', 'coords', 'regions'\], got 'sketch'"):
        BatchTransform("sketch")


def test_face_box_of_the_detector_replaces_the_landmark_face_box():
    """Where the backend gave a face box (MTCNN) the face region is that box; elsewhere
    it is still built from the points; organ boxes do not change."""
    landmarks = five_points(face_landmarks(2))
    valid = torch.ones(2, dtype=torch.bool)
    face_box = torch.tensor([[0.1, 0.2, 0.9, 0.95], [0.0, 0.0, 0.5, 0.5]])
    has_box = torch.tensor([True, False])
    from_points, _ = regions_from_landmarks(landmarks, valid, SIZE, SIZE)
    regions, regions_valid = regions_from_landmarks(landmarks, valid, SIZE, SIZE,
                                                    face_box, has_box)
    assert torch.allclose(regions[0, 0], face_box[0] * SIZE)
    assert torch.equal(regions[1], from_points[1])
    assert torch.equal(regions[:, 1:], from_points[:, 1:])
    assert regions_valid.all()
    batch = {"image": torch.rand(2, 1, SIZE, SIZE), "landmarks": landmarks,
             "landmarks_valid": valid, "face_box": face_box, "face_box_valid": has_box}
    out = BatchTransform("regions")(batch, training=False)
    assert torch.equal(out["regions"], regions)


def test_overlay_groups_draw_only_the_named_parts():
    from fer_lightning.data.encodings import draw_overlay

    landmarks = face_landmarks(1)
    valid = torch.tensor([True])
    blank = torch.zeros(1, 1, SIZE, SIZE)
    everything = draw_overlay(blank, landmarks, valid)
    eyes = draw_overlay(blank, landmarks, valid, groups=["right_eye", "left_eye"])
    assert 0 < eyes.sum() < everything.sum()
    for x, y in (landmarks[0, 36:48] * SIZE).long().tolist():
        assert eyes[0, 0, y, x] == 1
    jaw_x, jaw_y = (landmarks[0, 8] * SIZE).long().tolist()
    assert everything[0, 0, jaw_y, jaw_x] == 1 and eyes[0, 0, jaw_y, jaw_x] == 0
    lines = draw_overlay(blank, landmarks, valid, style="contours", groups=["outer_lip"])
    assert lines.sum() > draw_overlay(blank, landmarks, valid, groups=["outer_lip"]).sum()
    with pytest.raises(ValueError, match="landmarks.overlay_groups: unknown groups \\['ears'\\]"):
        draw_overlay(blank, landmarks, valid, groups=["ears"])


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_encoding_table_names_the_key_batch_transform_renders(encoding):
    """One table (``ENCODING_INPUT``): the encoding names, the key BatchTransform adds for
    the net and the ONNX input keys all come from it."""
    from fer_lightning.data.landmarks.config import ENCODING_INPUT
    from fer_lightning.inference import ENCODING_INPUT as inference_table

    assert inference_table is ENCODING_INPUT and tuple(ENCODING_INPUT) == ENCODINGS
    batch = {"image": torch.rand(2, 1, SIZE, SIZE), "landmarks": face_landmarks(2),
             "landmarks_valid": torch.tensor([True, True])}
    assert ENCODING_INPUT[encoding] in BatchTransform(encoding)(batch, training=False)
