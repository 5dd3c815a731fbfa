"""AffectNet source on tiny fixtures of both releases (csv + face boxes; npy annotations)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from fer_lightning.data.datamodule import FERDataModule
from fer_lightning.data.sources.affectnet import AffectNet
from fer_lightning.data.sources.base import DatasetError
from fer_lightning.train import train
from tests.fixtures_photos import (
    AFFECTNET_HEADER,
    affectnet_row,
    colour_of,
    gradient_image,
    sample_colour,
    write_affectnet_csv,
    write_affectnet_npy,
)

# Three of each class 0..7 (7 = contempt), then none, uncertain x2, no-face.
TRAIN = [0, 1, 2, 3, 4, 5, 6, 7] * 3 + [8, 9, 9, 10]
TEST = [0, 1, 2, 3, 4, 5, 6, 7, 10]
FAST = ("trainer=cpu", "trainer.fast_dev_run=true", "logger=none", "data.batch_size=4",
        "callbacks.progress_bar=null", "callbacks.model_summary=null", "data.image_size=48",
        "data.source.val_fraction=0.34")


@pytest.fixture
def csv_root(tmp_path):
    write_affectnet_csv(tmp_path / "csv", {"train": TRAIN, "test": TEST})
    return tmp_path / "csv"


@pytest.fixture
def npy_root(tmp_path):
    write_affectnet_npy(tmp_path / "npy", {"train": TRAIN, "test": TEST})
    return tmp_path / "npy"


# -- csv release ----------------------------------------------------------------------


def test_csv_eight_classes_labels_and_skip_counts(csv_root):
    source = AffectNet(csv_root, num_classes=8, val_split="test")
    assert source.release == "csv"
    assert source.class_names == ["neutral", "happy", "sad", "surprise", "fear", "disgust",
                                  "anger", "contempt"]
    train = source.split_info("train")
    assert train.labels.tolist() == [0, 1, 2, 3, 4, 5, 6, 7] * 3
    assert train.skipped == {"none": 1, "uncertain": 2, "no_face": 1}
    test = source.split_info("test")
    assert test.labels.tolist() == list(range(8)) and test.skipped == {"no_face": 1}
    assert source.split_info("val").labels.tolist() == test.labels.tolist()
    assert source.describe().startswith("AffectNet-8 csv release: train = ")


def test_csv_seven_classes_drop_and_count_contempt(csv_root):
    source = AffectNet(csv_root, num_classes=7, val_split="test")
    assert len(source.class_names) == 7 and "contempt" not in source.class_names
    train = source.split_info("train")
    assert train.labels.tolist() == [0, 1, 2, 3, 4, 5, 6] * 3
    assert train.skipped == {"contempt": 3, "none": 1, "uncertain": 2, "no_face": 1}


def test_csv_holdout_val_is_stratified_part_of_training(csv_root):
    source = AffectNet(csv_root, val_split="holdout", val_fraction=1 / 3, seed=2)
    val, train = source.split_info("val"), source.split_info("train")
    assert np.bincount(val.labels, minlength=8).tolist() == [1] * 8
    assert np.bincount(train.labels, minlength=8).tolist() == [2] * 8
    assert val.skipped == {} and train.skipped == {"none": 1, "uncertain": 2, "no_face": 1}
    val_files = {source.path("val", i) for i in range(8)}
    assert not val_files & {source.path("train", i) for i in range(16)}
    assert len(source.split_info("test").labels) == 8  # validation.csv


def test_csv_load_crops_the_face_box_and_reads_the_row(csv_root):
    source = AffectNet(csv_root, val_split="test")
    sample = source.load("train", 10)  # csv row k=10: 40x30 image, box (5, 3, 24, 20)
    assert sample.image.shape == (20, 24, 3) and sample.image.dtype == np.uint8
    assert sample.label == 2 and sample.landmarks_valid
    assert np.abs(colour_of(sample.image) - sample_colour(10)).max() < 4
    assert sample.landmarks.shape == (68, 2) and sample.landmarks.dtype == np.float32
    assert source.path("train", 10) == csv_root / "Manually_Annotated_Images/1/train_0010.jpg"


def test_csv_crop_pixels_and_landmark_conversion_by_hand(tmp_path):
    """A gradient image shows which pixels the crop took; three landmarks are checked
    against a hand computation: u = (x + 0.5 - face_x) / face_width, clipped to [0, 1]."""
    root = tmp_path / "hand"
    (root / "Manually_Annotated_Images/7").mkdir(parents=True)
    Image.fromarray(gradient_image(40, 30)).save(root / "Manually_Annotated_Images/7/g.png")
    points = np.zeros((68, 2))
    points[:3] = [(5.0, 4.0), (14.5, 11.5), (30.0, 2.0)]
    points[3:] = (10.0, 10.0)
    lists = root / "Manually_Annotated_file_lists"
    lists.mkdir()
    rows = [AFFECTNET_HEADER, affectnet_row("7/g.png", (5, 4, 20, 16), points, 3)]
    (lists / "training.csv").write_text("\n".join(rows) + "\n")
    (lists / "validation.csv").write_text("\n".join(rows) + "\n")
    sample = AffectNet(root, val_split="test").load("test", 0)
    assert sample.image.shape == (16, 20, 3)
    assert sample.image[0, 0].tolist() == [5, 4, 77]  # crop (r, c) = original (4 + r, 5 + c)
    assert sample.image[15, 19].tolist() == [24, 19, 77]
    assert sample.landmarks[0].tolist() == pytest.approx([0.5 / 20, 0.5 / 16])
    assert sample.landmarks[1].tolist() == pytest.approx([0.5, 0.5])
    assert sample.landmarks[2].tolist() == pytest.approx([1.0, 0.0])  # outside -> clipped
    assert sample.landmarks[3].tolist() == pytest.approx([5.5 / 20, 6.5 / 16])
    assert sample.label == 3


def test_csv_files_directly_in_root(tmp_path):
    write_affectnet_csv(tmp_path, {"train": [0, 1, 1, 0], "test": [1, 0]}, list_dir=False)
    source = AffectNet(tmp_path, val_split="test")
    assert source.split_info("train").labels.tolist() == [0, 1, 1, 0]


# -- npy release ----------------------------------------------------------------------


@pytest.mark.parametrize("string_codes", [True, False])
def test_npy_labels_images_and_landmarks(tmp_path, string_codes):
    points = write_affectnet_npy(tmp_path, {"train": TRAIN, "test": TEST},
                                 string_codes=string_codes)
    source = AffectNet(tmp_path, num_classes=8, val_split="test")
    assert source.release == "npy"
    train = source.split_info("train")
    assert train.labels.tolist() == [0, 1, 2, 3, 4, 5, 6, 7] * 3
    assert train.skipped == {"none": 1, "uncertain": 2, "no_face": 1}
    assert source.split_info("test").labels.tolist() == list(range(8))
    sample = source.load("train", 5)  # id 5
    assert sample.image.shape == (32, 32, 3) and sample.label == 5
    assert np.abs(colour_of(sample.image) - sample_colour(5)).max() < 4
    expected = np.clip((points["train"][5] + 0.5) / 32, 0, 1)
    assert np.allclose(sample.landmarks, expected, atol=1e-6) and sample.landmarks_valid
    test = source.load("test", 3)
    assert np.abs(colour_of(test.image) - sample_colour(35)).max() < 4


def test_npy_ids_sort_numerically_and_orphan_images_are_counted(tmp_path):
    write_affectnet_npy(tmp_path, {"train": [0] * 10 + [1, 2], "test": [0, 1]})
    (tmp_path / "train_set/images/99.jpg").write_bytes(
        (tmp_path / "train_set/images/0.jpg").read_bytes())
    source = AffectNet(tmp_path, val_split="test")
    assert source.split_info("train").labels.tolist() == [0] * 10 + [1, 2]  # 10, 11 last
    assert source.path("train", 11).name == "11.jpg"
    assert source.split_info("train").skipped == {"image_without_annotation": 1}


def test_npy_without_landmark_files_has_no_landmarks(npy_root):
    for path in (npy_root / "train_set/annotations").glob("*_lnd.npy"):
        path.unlink()
    sample = AffectNet(npy_root, val_split="test").load("train", 0)
    assert sample.landmarks is None and not sample.landmarks_valid


# -- bad input ------------------------------------------------------------------------


def test_missing_root_names_it_and_draws_both_layouts(tmp_path):
    with pytest.raises(FileNotFoundError) as error:
        AffectNet(tmp_path / "nowhere")
    message = str(error.value)
    assert str(tmp_path / "nowhere") in message
    assert "training.csv" in message and "train_set/annotations/<id>_exp.npy" in message


def test_root_without_either_release(tmp_path):
    with pytest.raises(FileNotFoundError, match="neither training.csv nor train_set/"):
        AffectNet(tmp_path)


def test_missing_validation_csv_and_image_folder(csv_root):
    (csv_root / "Manually_Annotated_file_lists/validation.csv").unlink()
    with pytest.raises(FileNotFoundError, match="AffectNet csv not found: .*validation.csv"):
        AffectNet(csv_root)


def test_csv_without_expected_columns_names_file_and_columns(csv_root):
    path = csv_root / "Manually_Annotated_file_lists/training.csv"
    path.write_text(path.read_text().replace("facial_landmarks", "landmarks", 1))
    source = AffectNet(csv_root, val_split="test")
    with pytest.raises(ValueError, match="training.csv: missing columns \\['facial_landmarks'\\]"):
        source.split_info("train")


def _replace_row(path, number, row):
    lines = path.read_text().splitlines()
    lines[number - 1] = row
    path.write_text("\n".join(lines) + "\n")


@pytest.mark.parametrize("edit, message", [
    (lambda f: f.replace(",3,0.1,", ",12,0.1,"), "expression '12' is not a code in 0..10"),
    (lambda f: f.replace(",3,0.1,", ",x,0.1,"), "expression 'x' is not a code in 0..10"),
    (lambda f: f.replace(",24,20,", ",24,0,", 1), "face_width and face_height must be positive"),
    (lambda f: f.replace(",3,24,", ",top,24,", 1), "the face box is not integers"),
    (lambda f: f.replace(";", ",", 1), "10 fields, expected 9"),
    (lambda f: f.split(";", 2)[0] + ";" + f.split(";", 2)[2], "facial_landmarks has 135 values"),
])
def test_bad_csv_rows_name_file_and_line(csv_root, edit, message):
    path = csv_root / "Manually_Annotated_file_lists/training.csv"
    row = path.read_text().splitlines()[4]  # line 5: sample k=3, code 3, box (4, 3, 24, 20)
    _replace_row(path, 5, edit(row))
    source = AffectNet(csv_root, val_split="test")
    with pytest.raises(ValueError, match=f"training.csv:5: {message}"):
        source.split_info("train")


def test_missing_image_fails_at_split_info_with_file_and_line(csv_root):
    (csv_root / "Manually_Annotated_Images/0/train_0006.jpg").unlink()
    source = AffectNet(csv_root, val_split="test")
    with pytest.raises(FileNotFoundError) as error:
        source.split_info("train")
    assert "1 of 24 AffectNet train images are missing" in str(error.value)
    assert "0/train_0006.jpg (" in str(error.value) and "training.csv:8)" in str(error.value)


def test_undecodable_image_fails_at_load_with_file_and_line(csv_root):
    (csv_root / "Manually_Annotated_Images/1/train_0001.jpg").write_bytes(b"\xff\xd8garbage")
    source = AffectNet(csv_root, val_split="test")
    with pytest.raises(ValueError, match="cannot decode image file .*1/train_0001.jpg "
                                         "\\(listed at .*training.csv:3\\)"):
        source.load("train", 1)


def test_npy_bad_expression_file_names_it(npy_root):
    np.save(npy_root / "train_set/annotations/4_exp.npy", np.array("happy"))
    with pytest.raises(ValueError, match="4_exp.npy: expression 'happy' is not a code"):
        AffectNet(npy_root, val_split="test").split_info("train")


def test_npy_bad_landmark_file_names_it(npy_root):
    np.save(npy_root / "train_set/annotations/2_lnd.npy", np.zeros(10))
    with pytest.raises(ValueError, match="2_lnd.npy: facial landmarks have 10 values"):
        AffectNet(npy_root, val_split="test").load("train", 2)


def test_npy_missing_image_names_it(npy_root):
    (npy_root / "val_set/images/3.jpg").unlink()
    with pytest.raises(FileNotFoundError, match="val_set/images/3.jpg \\(annotation .*3_exp"):
        AffectNet(npy_root, val_split="test").split_info("test")


@pytest.mark.parametrize("key, value, expected", [
    ("num_classes", 6, "num_classes must be 7 or 8"),
    ("release", "zip", "release must be one of"),
    ("val_split", "valid", "val_split must be one of"),
])
def test_bad_options_name_the_key(csv_root, key, value, expected):
    with pytest.raises(ValueError, match=f"data.source.{expected}"):
        AffectNet(csv_root, **{key: value})


# -- end to end -----------------------------------------------------------------------


def test_fast_dev_run_csv_with_groundtruth_landmarks(make_cfg, csv_root):
    results = train(make_cfg("data=affectnet", f"data.root={csv_root}", "landmarks=groundtruth",
                             *FAST, tiny=False))
    assert len(results["test"]["confusion_matrix"]) == 8


def test_fast_dev_run_npy_seven_classes(make_cfg, npy_root):
    results = train(make_cfg("data=affectnet", f"data.root={npy_root}",
                             "data.source.num_classes=7", *FAST, tiny=False))
    assert len(results["test"]["confusion_matrix"]) == 7


# -- face boxes past the image, missing landmarks, paths, encodings ----------------------


def one_row_release(tmp_path, box, points=None, path="7/g.png"):
    """A csv release listing a 40x30 gradient image twice (training.csv and validation.csv
    alike): with ``box``, ``points`` and ``path``, then whole, with landmarks at (10, 10)."""
    root = tmp_path / "one"
    (root / "Manually_Annotated_Images/7").mkdir(parents=True)
    Image.fromarray(gradient_image(40, 30)).save(root / "Manually_Annotated_Images/7/g.png")
    points = np.full((68, 2), 10.0) if points is None else points
    lists = root / "Manually_Annotated_file_lists"
    lists.mkdir()
    rows = [AFFECTNET_HEADER, affectnet_row(path, box, points, 3),
            affectnet_row("7/g.png", (0, 0, 40, 30), np.full((68, 2), 10.0), 1)]
    for name in ("training.csv", "validation.csv"):
        (lists / name).write_text("\n".join(rows) + "\n")
    return root


def test_face_box_past_the_border_is_clipped_not_padded_black(tmp_path):
    points = np.full((68, 2), 36.5)
    source = AffectNet(one_row_release(tmp_path, (30, 20, 20, 20), points), val_split="test")
    sample = source.load("test", 0)
    assert sample.image.shape == (10, 10, 3)  # x 30..40, y 20..30 of a 40x30 image
    assert sample.image[0, 0].tolist() == [30, 20, 77] and sample.image.min() > 0
    assert sample.landmarks[0].tolist() == pytest.approx([0.7, 1.0])  # (36.5+.5-30)/10


def test_face_box_outside_the_image_fails_up_front_and_at_load(tmp_path):
    source = AffectNet(one_row_release(tmp_path, (50, 40, 10, 10)), val_split="test")
    expected = "face box x=50 y=40 w=10 h=10 lies outside the 40x30 image"
    problems = FERDataModule(source).dataset_problems()
    assert [problem.split(" (listed at ")[1] for problem in problems] == [
        f"{source.root}/Manually_Annotated_file_lists/{name}:2): {expected}; expected a box "
        f"overlapping the image" for name in ("training.csv", "validation.csv")]
    with pytest.raises(DatasetError, match=f"g.png \\(listed at .*training.csv:2\\): {expected}"):
        source.load("train", 0)


def test_nan_landmarks_are_invalid_not_points(tmp_path):
    points = np.full((68, 2), 10.0)
    points[5] = np.nan
    source = AffectNet(one_row_release(tmp_path, (0, 0, 40, 30), points), val_split="test")
    sample = source.load("train", 0)
    assert not sample.landmarks_valid
    assert sample.landmarks.shape == (68, 2) and np.isfinite(sample.landmarks).all()
    assert source.load("train", 1).landmarks_valid is True


@pytest.mark.parametrize("path", ["/etc/passwd", "../../secret.jpg", "7/../../x.jpg"])
def test_csv_paths_outside_the_image_folder_are_skipped_and_counted(tmp_path, path):
    source = AffectNet(one_row_release(tmp_path, (0, 0, 40, 30), path=path), val_split="test")
    info = source.split_info("train")
    assert info.labels.tolist() == [1] and info.skipped == {"path_outside_root": 1}
    assert source.path("train", 0).name == "g.png"


def test_utf16_csv_rows_and_landmarks_are_read_by_offset(csv_root):
    for name in ("training.csv", "validation.csv"):
        path = csv_root / "Manually_Annotated_file_lists" / name
        path.write_bytes(path.read_text().encode("utf-16"))
    source = AffectNet(csv_root, val_split="test")
    assert source.split_info("train").labels.tolist() == [0, 1, 2, 3, 4, 5, 6, 7] * 3
    reference = AffectNet(write_affectnet_csv_copy(csv_root), val_split="test")
    np.testing.assert_array_equal(source.load("train", 10).landmarks,
                                  reference.load("train", 10).landmarks)


def write_affectnet_csv_copy(csv_root):
    """The same release again in UTF-8, next to ``csv_root``."""
    copy = csv_root.parent / "utf8"
    write_affectnet_csv(copy, {"train": TRAIN, "test": TEST})
    return copy


def test_npy_release_counts_macos_files_instead_of_reading_them(npy_root):
    (npy_root / "train_set/annotations/._4_exp.npy").write_bytes(b"\x00\x05\x16\x07")
    (npy_root / "train_set/images/._4.jpg").write_bytes(b"\x00\x05\x16\x07")
    info = AffectNet(npy_root, val_split="test").split_info("train")
    assert info.skipped == {"macos_resource_file": 1, "none": 1, "uncertain": 2, "no_face": 1}
