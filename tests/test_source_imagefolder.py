"""Image-folder source: flat and split-folder layouts, skips, bad trees."""

from __future__ import annotations

import logging

import numpy as np
import pytest
from PIL import Image

from fer_lightning.data.sources.base import DatasetError
from fer_lightning.data.sources.imagefolder import ImageFolder
from fer_lightning.train import train
from tests.fixtures_photos import colour_of, sample_colour, write_image, write_imagefolder

FAST = ("trainer=cpu", "trainer.fast_dev_run=true", "logger=none", "data.batch_size=4",
        "callbacks.progress_bar=null", "callbacks.model_summary=null")
COUNTS = {"happy": 10, "angry": 5, "sad": 5}


def test_flat_tree_is_split_by_stratified_fractions(tmp_path):
    write_imagefolder(tmp_path, COUNTS)
    (tmp_path / "happy/notes.txt").write_text("not an image")
    (tmp_path / "README.md").write_text("loose file")
    source = ImageFolder(tmp_path, split_fractions=(0.6, 0.2, 0.2), seed=1)
    assert source.class_names == ["angry", "happy", "sad"]
    counts = {split: np.bincount(source.split_info(split).labels, minlength=3).tolist()
              for split in ("train", "val", "test")}
    assert counts == {"train": [3, 6, 3], "val": [1, 2, 1], "test": [1, 2, 1]}
    assert source.split_info("train").skipped == {"non_image_file": 1,
                                                  "outside_class_folder": 1}
    every = [source.path(s, i) for s in ("train", "val", "test") for i in range(len(
        source.split_info(s).labels))]
    assert len(set(every)) == 20  # disjoint and complete
    assert "stratified fractions [0.6, 0.2, 0.2] (seed 1)" in source.describe()
    again = ImageFolder(tmp_path, split_fractions=(0.6, 0.2, 0.2), seed=1)
    assert [again.path("val", i) for i in range(4)] == [source.path("val", i) for i in range(4)]


def test_every_extension_is_read_and_labels_follow_folder_names(tmp_path):
    write_imagefolder(tmp_path, {"a": 4, "b": 4}, split="train")
    write_imagefolder(tmp_path, {"a": 1, "b": 1}, split="test")
    write_imagefolder(tmp_path, {"a": 1, "b": 1}, split="val")
    source = ImageFolder(tmp_path)
    suffixes = {source.path("train", i).suffix for i in range(8)}
    assert suffixes == {".jpg", ".png", ".jpeg", ".bmp"}
    for i in range(8):  # image k of the train tree has colour k, in class order
        sample = source.load("train", i)
        k = int(source.path("train", i).stem[3:]) + 4 * sample.label
        assert sample.image.shape == (24, 24, 3) and sample.landmarks is None
        assert source.path("train", i).parent.name == source.class_names[sample.label]
        assert np.abs(colour_of(sample.image) - sample_colour(k)).max() < 4


@pytest.mark.parametrize("val_name", ["val", "valid", "validation", "Validation"])
def test_split_folders_with_val_aliases(tmp_path, val_name):
    write_imagefolder(tmp_path, {"x": 3, "y": 2}, split="train")
    write_imagefolder(tmp_path, {"x": 1, "y": 2}, split=val_name)
    write_imagefolder(tmp_path, {"x": 2, "z": 1}, split="test")
    source = ImageFolder(tmp_path)
    assert source.class_names == ["x", "y", "z"]  # the union, sorted
    assert source.split_info("train").labels.tolist() == [0, 0, 0, 1, 1]
    assert source.split_info("val").labels.tolist() == [0, 1, 1]
    assert source.split_info("test").labels.tolist() == [0, 0, 2]


def test_train_and_test_only_holds_val_out_of_train(tmp_path):
    write_imagefolder(tmp_path, {"x": 10, "y": 10}, split="train")
    write_imagefolder(tmp_path, {"x": 2, "y": 2}, split="test")
    source = ImageFolder(tmp_path, val_fraction=0.2, seed=0)
    assert np.bincount(source.split_info("val").labels).tolist() == [2, 2]
    assert np.bincount(source.split_info("train").labels).tolist() == [8, 8]
    assert len(source.split_info("test").labels) == 4
    assert "val = stratified 0.2 hold-out of train" in source.describe()
    train_paths = {source.path("train", i) for i in range(16)}
    assert all(source.path("val", i) not in train_paths for i in range(4))


def test_train_and_val_only_tests_on_val_and_says_so(tmp_path, caplog):
    write_imagefolder(tmp_path, {"x": 2, "y": 2}, split="train")
    write_imagefolder(tmp_path, {"x": 1, "y": 1}, split="valid")
    with caplog.at_level(logging.WARNING):
        source = ImageFolder(tmp_path)
    assert "no test folder: the test split is the val split" in caplog.text
    assert source.split_info("test").labels.tolist() == source.split_info("val").labels.tolist()


def test_non_image_files_in_split_folders_are_counted(tmp_path):
    write_imagefolder(tmp_path, {"x": 2}, split="train")
    write_imagefolder(tmp_path, {"x": 1}, split="test")
    (tmp_path / "train/x/labels.csv").write_text("a,b")
    (tmp_path / "train/x/thumbs.db").write_text("")
    (tmp_path / "test/list.txt").write_text("")
    source = ImageFolder(tmp_path, val_fraction=0.5)
    assert source.split_info("train").skipped == {"non_image_file": 2}
    assert source.split_info("test").skipped == {"outside_class_folder": 1}


# -- bad input ------------------------------------------------------------------------


def test_missing_root_names_it_and_draws_the_layout(tmp_path):
    with pytest.raises(FileNotFoundError) as error:
        ImageFolder(tmp_path / "faces")
    assert str(tmp_path / "faces") in str(error.value)
    assert "<class name>/<image>" in str(error.value)


def test_root_without_class_folders(tmp_path):
    (tmp_path / "a.jpg").write_bytes(b"")
    with pytest.raises(FileNotFoundError, match="class folders not found: .*<class name>"):
        ImageFolder(tmp_path)


def test_split_folders_without_train(tmp_path):
    write_imagefolder(tmp_path, {"x": 1}, split="test")
    with pytest.raises(FileNotFoundError, match=f"train folder not found: {tmp_path}/train"):
        ImageFolder(tmp_path)


def test_split_and_class_folders_mixed(tmp_path):
    write_imagefolder(tmp_path, {"x": 1}, split="train")
    write_imagefolder(tmp_path, {"happy": 1})
    with pytest.raises(ValueError, match="mixes split folders \\['train'\\] with other "
                                         "folders \\['happy'\\]"):
        ImageFolder(tmp_path)


def test_two_val_folders(tmp_path):
    for split in ("train", "val", "valid"):
        write_imagefolder(tmp_path, {"x": 1}, split=split)
    with pytest.raises(ValueError, match="two val folders: val/ and valid/"):
        ImageFolder(tmp_path)


@pytest.mark.parametrize("fractions", [(0.5, 0.5), (0.5, 0.3, 0.3), (0.0, 0.5, 0.5),
                                       (1.2, -0.1, -0.1)])
def test_bad_split_fractions(tmp_path, fractions):
    write_imagefolder(tmp_path, {"x": 2})
    with pytest.raises(ValueError, match="data.source.split_fractions must be \\[train, val"):
        ImageFolder(tmp_path, split_fractions=fractions)


def test_undecodable_image_names_the_file(tmp_path):
    write_imagefolder(tmp_path, {"x": 2}, split="train")
    write_imagefolder(tmp_path, {"x": 1}, split="test")
    broken = tmp_path / "test/x/img000.jpg"
    broken.write_bytes(b"GIF89a?")
    with pytest.raises(ValueError, match=f"cannot decode image file {broken}"):
        ImageFolder(tmp_path, val_fraction=0.5).load("test", 0)


def test_truncated_png_names_the_file(tmp_path):
    write_imagefolder(tmp_path, {"x": 2}, split="train")
    png = write_image(tmp_path / "test/x/big.png", (1, 2, 3), size=(64, 64))
    png.write_bytes(png.read_bytes()[:60])
    with pytest.raises(ValueError, match=f"cannot decode image file {png}"):
        ImageFolder(tmp_path, val_fraction=0.5).load("test", 0)


# -- end to end -----------------------------------------------------------------------


@pytest.mark.parametrize("split", [None, "train"])
def test_fast_dev_run_on_both_layouts(make_cfg, tmp_path, split):
    root = tmp_path / "tree"
    write_imagefolder(root, {"a": 6, "b": 6, "c": 6}, split=split)
    if split:
        write_imagefolder(root, {"a": 2, "b": 2, "c": 2}, split="test")
    results = train(make_cfg("data=imagefolder", f"data.root={root}", "data.image_size=48",
                             "data.source.split_fractions=[0.5,0.25,0.25]",
                             "data.source.val_fraction=0.34", *FAST, tiny=False))
    assert len(results["test"]["confusion_matrix"]) == 3


# -- folders that are not what they seem: empty, symlinked, hidden, 16-bit -------------


def test_empty_class_folder_is_an_error_not_a_class_of_zero(tmp_path):
    write_imagefolder(tmp_path, {"happy": 4, "sad": 4})
    (tmp_path / "fear").mkdir()
    (tmp_path / "fear/._img.jpg").write_bytes(b"\x00\x05\x16\x07")
    with pytest.raises(DatasetError, match=f"class folder {tmp_path / 'fear'} holds no images"):
        ImageFolder(tmp_path)


def test_empty_class_folder_outside_train_is_a_class_seen_in_train(tmp_path):
    write_imagefolder(tmp_path, {"x": 4, "y": 4}, split="train")
    write_imagefolder(tmp_path, {"x": 1}, split="test")
    (tmp_path / "test/y").mkdir()
    source = ImageFolder(tmp_path, val_fraction=0.25)
    assert source.class_names == ["x", "y"]
    assert source.split_info("test").labels.tolist() == [0]


def test_symlink_to_the_root_is_skipped_not_a_duplicate_class(tmp_path, caplog):
    write_imagefolder(tmp_path, {"happy": 4, "sad": 4})
    (tmp_path / "everything").symlink_to(tmp_path)
    (tmp_path / "happy/loop").symlink_to(tmp_path / "happy")
    (tmp_path / "sad/again").symlink_to(tmp_path / "happy")
    source = ImageFolder(tmp_path, split_fractions=(0.5, 0.5, 0.0))
    assert source.class_names == ["happy", "sad"]
    assert source.split_info("train").skipped == {"symlink_to_root_or_above": 1,
                                                  "symlink_inside_root": 2}
    assert sum(len(source.split_info(s).labels) for s in ("train", "val")) == 8
    assert "everything: not followed (symlink to root or above)" in caplog.text


def test_symlink_to_a_folder_elsewhere_is_followed(tmp_path):
    write_imagefolder(tmp_path / "elsewhere", {"sad": 3})
    write_imagefolder(tmp_path / "tree", {"happy": 3})
    (tmp_path / "tree/sad").symlink_to(tmp_path / "elsewhere/sad")
    source = ImageFolder(tmp_path / "tree", split_fractions=(0.34, 0.33, 0.33))
    assert source.class_names == ["happy", "sad"]
    assert source.split_info("train").skipped == {}


def test_hidden_and_macos_files_are_counted_and_never_listed(tmp_path):
    write_imagefolder(tmp_path, {"a": 2, "b": 2}, split="train")
    write_imagefolder(tmp_path, {"a": 1, "b": 1}, split="test")
    for name in ("train/a/._img000.jpg", "train/b/._img001.png", "train/a/.DS_Store"):
        (tmp_path / name).write_bytes(b"\x00\x05\x16\x07")
    (tmp_path / "train/b/.ipynb_checkpoints").mkdir()
    write_image(tmp_path / "train/b/.ipynb_checkpoints/copy.jpg", (1, 1, 1))
    source = ImageFolder(tmp_path, val_fraction=0.5)
    assert source.split_info("train").skipped == {"macos_resource_file": 2, "hidden_file": 2}
    listed = [source.path(s, i).name for s in ("train", "val") for i in range(2)]
    assert sorted(listed) == ["img000.jpg", "img000.jpg", "img001.png", "img001.png"]


def test_sixteen_bit_png_loads_scaled(tmp_path):
    write_imagefolder(tmp_path, {"a": 2, "b": 2}, split="train")
    write_imagefolder(tmp_path, {"b": 1}, split="test")
    (tmp_path / "test/a").mkdir()
    Image.fromarray(np.full((8, 8), 40000, np.uint16)).save(tmp_path / "test/a/deep.png")
    image = ImageFolder(tmp_path, val_fraction=0.5).load("test", 0).image
    assert image.shape == (8, 8, 3) and (image == round(40000 / 257)).all()
