"""RAF-DB source on tiny fixtures in its exact layout; the stratified hold-out helper."""

from __future__ import annotations

import numpy as np
import pytest

from fer_lightning.data.landmarks.content import identity_hash, source_identity
from fer_lightning.data.sources.holdout import stratified_holdout, stratified_partition
from fer_lightning.data.sources.rafdb import RafDB
from fer_lightning.train import train
from tests.fixtures_photos import colour_of, sample_colour, write_image, write_rafdb

# Three train samples per class in label-file order 1..7, 1..7, 1..7; test reversed.
TRAIN = [1, 2, 3, 4, 5, 6, 7] * 3
TEST = [7, 6, 5, 4, 3, 2, 1]
FAST = ("trainer=cpu", "trainer.fast_dev_run=true", "logger=none", "data.batch_size=4",
        "callbacks.progress_bar=null", "callbacks.model_summary=null")


@pytest.fixture
def root(tmp_path):
    write_rafdb(tmp_path / "raf", TRAIN, TEST)
    return tmp_path / "raf"


# -- stratified hold-out ----------------------------------------------------------------


def test_holdout_is_stratified_disjoint_and_complete():
    labels = np.repeat([0, 1, 2], [50, 20, 10])
    train_idx, val_idx = stratified_holdout(labels, 0.2, seed=3)
    assert np.bincount(labels[val_idx]).tolist() == [10, 4, 2]
    assert np.bincount(labels[train_idx]).tolist() == [40, 16, 8]
    assert sorted(np.r_[train_idx, val_idx].tolist()) == list(range(80))
    assert (np.diff(train_idx) > 0).all() and (np.diff(val_idx) > 0).all()


def test_holdout_depends_on_the_seed_only():
    labels = np.tile(np.arange(4), 25)
    first, again = stratified_holdout(labels, 0.3, 7), stratified_holdout(labels.copy(), 0.3, 7)
    other = stratified_holdout(labels, 0.3, 8)
    assert np.array_equal(first[1], again[1])
    assert not np.array_equal(first[1], other[1])


def test_partition_three_ways_keeps_class_shares():
    labels = np.repeat([0, 1], [30, 10])
    parts = stratified_partition(labels, (0.6, 0.2, 0.2), seed=0)
    assert [np.bincount(labels[p], minlength=2).tolist() for p in parts] == \
        [[18, 6], [6, 2], [6, 2]]


@pytest.mark.parametrize("fraction", [0, 1, 1.5, -0.1, True, "0.1"])
def test_holdout_rejects_bad_fractions(fraction):
    with pytest.raises(ValueError, match="fraction must be a number in \\(0, 1\\)"):
        stratified_holdout([0, 1, 0, 1], fraction, 0)


def test_holdout_rejects_non_integer_labels():
    with pytest.raises(ValueError, match="1-D integer array"):
        stratified_holdout([0.5, 1.0], 0.5, 0)


# -- reading --------------------------------------------------------------------------


def test_class_order_and_zero_based_labels_with_test_as_val(root):
    source = RafDB(root, val_split="test")
    assert source.class_names == ["surprise", "fear", "disgust", "happiness", "sadness",
                                  "anger", "neutral"]
    assert source.split_info("train").labels.tolist() == [label - 1 for label in TRAIN]
    assert source.split_info("test").labels.tolist() == [6, 5, 4, 3, 2, 1, 0]
    assert source.split_info("val").labels.tolist() == source.split_info("test").labels.tolist()
    assert source.split_info("train").skipped == {}
    assert "val = test split" in source.describe()
    assert "val = stratified 0.5 hold-out" in RafDB(root, val_fraction=0.5).describe()


def test_load_decodes_the_listed_colour_image(root):
    source = RafDB(root, val_split="test")
    sample = source.load("train", 9)  # train_00010.jpg, label 3 -> 2 (disgust)
    assert sample.image.dtype == np.uint8 and sample.image.shape == (24, 24, 3)
    assert sample.label == 2 and sample.landmarks is None
    assert np.abs(colour_of(sample.image) - sample_colour(9)).max() < 4
    test = source.load("test", 0)  # test_00001.jpg, label 7 -> 6 (neutral)
    assert test.label == 6 and np.abs(colour_of(test.image) - sample_colour(32)).max() < 4
    assert source.path("test", 0).name == "test_00001_aligned.jpg"


def test_holdout_val_comes_from_train_stratified(root):
    source = RafDB(root, val_split="holdout", val_fraction=1 / 3, seed=5)
    train_labels = source.split_info("train").labels
    val_labels = source.split_info("val").labels
    assert np.bincount(val_labels, minlength=7).tolist() == [1] * 7
    assert np.bincount(train_labels, minlength=7).tolist() == [2] * 7
    train_files = {source.path("train", i).name for i in range(14)}
    val_files = {source.path("val", i).name for i in range(7)}
    assert not train_files & val_files and all(n.startswith("train_") for n in val_files)
    again = RafDB(root, val_split="holdout", val_fraction=1 / 3, seed=5)
    assert [again.path("val", i) for i in range(7)] == [source.path("val", i) for i in range(7)]
    for i in range(7):  # each val sample loads the image of the row it came from
        sample = source.load("val", i)
        row = int(source.path("val", i).name[6:11]) - 1
        assert sample.label == TRAIN[row] - 1
        assert np.abs(colour_of(sample.image) - sample_colour(row)).max() < 4


def test_original_variant_reads_image_original(tmp_path):
    write_rafdb(tmp_path, [4, 5], [1], variant="original")
    source = RafDB(tmp_path, variant="original", val_split="test")
    assert source.path("train", 1) == tmp_path / "Image/original/train_00002.jpg"
    assert source.load("train", 1).label == 4


# -- bad input ------------------------------------------------------------------------


def test_missing_root_names_it_and_draws_the_layout(tmp_path):
    with pytest.raises(FileNotFoundError) as error:
        RafDB(tmp_path / "nowhere")
    assert str(tmp_path / "nowhere") in str(error.value)
    assert "EmoLabel/list_patition_label.txt" in str(error.value)


def test_missing_label_file(tmp_path):
    (tmp_path / "Image/aligned").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match="RAF-DB label file not found: .*list_patition"):
        RafDB(tmp_path)


def test_wrong_variant_points_at_the_one_present(tmp_path):
    write_rafdb(tmp_path, [1], [1], variant="original")
    with pytest.raises(FileNotFoundError, match="variant=original"):
        RafDB(tmp_path, variant="aligned")


@pytest.mark.parametrize("line, message", [
    ("train_00003.jpg 8", "label '8' of train_00003.jpg is not in 1..7"),
    ("train_00003.jpg 0", "label '0' of train_00003.jpg is not in 1..7"),
    ("train_00003.jpg happy", "label 'happy'"),
    ("train_00003.jpg", "expected '<image name> <label 1..7>'"),
    ("val_00003.jpg 2", "image name 'val_00003.jpg' starts with neither 'train_' nor 'test_'"),
    ("train_00001.jpg 2", "train_00001.jpg is listed twice \\(first at line 1\\)"),
])
def test_bad_label_lines_name_file_and_line(tmp_path, line, message):
    label_file = write_rafdb(tmp_path, [1, 2], [3])
    lines = label_file.read_text().splitlines()
    label_file.write_text("\n".join(lines[:2] + [line] + lines[2:]) + "\n")
    with pytest.raises(ValueError, match=f"list_patition_label.txt:3: {message}"):
        RafDB(tmp_path)


def test_empty_label_file(tmp_path):
    write_rafdb(tmp_path, [1], [1]).write_text("\n")
    with pytest.raises(ValueError, match="lists no images"):
        RafDB(tmp_path)


def test_missing_images_fail_at_split_info_with_file_and_line(root):
    (root / "Image/aligned/train_00004_aligned.jpg").unlink()
    (root / "Image/aligned/train_00009_aligned.jpg").unlink()
    source = RafDB(root, val_split="test")
    assert len(source.split_info("test").labels) == 7  # the test split is complete
    with pytest.raises(FileNotFoundError) as error:
        source.split_info("train")
    message = str(error.value)
    assert message.startswith("2 of 21 RAF-DB train images")
    assert "train_00004_aligned.jpg (" in message and "list_patition_label.txt:4)" in message
    assert "list_patition_label.txt:9)" in message


def test_undecodable_and_truncated_images_fail_at_load_naming_file_and_line(root):
    (root / "Image/aligned/train_00002_aligned.jpg").write_bytes(b"not a jpeg at all")
    truncated = root / "Image/aligned/train_00003_aligned.jpg"
    write_image(truncated, (10, 20, 30), size=(64, 64))
    truncated.write_bytes(truncated.read_bytes()[:400])
    source = RafDB(root, val_split="test")
    source.split_info("train")  # both files exist
    with pytest.raises(ValueError, match="cannot decode image file .*train_00002_aligned.jpg "
                                         "\\(listed at .*list_patition_label.txt:2\\)"):
        source.load("train", 1)
    with pytest.raises(ValueError, match="train_00003_aligned.jpg .*list_patition_label.txt:3"):
        source.load("train", 2)


@pytest.mark.parametrize("key, value, allowed", [("variant", "big", "aligned"),
                                                  ("val_split", "none", "holdout")])
def test_bad_options_name_the_key(root, key, value, allowed):
    with pytest.raises(ValueError, match=f"data.source.{key} must be one of .*{allowed}"):
        RafDB(root, **{key: value})


# -- end to end -----------------------------------------------------------------------


def test_fast_dev_run_on_rafdb(make_cfg, root):
    results = train(make_cfg("data=rafdb", f"data.root={root}", "data.image_size=48",
                             "data.source.val_fraction=0.34", *FAST,
                             tiny=False))
    assert len(results["test"]["confusion_matrix"]) == 7


def test_holdout_that_would_be_empty_is_an_error():
    with pytest.raises(ValueError, match="from 21 samples \\(largest class 3\\) holds out nothing"):
        stratified_holdout(np.repeat(np.arange(7), 3), 0.1, 0)


# -- paths outside the root; the resplit protocol ----------------------------------------


def test_label_rows_naming_paths_outside_the_root_are_skipped_and_never_read(tmp_path, caplog):
    root = tmp_path / "raf"
    label_file = write_rafdb(root, TRAIN, TEST)
    secret = write_image(tmp_path / "secret_aligned.jpg", (1, 2, 3))
    lines = label_file.read_text().splitlines()
    label_file.write_text("\n".join([*lines, "train_/../../../secret.jpg 1",
                                     "test_/../../../../etc/passwd 2"]) + "\n")
    source = RafDB(root, val_split="test")
    assert source.split_info("train").skipped == {"path_outside_root": 1}
    assert source.split_info("test").skipped == {"path_outside_root": 1}
    assert len(source.split_info("train").labels) == len(TRAIN)
    listed = [source.path(s, i) for s in ("train", "test") for i in range(len(
        source.split_info(s).labels))]
    assert secret not in listed and all(root in path.parents for path in listed)
    assert "list_patition_label.txt:29: image name 'train_/../../../secret.jpg' leaves" \
        in caplog.text


def test_names_are_normalised_before_the_prefix_and_duplicate_checks(tmp_path):
    root = tmp_path / "raf"
    label_file = write_rafdb(root, TRAIN, TEST)
    lines = label_file.read_text().splitlines()
    label_file.write_text("\n".join([*lines, "test_/../train_00001.jpg 1"]) + "\n")
    with pytest.raises(ValueError, match=r"list_patition_label.txt:29: image name "
                                         r"'test_/../train_00001.jpg' is 'train_00001.jpg' "
                                         r"once .* resolved, so its prefix says 'test_'"):
        RafDB(root, val_split="test")
    label_file.write_text("\n".join([*lines, "train_x/.//../train_00001.jpg 1"]) + "\n")
    with pytest.raises(ValueError, match=r":29: train_00001.jpg is listed twice \(first at "
                                         r"line 1\)"):
        RafDB(root, val_split="test")


def resplit(root, **options) -> RafDB:
    return RafDB(root, split="resplit", val_split="test", **options)


def test_resplit_cuts_all_images_at_the_ratio_per_class(tmp_path):
    write_rafdb(tmp_path, [1, 2, 3, 4, 5, 6, 7] * 5, [1, 2, 3, 4, 5, 6, 7])  # 6 per class
    source = resplit(tmp_path, resplit_ratio=5, seed=1)
    train, test = source.split_info("train").labels, source.split_info("test").labels
    assert np.bincount(train, minlength=7).tolist() == [5] * 7  # 5:1 in every class
    assert np.bincount(test, minlength=7).tolist() == [1] * 7
    files = {split: {source.path(split, i) for i in range(len(labels))}
             for split, labels in (("train", train), ("test", test))}
    assert not files["train"] & files["test"]
    assert len(files["train"] | files["test"]) == 42  # disjoint and complete
    assert any(path.name.startswith("test_") for path in files["train"])  # pooled
    assert "resplit: all images cut 5:1 into train/test, stratified (seed 1)" in \
        source.describe()


def test_resplit_is_deterministic_under_its_seed(tmp_path):
    write_rafdb(tmp_path, [1, 2, 3, 4, 5, 6, 7] * 5, [1, 2, 3, 4, 5, 6, 7])
    first, again = resplit(tmp_path, seed=4), resplit(tmp_path, seed=4)
    other = resplit(tmp_path, seed=5)
    paths = [first.path("test", i) for i in range(7)]
    assert [again.path("test", i) for i in range(7)] == paths
    assert [other.path("test", i) for i in range(7)] != paths
    # each split setting is its own landmark cache entry
    keys = {identity_hash(source_identity(s)) for s in (first, other, RafDB(tmp_path))}
    assert len(keys) == 3


def test_resplit_holds_val_out_of_its_own_train(tmp_path):
    write_rafdb(tmp_path, [1, 2, 3, 4, 5, 6, 7] * 5, [1, 2, 3, 4, 5, 6, 7])
    source = RafDB(tmp_path, split="resplit", resplit_ratio=2, val_fraction=0.25, seed=0)
    counts = {split: np.bincount(source.split_info(split).labels, minlength=7).tolist()
              for split in ("train", "val", "test")}
    assert counts == {"train": [3] * 7, "val": [1] * 7, "test": [2] * 7}
    splits = [{source.path(s, i) for i in range(7 * n)}
              for s, n in (("train", 3), ("val", 1), ("test", 2))]
    assert not (splits[0] & splits[1] or splits[0] & splits[2] or splits[1] & splits[2])


@pytest.mark.parametrize("key, value, expected", [
    ("split", "paper", "data.source.split must be one of \\['official', 'resplit'\\]"),
    ("resplit_ratio", 0, "data.source.resplit_ratio must be a number > 0"),
    ("resplit_ratio", "5:1", "data.source.resplit_ratio must be a number > 0"),
])
def test_bad_split_options_name_the_key(root, key, value, expected):
    with pytest.raises(ValueError, match=expected):
        RafDB(root, **{key: value})
