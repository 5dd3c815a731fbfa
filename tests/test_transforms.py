"""Landmark-aware augmentation, point by point, and the overlay encoding."""

import numpy as np
import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from fer_lightning.data.encodings import draw_overlay
from fer_lightning.data.landmarks.config import LandmarksConfig
from fer_lightning.data.landmarks.schema import FLIP_PERMUTATION, GROUPS, flip_permutation_for
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


def test_augment_parameters_follow_the_kornia_random_affine_distributions():
    """The batched draw replaced kornia's RandomAffine: angle, scale and shift must have
    its distributions (two-sample Kolmogorov-Smirnov distance on 20 K draws each)."""
    from kornia.augmentation.random_generator import AffineGenerator

    n, rotate, scale, translate = 20_000, 10.0, (0.9, 1.1), 0.05
    torch.manual_seed(0)
    ours = LandmarkAugment(hflip=0.5, rotate=rotate, scale=scale, translate=translate).draw(n)
    theirs = AffineGenerator(rotate, (translate, translate), scale)((n, 1, 40, 40))

    def ks(a: torch.Tensor, b: torch.Tensor) -> float:
        grid = torch.cat([a, b]).sort().values
        cdf = lambda x: torch.searchsorted(x.sort().values, grid, right=True) / len(x)  # noqa: E731
        return float((cdf(a) - cdf(b)).abs().max())

    assert ks(ours["angle"], theirs["angle"]) < 0.02
    assert ks(ours["scale"], theirs["scale"][:, 0]) < 0.02
    assert ks(ours["shift"][:, 0] * 40, theirs["translations"][:, 0]) < 0.02
    assert ks(ours["shift"][:, 1] * 40, theirs["translations"][:, 1]) < 0.02
    assert abs(ours["flip"].float().mean() - 0.5) < 0.02
    assert ours["angle"].abs().max() <= rotate and ours["shift"].abs().max() <= translate
    assert scale[0] <= ours["scale"].min() and ours["scale"].max() <= scale[1]


def test_warp_equals_the_kornia_random_affine_it_replaced():
    """Same parameters, same pixels as kornia's RandomAffine (its matrix and warp, border
    padding): a positive angle turns the image the way kornia turns it (clockwise on
    screen), scale and shift about the same centre."""
    from kornia.geometry.transform import get_affine_matrix2d, warp_affine

    size, batch = 24, 6
    augment = LandmarkAugment(hflip=0.0, rotate=30.0, scale=(0.8, 1.2), translate=0.1)
    params = augment.draw(batch, generator=torch.Generator().manual_seed(5))
    image = torch.rand(batch, 1, size, size, generator=torch.Generator().manual_seed(6))
    ours, _, _ = augment(image.clone(), torch.full((batch, 1, 2), 0.5), params=params)
    centre = torch.full((batch, 2), (size - 1) / 2)
    matrix = get_affine_matrix2d(params["shift"] * size, centre,
                                 params["scale"][:, None].expand(batch, 2), params["angle"])
    theirs = warp_affine(image, matrix[:, :2], (size, size), padding_mode="border",
                         align_corners=False)
    assert params["angle"].abs().min() > 1.0  # a sign error could not hide
    assert torch.allclose(ours, theirs, atol=1e-4)


def test_warp_samples_where_the_matrices_say_and_points_follow():
    """A linear ramp is reproduced exactly by bilinear sampling, so every output pixel
    must hold the ramp at its pre-image, and every moved point must read the value its
    source point had: points stay on the pixels they marked, under flip too."""
    size = 32
    augment = LandmarkAugment(hflip=0.5, rotate=25.0, scale=(0.8, 1.2), translate=0.1)
    params = augment.draw(8, generator=torch.Generator().manual_seed(3))
    params["flip"][:4] = torch.tensor([True, False, True, False])
    centres = (torch.arange(size) + 0.5) / size
    ramp = lambda x, y: 0.3 * x + 0.6 * y  # noqa: E731  (x, y in [0, 1])
    image = ramp(centres[None, :], centres[:, None]).expand(8, 1, size, size)
    points = torch.rand(8, 5, 2, generator=torch.Generator().manual_seed(4)) * 0.4 + 0.3
    out, moved, _ = augment(image.clone(), points, params=params)
    perm = torch.as_tensor(flip_permutation_for(5))
    expected_source = torch.where(params["flip"][:, None, None], points[:, perm], points)
    # read the warped image at each moved point (bilinear on pixel centres)
    grid = (moved * 2 - 1)[:, :, None]
    read = torch.nn.functional.grid_sample(out, grid, align_corners=False)[:, 0, :, 0]
    inside = ((moved > 0.1) & (moved < 0.9)).all(-1)
    assert inside.sum() > 20
    want = ramp(expected_source[..., 0], expected_source[..., 1])
    assert torch.allclose(read[inside], want[inside], atol=1e-4)


def test_pure_flip_is_the_exact_mirror_with_relabelled_points():
    augment = LandmarkAugment(hflip=1.0, rotate=0.0, scale=(1.0, 1.0), translate=0.0)
    image, landmarks = torch.rand(2, 1, 8, 8), random_landmarks()
    out, moved, _ = augment(image, landmarks)
    mirror, mirrored = hflip_with_landmarks(image, landmarks, torch.tensor([True, True]))
    assert torch.allclose(out, mirror, atol=1e-6)
    assert torch.allclose(moved, mirrored, atol=1e-6)


def test_integer_shift_moves_a_marked_pixel_by_whole_pixels():
    augment = LandmarkAugment(hflip=0.0, rotate=0.0, scale=(1.0, 1.0), translate=0.0)
    image = torch.zeros(1, 1, 16, 16)
    image[0, 0, 5, 7] = 1.0
    point = torch.tensor([[[7.5 / 16, 5.5 / 16]]])
    params = {"flip": torch.tensor([False]), "angle": torch.zeros(1),
              "scale": torch.ones(1), "shift": torch.tensor([[3 / 16, -2 / 16]])}
    out, moved, _ = augment(image, point, params=params)
    assert out[0, 0, 3, 10] == pytest.approx(1.0) and out.sum() == pytest.approx(1.0)
    assert torch.allclose(moved * 16, torch.tensor([[[10.5, 3.5]]]))


def test_bad_scale_range_is_refused():
    with pytest.raises(ValueError, match="data.augment.scale"):
        LandmarkAugment(scale=(1.1, 0.9))


def test_uint8_batches_become_unit_floats():
    batch = {"image": torch.full((1, 1, 2, 2), 255, dtype=torch.uint8)}
    out = BatchTransform(mean=0.5, std=0.5)(batch, training=False)["image"]
    assert out.dtype == torch.float32 and torch.equal(out, torch.ones(1, 1, 2, 2))


@pytest.mark.parametrize("dtype, training", [(torch.uint8, False), (torch.uint8, True),
                                             (torch.float32, False), (torch.float32, True)])
def test_normalisation_in_place_leaves_the_callers_image_as_it_was(dtype, training):
    # the transform normalises its own buffers in place: the batch it was handed keeps
    # its pixels, and the numbers are those of (image - mean) / std computed apart
    pixels = torch.randint(0, 256, (4, 3, 8, 8), dtype=torch.uint8)
    image = pixels if dtype == torch.uint8 else pixels.float() / 255
    handed = image.clone()
    transform = BatchTransform(augment={} if training else None, mean=[0.5, 0.4, 0.3],
                               std=[0.2, 0.25, 0.3])
    torch.manual_seed(0)
    out = transform({"image": image}, training=training)["image"]
    assert torch.equal(image, handed)
    torch.manual_seed(0)
    unit = pixels.float() / 255
    if training:
        unit = transform.augment(unit, None, None)[0]
    mean, std = torch.tensor([0.5, 0.4, 0.3]), torch.tensor([0.2, 0.25, 0.3])
    assert torch.equal(out, (unit - mean.view(1, 3, 1, 1)) / std.view(1, 3, 1, 1))


class HostDataOps(TorchDispatchMode):
    """Records the ops that, on a GPU, make the host wait for the device: a tensor built
    from Python numbers (``lift_fresh``: a blocking host-to-device copy, which waits for
    the work queued before it), ``.item()`` and ``nonzero`` (a device-to-host read)."""

    WAITING = ("aten.lift_fresh.", "aten._local_scalar_dense.", "aten.nonzero.")

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if str(func).startswith(self.WAITING):
            self.seen.append(str(func))
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize("encoding", [None, "overlay", "heatmap", "coords", "regions"])
@pytest.mark.parametrize("contours", [False, True])
def test_a_training_batch_transform_builds_nothing_from_host_data(encoding, contours):
    """After the first batch (which makes the constants), augmenting and encoding a batch
    makes no tensor from Python numbers and reads nothing back: on a GPU each would be a
    host stall per step. Fails before the constants were cached (10 per batch)."""
    def batch() -> dict[str, torch.Tensor]:
        generator = torch.Generator().manual_seed(0)
        return {"image": torch.randint(0, 256, (4, 1, 32, 32), dtype=torch.uint8,
                                       generator=generator),
                "landmarks": torch.rand(4, 68, 2, generator=generator) * 0.6 + 0.2,
                "landmarks_valid": torch.ones(4, dtype=torch.bool),
                "face_box": torch.rand(4, 4, generator=generator).sort(-1).values,
                "face_box_valid": torch.ones(4, dtype=torch.bool)}

    landmarks = LandmarksConfig(overlay_style="contours" if contours else "points",
                                heatmap_style="contours" if contours else "gaussian")
    transform = BatchTransform(encoding, landmarks, augment={}, mean=[0.5], std=0.5)
    transform(batch(), training=True)
    inputs = batch()
    with HostDataOps() as recorder:
        transform(inputs, training=True)
    assert recorder.seen == []
