"""Landmark-aware augmentation, point by point, and the overlay encoding."""

import numpy as np
import pytest
import torch

from fer_lightning.data.encodings import draw_overlay
from fer_lightning.data.landmarks.config import LandmarksConfig
from fer_lightning.data.landmarks.schema import FLIP_PERMUTATION, GROUPS
from fer_lightning.data.transforms import BatchTransform, LandmarkAugment, hflip_with_landmarks


def random_landmarks(batch: int = 2, seed: int = 0) -> torch.Tensor:
    return torch.rand(batch, 68, 2, generator=torch.Generator().manual_seed(seed)) * 0.8 + 0.1


def test_flip_permutation_is_an_involution_swapping_eyes():
    assert (FLIP_PERMUTATION[FLIP_PERMUTATION] == np.arange(68)).all()
    right_eye, left_eye = range(*GROUPS["right_eye"]), range(*GROUPS["left_eye"])
    assert sorted(FLIP_PERMUTATION[list(right_eye)]) == list(left_eye)
    assert FLIP_PERMUTATION[0] == 16 and FLIP_PERMUTATION[8] == 8
    assert FLIP_PERMUTATION[30] == 30 and FLIP_PERMUTATION[48] == 54


def test_hflip_moves_every_point_and_relabels_sides():
    image = torch.rand(2, 1, 8, 8)
    landmarks = random_landmarks()
    flip = torch.tensor([True, False])
    flipped_image, flipped = hflip_with_landmarks(image, landmarks, flip)
    assert torch.equal(flipped_image[0], image[0].flip(-1))
    assert torch.equal(flipped_image[1], image[1])
    assert torch.equal(flipped[1], landmarks[1])
    for i in range(68):
        source = FLIP_PERMUTATION[i]
        assert flipped[0, i, 0].item() == pytest.approx(1 - landmarks[0, source, 0].item())
        assert flipped[0, i, 1].item() == pytest.approx(landmarks[0, source, 1].item())


def test_hflip_keeps_subject_right_eye_on_image_left():
    landmarks = torch.zeros(1, 68, 2)
    landmarks[0, 36:42, 0] = 0.3  # subject's right eye on the image's left
    landmarks[0, 42:48, 0] = 0.7
    _, flipped = hflip_with_landmarks(torch.zeros(1, 1, 4, 4), landmarks, torch.tensor([True]))
    assert (flipped[0, 36:42, 0] < flipped[0, 42:48, 0]).all()


def test_affine_moves_landmarks_with_the_pixels():
    """Each landmark marks one bright pixel; after rotation/scale/shift the brightest
    pixel near each transformed landmark must be where the landmark says."""
    torch.manual_seed(0)
    size = 96
    points = torch.tensor([[[0.3, 0.35], [0.7, 0.35], [0.5, 0.75]]]).repeat(4, 1, 1)
    image = torch.zeros(4, 1, size, size)
    for x, y in points[0].tolist():
        image[:, 0, int(y * size) - 1:int(y * size) + 2, int(x * size) - 1:int(x * size) + 2] = 1
    augment = LandmarkAugment(hflip=0.0, rotate=25.0, scale=(0.8, 1.2), translate=0.1)
    out_image, out_points, _ = augment(image, points)
    assert not torch.allclose(out_points, points)
    for b in range(4):
        for x, y in out_points[b].tolist():
            px, py = x * size, y * size
            patch = out_image[b, 0, int(py) - 2:int(py) + 3, int(px) - 2:int(px) + 3]
            assert patch.max() > 0.5, f"no bright pixel near transformed landmark ({px}, {py})"


def test_augment_without_landmarks_returns_only_image():
    image, landmarks, boxes = LandmarkAugment()(torch.rand(3, 1, 48, 48), None)
    assert image.shape == (3, 1, 48, 48) and landmarks is None and boxes is None


def test_face_box_moves_with_the_pixels():
    """A bright rectangle and its box: after flip / rotation / scale / shift the box still
    encloses the moved rectangle (as the hull of its moved corners) and hugs it."""
    torch.manual_seed(1)
    size = 64
    boxes = torch.tensor([[0.2, 0.3, 0.55, 0.8]]).repeat(6, 1)
    image = torch.zeros(6, 1, size, size)
    image[:, :, int(0.3 * size):int(0.8 * size), int(0.2 * size):int(0.55 * size)] = 1
    landmarks = torch.rand(6, 68, 2)
    augment = LandmarkAugment(hflip=0.5, rotate=20.0, scale=(0.9, 1.1), translate=0.05)
    out_image, out_landmarks, out_boxes = augment(image, landmarks, boxes)
    assert out_landmarks.shape == (6, 68, 2) and out_boxes.shape == (6, 4)
    for b in range(6):
        ys, xs = torch.nonzero(out_image[b, 0] > 0.5, as_tuple=True)
        x0, y0, x1, y1 = (out_boxes[b] * size).tolist()
        assert x0 - 1.5 <= xs.min() and xs.max() + 1 <= x1 + 1.5
        assert y0 - 1.5 <= ys.min() and ys.max() + 1 <= y1 + 1.5
        # the hull of a box rotated by <= 20 degrees: at most ~1.4x the bright extent
        assert (x1 - x0) < 1.6 * (xs.max() - xs.min() + 1)


def overlay_transform(draw_before_augment: bool) -> BatchTransform:
    return BatchTransform("overlay", LandmarksConfig(draw_before_augment=draw_before_augment),
                          augment={"hflip": 0.0, "rotate": 30.0, "scale": (1.0, 1.0),
                                   "translate": 0.0})


@pytest.mark.parametrize("before", [False, True])
def test_draw_before_augment_sends_the_overlay_through_the_augmentation(before):
    """Drawn after augmentation, the overlay is single pixels at exactly ``value`` (the
    normalised image holds only -1 and 1); drawn before, the points are rotated and
    resampled with the pixels, so they land blurred (values strictly between)."""
    torch.manual_seed(0)
    landmarks = torch.rand(2, 68, 2) * 0.5 + 0.25
    batch = {"image": torch.zeros(2, 1, 48, 48), "landmarks": landmarks.clone(),
             "landmarks_valid": torch.tensor([True, True])}
    out = overlay_transform(before)(batch, training=True)["image"]
    blurred = ((out > -0.99) & (out < 0.99)).sum()
    assert (blurred > 0) == before
    moved = batch["landmarks"]  # the transform stores the augmented landmarks
    assert not torch.allclose(moved, landmarks)
    if not before:  # every moved point is drawn exactly where the moved landmark says
        xy = moved * 48
        inside = ((xy >= 0) & (xy < 48)).all(-1)
        for b in range(2):
            x, y = xy[b][inside[b]].floor().long().unbind(-1)
            assert (out[b, 0, y, x] == 1).all()
    evaluation = overlay_transform(before)(
        {"image": torch.zeros(2, 1, 48, 48), "landmarks": landmarks.clone(),
         "landmarks_valid": torch.tensor([True, True])}, training=False)["image"]
    assert ((evaluation > -0.99) & (evaluation < 0.99)).sum() == 0  # no augmentation: alike


def test_draw_before_augment_is_refused_for_other_encodings():
    with pytest.raises(ValueError, match="draw_before_augment=true draws the overlay"):
        BatchTransform("heatmap", LandmarksConfig(draw_before_augment=True))


def test_overlay_points_paints_exactly_the_landmark_pixels():
    image = torch.zeros(2, 1, 48, 48)
    landmarks = random_landmarks()
    valid = torch.tensor([True, False])
    drawn = draw_overlay(image, landmarks, valid, style="points", value=1.0)
    xy = (landmarks[0] * 48).floor().long()
    expected = torch.zeros(48, 48)
    expected[xy[:, 1], xy[:, 0]] = 1.0
    assert torch.equal(drawn[0, 0], expected)
    assert drawn[1].sum() == 0, "invalid landmarks must not be drawn"
    assert image.sum() == 0, "the input must not be modified in place"


def test_overlay_contours_draw_more_than_points_on_every_channel():
    image = torch.zeros(1, 3, 48, 48)
    landmarks = random_landmarks(1)
    points = draw_overlay(image, landmarks, torch.tensor([True]), style="points")
    contours = draw_overlay(image, landmarks, torch.tensor([True]), style="contours")
    assert contours.sum() > points.sum() > 0
    assert torch.equal(contours[0, 0], contours[0, 2])


def test_overlay_skips_points_outside_the_image():
    landmarks = torch.full((1, 68, 2), 1.5)
    drawn = draw_overlay(torch.zeros(1, 1, 8, 8), landmarks, torch.tensor([True]))
    assert drawn.sum() == 0


def test_overlay_rejects_unknown_style():
    with pytest.raises(ValueError, match="landmarks.overlay_style"):
        draw_overlay(torch.zeros(1, 1, 8, 8), random_landmarks(1), torch.tensor([True]), "dots")


def test_normalisation_per_channel_and_a_clear_error_for_the_wrong_count():
    image = torch.full((1, 3, 2, 2), 0.5)
    transform = BatchTransform(mean=[0.5, 0.25, 0.0], std=[1.0, 0.5, 0.25])
    out = transform({"image": image.clone()}, training=False)["image"]
    assert out[0, :, 0, 0].tolist() == [0.0, 0.5, 2.0]
    with pytest.raises(ValueError, match="2 values for 3-channel images"):
        BatchTransform(mean=[0.5, 0.5])({"image": image.clone()}, training=False)
