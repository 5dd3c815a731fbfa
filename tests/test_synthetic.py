"""The embedded synthetic-faces source: contract, determinism, geometry, difficulty, preview."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from fer_lightning.data.dataset import FERDataset
from fer_lightning.data.landmarks.schema import FLIP_PERMUTATION, GROUPS
from fer_lightning.data.preview import write_preview
from fer_lightning.data.sources.synthetic import (
    ANGRY,
    CLASS_NAMES,
    DISGUST,
    FEAR,
    HAPPY,
    NEUTRAL,
    SAD,
    SURPRISE,
    SyntheticFaces,
    expression_fields,
    mean_face,
)

#: No pose jitter, so "up" in the image is "up" on the face.
UPRIGHT = dict(pose_jitter=0.0, train_size=40, val_size=10, test_size=10)
CLEAN = dict(noise_std=0.0, blur_prob=0.0, occluder_prob=0.0, lighting=0.0)


def centre(points: np.ndarray, group: str) -> np.ndarray:
    start, stop = GROUPS[group]
    return points[start:stop].mean(axis=0)


# -- contract ---------------------------------------------------------------------------


@pytest.mark.parametrize(("size", "channels"), [(48, 1), (32, 3), (96, 1)])
def test_sample_shapes_dtypes_and_ranges(size: int, channels: int) -> None:
    source = SyntheticFaces(image_size=size, channels=channels, train_size=20)
    assert source.class_names == CLASS_NAMES
    for index in range(20):
        sample = source.load("train", index)
        expected = (size, size) if channels == 1 else (size, size, 3)
        assert sample.image.shape == expected and sample.image.dtype == np.uint8
        assert sample.image.std() > 5  # a picture, not a flat fill
        assert sample.landmarks.shape == (68, 2) and sample.landmarks.dtype == np.float32
        assert sample.landmarks.min() >= 0.0 and sample.landmarks.max() <= 1.0
        assert sample.landmarks_valid is True
        assert isinstance(sample.label, int) and 0 <= sample.label < 7


def test_split_sizes_and_labels_match_samples() -> None:
    source = SyntheticFaces(train_size=300, val_size=70, test_size=50)
    for split, size in [("train", 300), ("val", 70), ("test", 50)]:
        labels = source.split_info(split).labels
        assert labels.shape == (size,) and labels.dtype == np.int64
        assert labels.min() >= 0 and labels.max() <= 6
    labels = source.split_info("val").labels
    assert [source.load("val", i).label for i in range(70)] == labels.tolist()
    assert len(set(labels.tolist())) == 7


def test_split_info_does_not_render() -> None:
    source = SyntheticFaces(train_size=2_000_000)
    assert len(source.split_info("train").labels) == 2_000_000  # instant, or this hangs


def test_class_probs_are_honoured() -> None:
    counts = [4, 0, 1, 10, 3, 2, 5]  # FER2013-like imbalance, given as counts
    source = SyntheticFaces(train_size=8000, class_probs=counts)
    freq = np.bincount(source.split_info("train").labels, minlength=7) / 8000
    np.testing.assert_allclose(freq, np.array(counts) / sum(counts), atol=0.02)
    assert freq[DISGUST] == 0.0


# -- determinism ------------------------------------------------------------------------


def test_same_sample_same_bytes_in_any_order_and_instance() -> None:
    first = SyntheticFaces(channels=3)
    a = first.load("train", 7)
    first.load("test", 3)  # other work in between must not matter
    b = first.load("train", 7)
    c = SyntheticFaces(channels=3).load("train", 7)
    for other in (b, c):
        assert a.image.tobytes() == other.image.tobytes()
        assert a.landmarks.tobytes() == other.landmarks.tobytes()
        assert a.label == other.label


def test_different_indices_splits_and_seeds_differ() -> None:
    source = SyntheticFaces()
    images = {
        (split, i): source.load(split, i).image.tobytes()
        for split in ("train", "val", "test")
        for i in range(15)
    }
    assert len(set(images.values())) == len(images)
    reseeded = SyntheticFaces(seed=1).load("train", 0).image.tobytes()
    assert reseeded != images[("train", 0)]


def test_fingerprint_tracks_config() -> None:
    assert SyntheticFaces().fingerprint() == SyntheticFaces().fingerprint()
    assert SyntheticFaces().fingerprint() != SyntheticFaces(noise_std=0.0).fingerprint()


# -- errors -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        (dict(image_size=8), "image_size"),
        (dict(image_size=48.5), "image_size"),
        (dict(channels=2), "channels"),
        (dict(train_size=-1), "train_size"),
        (dict(train_size=0), "train_size"),
        (dict(val_size="10"), "val_size"),
        (dict(seed=-3), "seed"),
        (dict(class_probs=[1.0, 2.0]), "class_probs"),
        (dict(class_probs=[0, 0, 0, 0, 0, 0, 0]), "class_probs"),
        (dict(class_probs=[1, 1, 1, -1, 1, 1, 1]), "class_probs[3]"),
        (dict(intensity_range=[0.8, 0.2]), "intensity_range"),
        (dict(intensity_range=[0.1, 1.5]), "intensity_range[1]"),
        (dict(intensity_range=0.5), "intensity_range"),
        (dict(pose_jitter=1.5), "pose_jitter"),
        (dict(identity_jitter=-0.1), "identity_jitter"),
        (dict(noise_std=float("nan")), "noise_std"),
        (dict(blur_prob=2), "blur_prob"),
        (dict(occluder_prob=True), "occluder_prob"),
        (dict(lighting=-1), "lighting"),
        (dict(blend=3.0), "blend"),
    ],
)
def test_bad_arguments_name_themselves(kwargs: dict, name: str) -> None:
    with pytest.raises(ValueError, match=name.replace("[", r"\[").replace("]", r"\]")):
        SyntheticFaces(**kwargs)


def test_hydra_style_arguments_are_accepted() -> None:
    source = SyntheticFaces(intensity_range=[0, 1], class_probs=[1] * 7, noise_std=0, lighting=1)
    assert source.intensity_range == (0.0, 1.0)


def test_unknown_split_and_bad_index() -> None:
    source = SyntheticFaces(train_size=5)
    with pytest.raises(ValueError, match="unknown split"):
        source.load("holdout", 0)
    with pytest.raises(ValueError, match="unknown split"):
        source.split_info("holdout")
    for index in (5, -1):
        with pytest.raises(IndexError, match="out of range"):
            source.load("train", index)
    with pytest.raises(ValueError, match="label"):
        source.render("train", 0, label=7)


# -- landmark geometry ------------------------------------------------------------------


def test_mean_face_and_symmetric_expressions_are_mirror_symmetric() -> None:
    mirrored = mean_face()[FLIP_PERMUTATION] * [-1.0, 1.0]
    np.testing.assert_allclose(mirrored, mean_face(), atol=1e-12)
    primary, _ = expression_fields()
    for label in (ANGRY, FEAR, HAPPY, SAD, SURPRISE, NEUTRAL):
        field = primary[label]
        np.testing.assert_allclose(field[FLIP_PERMUTATION] * [-1.0, 1.0], field, atol=1e-12)
    disgust = primary[DISGUST]
    assert not np.allclose(disgust[FLIP_PERMUTATION] * [-1.0, 1.0], disgust)  # a sneer


@pytest.mark.parametrize("pose_jitter", [0.0, 0.5])
def test_landmarks_follow_ibug_order(pose_jitter: float) -> None:
    source = SyntheticFaces(pose_jitter=pose_jitter, train_size=60)
    for index in range(60):
        lm = source.load("train", index).landmarks
        # the subject's left eye appears on the image right
        assert centre(lm, "left_eye")[0] > centre(lm, "right_eye")[0]
        assert centre(lm, "left_brow")[0] > centre(lm, "right_brow")[0]
        assert lm[16, 0] > lm[0, 0] and lm[45, 0] > lm[36, 0] and lm[54, 0] > lm[48, 0]
        eyes_y = (centre(lm, "left_eye")[1] + centre(lm, "right_eye")[1]) / 2
        brows_y = (centre(lm, "left_brow")[1] + centre(lm, "right_brow")[1]) / 2
        assert brows_y < eyes_y < lm[30, 1] < centre(lm, "outer_lip")[1] < lm[8, 1]
        if pose_jitter == 0.0:
            assert lm[8, 1] == lm[:17, 1].max()  # the chin is the lowest jaw point


def moved(source: SyntheticFaces, index: int, label: int, intensity: float = 1.0) -> tuple:
    """Landmarks of one face with ``label`` and with no expression, same identity and pose."""
    return (
        source.expression_landmarks("train", index, label, intensity),
        source.expression_landmarks("train", index, NEUTRAL),
    )


def mouth_opening(lm: np.ndarray) -> float:
    return float(lm[66, 1] - lm[62, 1])


def inner_brow_gap(lm: np.ndarray) -> float:
    return float(lm[22, 0] - lm[21, 0])


def brow_height(lm: np.ndarray) -> float:
    """Height of the brows above the eyes (y grows downwards)."""
    return float(lm[36:48, 1].mean() - lm[17:27, 1].mean())


@pytest.mark.parametrize("index", range(8))
def test_expressions_move_landmarks_the_way_faces_move(index: int) -> None:
    source = SyntheticFaces(**UPRIGHT)
    step = 0.01  # about half a pixel at 48 x 48; full expressions move several pixels

    happy, rest = moved(source, index, HAPPY)
    assert happy[[48, 54], 1].mean() < rest[[48, 54], 1].mean() - step  # corners up
    assert happy[54, 0] - happy[48, 0] > rest[54, 0] - rest[48, 0]  # and out
    assert happy[[40, 41, 46, 47], 1].mean() < rest[[40, 41, 46, 47], 1].mean()  # cheeks push

    surprise, rest = moved(source, index, SURPRISE)
    assert mouth_opening(surprise) > mouth_opening(rest) + 3 * step
    assert brow_height(surprise) > brow_height(rest) + step
    assert surprise[8, 1] > rest[8, 1]  # jaw drops

    sad, rest = moved(source, index, SAD)
    assert sad[[21, 22], 1].mean() < rest[[21, 22], 1].mean() - step  # inner brows up
    assert sad[[48, 54], 1].mean() > rest[[48, 54], 1].mean() + step  # corners down

    angry, rest = moved(source, index, ANGRY)
    assert brow_height(angry) < brow_height(rest) - step  # brows lowered
    assert inner_brow_gap(angry) < inner_brow_gap(rest) - step  # and pulled together
    assert angry[51, 1] - angry[57, 1] > rest[51, 1] - rest[57, 1]  # lips pressed thinner

    fear, rest = moved(source, index, FEAR)
    assert brow_height(fear) > brow_height(rest) + step
    assert inner_brow_gap(fear) < inner_brow_gap(rest)
    assert fear[54, 0] - fear[48, 0] > rest[54, 0] - rest[48, 0] + step  # mouth stretched
    assert mouth_opening(fear) > mouth_opening(rest)

    disgust, rest = moved(source, index, DISGUST)
    assert disgust[51, 1] < rest[51, 1] - step  # upper lip raised
    assert disgust[33, 1] < rest[33, 1]  # nose wrinkled up
    assert brow_height(disgust) < brow_height(rest)

    neutral, rest = moved(source, index, NEUTRAL)
    np.testing.assert_array_equal(neutral, rest)


def test_expression_strength_grows_with_intensity() -> None:
    source = SyntheticFaces(**UPRIGHT)
    rest = source.expression_landmarks("train", 0, NEUTRAL)
    openings = [
        mouth_opening(source.expression_landmarks("train", 0, SURPRISE, k)) - mouth_opening(rest)
        for k in (0.0, 0.3, 0.6, 1.0)
    ]
    assert openings[0] == pytest.approx(0.0, abs=1e-6)
    assert all(a < b for a, b in zip(openings, openings[1:], strict=False))


# -- pixels draw the landmarks ----------------------------------------------------------


def test_pixels_show_the_landmark_geometry() -> None:
    size = 64
    source = SyntheticFaces(image_size=size, train_size=40, **CLEAN)
    darker = []
    for index in range(40):
        surprise = source.render("train", index, label=SURPRISE, intensity=1.0)
        neutral = source.render("train", index, label=NEUTRAL)
        lm = surprise.landmarks * size
        mouth_x, mouth_y = lm[[62, 66]].mean(axis=0).astype(int)
        nose_x, nose_y = lm[28].astype(int)
        image = surprise.image.astype(int)
        darker.append(image[nose_y, nose_x] - image[mouth_y, mouth_x] > 10)  # open mouth
        # what changes between the two renders lies on the face, near the landmarks
        change = np.abs(image - neutral.image.astype(int))
        low = np.floor(np.minimum(lm.min(0), neutral.landmarks.min(0) * size) - 0.15 * size)
        high = np.ceil(np.maximum(lm.max(0), neutral.landmarks.max(0) * size) + 0.1 * size)
        (x0, y0), (x1, y1) = np.clip(low, 0, size).astype(int), np.clip(high, 0, size).astype(int)
        assert change.sum() > 0
        assert change[y0:y1, x0:x1].sum() >= 0.99 * change.sum()
    assert np.mean(darker) >= 0.9


@pytest.mark.parametrize(
    ("knob", "off", "on"),
    [("occluder_prob", 0.0, 1.0), ("blur_prob", 0.0, 1.0), ("noise_std", 0.0, 0.1)],
)
def test_corruptions_leave_faces_landmarks_and_labels_alone(knob: str, off, on) -> None:
    clear = SyntheticFaces(train_size=10, **{knob: off})
    corrupted = SyntheticFaces(train_size=10, **{knob: on})
    changed = 0
    for index in range(10):
        a, b = clear.load("train", index), corrupted.load("train", index)
        np.testing.assert_array_equal(a.landmarks, b.landmarks)
        assert a.label == b.label
        changed += a.image.tobytes() != b.image.tobytes()
    assert changed >= 8


# -- difficulty: geometric, not a pixel statistic --------------------------------------


def nearest_centroid_accuracy(train_x, train_y, test_x, test_y) -> float:
    centroids = np.stack([train_x[train_y == c].mean(axis=0) for c in range(7)])
    distances = ((test_x[:, None, :] - centroids[None]) ** 2).sum(axis=-1)
    return float((distances.argmin(axis=1) == test_y).mean())


def align(landmarks: np.ndarray) -> np.ndarray:
    """Remove translation, scale and rotation (Procrustes to the first shape)."""
    shapes = landmarks - landmarks.mean(axis=1, keepdims=True)
    shapes /= np.linalg.norm(shapes, axis=(1, 2), keepdims=True)
    u, _, vt = np.linalg.svd(np.einsum("nki,kj->nij", shapes, shapes[0]))
    return np.einsum("nki,nij->nkj", shapes, u @ vt).reshape(len(shapes), -1)


@pytest.fixture(scope="module")
def features() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per-image mean, std and aligned landmarks of 700 train and 700 val samples."""
    source = SyntheticFaces(train_size=700, val_size=700)
    out = {}
    for split in ("train", "val"):
        samples = [source.load(split, i) for i in range(700)]
        pixels = np.stack([s.image.reshape(-1) for s in samples]).astype(np.float64)
        out[split] = (
            np.stack([s.label for s in samples]),
            pixels.mean(axis=1, keepdims=True),
            pixels.std(axis=1, keepdims=True),
            align(np.stack([s.landmarks for s in samples])),
        )
    return out


@pytest.mark.parametrize(("column", "name"), [(1, "mean"), (2, "std")])
def test_pixel_statistics_do_not_give_the_class_away(features, column: int, name: str) -> None:
    train, val = features["train"], features["val"]
    accuracy = nearest_centroid_accuracy(train[column], train[0], val[column], val[0])
    assert accuracy < 0.3, f"{name} brightness predicts the class: {accuracy:.2f}"


def test_landmark_geometry_does_give_the_class_away(features) -> None:
    train, val = features["train"], features["val"]
    accuracy = nearest_centroid_accuracy(train[3], train[0], val[3], val[0])
    assert accuracy > 0.45


# -- preview ----------------------------------------------------------------------------


def test_write_preview_draws_a_row_per_class(tmp_path) -> None:
    source = SyntheticFaces(train_size=60, class_probs=[1, 1, 1, 1, 1, 0, 1])
    dataset = FERDataset(source, "train", 48, 1, with_landmarks=True)
    path = write_preview(dataset, tmp_path / "sheet" / "train.png", per_class=4, scale=2)
    with Image.open(path) as sheet:
        sheet.load()
    assert sheet.format == "PNG" and sheet.mode == "RGB"
    cell = 48 * 2
    assert sheet.height >= 7 * cell  # one row per class, the empty "surprise" row too
    assert sheet.width >= 4 * cell
    rows = np.asarray(sheet)[:, -cell:].reshape(-1, 3)
    assert rows.std() > 10  # the cells hold pictures


def test_write_preview_without_landmarks(tmp_path) -> None:
    dataset = FERDataset(SyntheticFaces(train_size=30, channels=3), "train", 48, 3,
                         with_landmarks=True)
    dotted = write_preview(dataset, tmp_path / "a.png", per_class=2)
    plain = write_preview(dataset, tmp_path / "b.png", per_class=2, draw_landmarks=False)
    with Image.open(dotted) as a, Image.open(plain) as b:
        assert a.size == b.size
        assert np.abs(np.asarray(a, dtype=int) - np.asarray(b, dtype=int)).sum() > 0


def test_preview_command_draws_the_training_view(tmp_path) -> None:
    from fer_lightning.data.__main__ import main

    out = tmp_path / "grid.png"
    assert main(["preview", f"out={out}", "per_class=2", "data.source.train_size=40",
                 "data.image_size=64"]) == 0
    with Image.open(out) as sheet:
        assert sheet.height >= 7 * 64 * 3  # rows of 64 px inputs upscaled 3x: the net's size


def test_size_zero_means_the_split_does_not_exist() -> None:
    from fer_lightning.data.sources.base import SplitUnavailableError

    source = SyntheticFaces(train_size=4, val_size=3, test_size=0)
    assert len(source.split_info("val").labels) == 3
    with pytest.raises(SplitUnavailableError, match="test_size=0: this synthetic dataset "
                                                    "has no test split"):
        source.split_info("test")


def test_preview_has_a_legend_of_its_colours(tmp_path) -> None:
    from fer_lightning.data.preview import LEGEND

    dataset = FERDataset(SyntheticFaces(train_size=30, channels=3), "train", 48, 3,
                         with_landmarks=True)
    with Image.open(write_preview(dataset, tmp_path / "a.png", per_class=2)) as sheet:
        pixels = np.asarray(sheet.convert("RGB"))
    grid_height = 7 * (48 * 3 + 2) + 2
    legend = pixels[grid_height:].reshape(-1, 3)
    assert len(legend) > 0, "no legend strip under the grid"
    for name, colour in LEGEND:  # a swatch of every landmark colour
        assert (legend == colour).all(axis=1).sum() >= 49, name
