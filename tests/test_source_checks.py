"""What training needs of a dataset, checked up front (sources/validate.py) by the
DataModule and by `summary`; the shared file reading of sources/io.py (encodings, images)."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import numpy as np
import pytest
from fixtures_fer import make_rows, write_fer2013_csv, write_ferplus_csv
from PIL import Image

from fer_lightning.data.datamodule import FERDataModule
from fer_lightning.data.sources import io
from fer_lightning.data.sources.base import DatasetError
from fer_lightning.data.sources.fer2013 import FER2013Source
from fer_lightning.data.sources.ferplus import FERPlusSource
from fer_lightning.data.sources.imagefolder import ImageFolder
from fer_lightning.data.sources.rafdb import RafDB
from fer_lightning.data.sources.synthetic import SyntheticFaces
from fer_lightning.data.summary import render, summarize
from fer_lightning.train import train
from tests.fixtures_photos import write_image, write_imagefolder, write_rafdb

FAST = ("trainer=cpu", "trainer.fast_dev_run=true", "logger=none", "data.batch_size=4",
        "callbacks.progress_bar=null", "callbacks.model_summary=null", "data.image_size=48")


def problems_of(source, fit: bool = True, images: str = "header") -> list[str]:
    return FERDataModule(source).dataset_problems(images=images, fit=fit)


def summary_main(*args: str) -> int:
    from fer_lightning.data.__main__ import main

    return main(["summary", *args])


# -- splits and classes: empty after skips, one class -----------------------------------


def test_header_only_csv_fails_before_training_naming_the_split(tmp_path):
    write_fer2013_csv(tmp_path, make_rows({"Training": 0, "PublicTest": 0, "PrivateTest": 0}))
    datamodule = FERDataModule(FER2013Source(tmp_path))
    with pytest.raises(DatasetError) as error:
        datamodule.prepare_data()
    message = str(error.value)
    assert message.startswith(f"FER2013Source ({tmp_path / 'fer2013.csv'}: ")
    assert "  - split 'train' has no samples\n" in message
    assert "  - split 'val' has no samples\n" in message


def test_ferplus_val_whose_rows_are_all_skipped_is_an_error_with_the_reasons(tmp_path):
    rows = make_rows({"Training": 4, "PublicTest": 2, "PrivateTest": 2})
    votes = [[0, 10, 0, 0, 0, 0, 0, 0, 0, 0], [10, 0, 0, 0, 0, 0, 0, 0, 0, 0]] * 2 \
        + [[5, 5, 0, 0, 0, 0, 0, 0, 0, 0]] * 2 \
        + [[0, 0, 10, 0, 0, 0, 0, 0, 0, 0], [10, 0, 0, 0, 0, 0, 0, 0, 0, 0]]
    names = [f"fer{i:07d}.png" for i in range(8)]
    write_ferplus_csv(tmp_path, rows, names, votes)
    datamodule = FERDataModule(FERPlusSource(tmp_path))
    with pytest.raises(DatasetError, match=r"split 'val' has no samples after skipping 2 rows "
                                           r"\(no clear majority: 2\)"):
        datamodule.setup("fit")


def test_rafdb_without_test_rows_fails_on_the_test_split(tmp_path):
    write_rafdb(tmp_path, [1, 2, 3, 4, 5, 6, 7] * 2, [])
    assert problems_of(RafDB(tmp_path, val_fraction=0.5)) == ["split 'test' has no samples"]


def test_image_folder_with_one_class_is_an_error(tmp_path):
    write_imagefolder(tmp_path, {"happy": 6})
    assert problems_of(ImageFolder(tmp_path, split_fractions=(0.5, 0.25, 0.25))) == [
        "1 class (happy); a classifier needs at least two"]


def test_train_split_of_one_class_is_an_error(tmp_path):
    rows = make_rows({"Training": 3, "PublicTest": 7, "PrivateTest": 7})
    rows.labels[:3] = [4, 4, 4]
    write_fer2013_csv(tmp_path, rows)
    assert problems_of(FER2013Source(tmp_path)) == [
        "split 'train' holds samples of one class only (sad); a classifier needs at least two"]


def test_a_split_the_form_lacks_is_not_a_problem_but_val_is_needed_to_fit():
    source = SyntheticFaces(train_size=20, val_size=0, test_size=0)
    assert problems_of(source, fit=False) == []
    assert problems_of(source, fit=True) == [
        "split 'val' is needed but unavailable: data.source.val_size=0: this synthetic "
        "dataset has no val split"]


def test_flat_folder_with_no_test_share_has_no_test_split(tmp_path):
    write_imagefolder(tmp_path, {"a": 4, "b": 4})
    source = ImageFolder(tmp_path, split_fractions=(0.5, 0.5, 0.0))
    datamodule = FERDataModule(source)
    assert datamodule.available_splits == ["train", "val"]
    assert "gives the test split no share" in datamodule.unavailable_splits["test"]
    assert datamodule.dataset_problems(fit=True) == []


def test_training_fails_before_the_first_epoch(make_cfg, tmp_path, capsys):
    write_rafdb(tmp_path / "raf", [1, 2, 3, 4, 5, 6, 7] * 2, [])
    with pytest.raises(DatasetError, match="split 'test' has no samples"):
        train(make_cfg("data=rafdb", f"data.root={tmp_path / 'raf'}",
                       "data.source.val_fraction=0.5", *FAST, tiny=False))
    assert "Epoch" not in capsys.readouterr().out


@pytest.mark.slow
def test_cli_names_the_dataset_error_without_a_traceback(tmp_path):
    write_rafdb(tmp_path / "raf", [1, 2, 3, 4, 5, 6, 7] * 2, [])
    done = subprocess.run([sys.executable, "-m", "fer_lightning", "data=rafdb",
                           f"data.root={tmp_path / 'raf'}", "data.source.val_fraction=0.5",
                           *FAST], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 1
    assert "Dataset error: RafDB (" in done.stderr and "split 'test' has no samples" in done.stderr
    assert "Traceback" not in done.stderr and "Epoch" not in done.stdout


# -- image files: header check up front, full decode on request ------------------------


def test_truncated_listed_image_fails_in_prepare_data_naming_file_and_line(tmp_path):
    write_rafdb(tmp_path, [1, 2, 3, 4, 5, 6, 7] * 2, [1, 2])
    jpeg = tmp_path / "Image/aligned/train_00003_aligned.jpg"
    write_image(jpeg, (10, 20, 30), size=(64, 64))
    jpeg.write_bytes(jpeg.read_bytes()[:400])
    datamodule = FERDataModule(RafDB(tmp_path, val_fraction=0.5))
    with pytest.raises(DatasetError) as error:
        datamodule.prepare_data()
    assert re.search(rf"  - {jpeg} \(listed at .*list_patition_label.txt:3\): cannot be "
                     rf"decoded \(Truncated File Read\)", str(error.value))


@pytest.mark.parametrize("content, why", [
    (b"", "is empty (0 bytes)"),
    (b"<html>not found</html>", "is not a JPEG, PNG, BMP, GIF or WEBP image (starts with "
                                "b'<html>no')"),
])
def test_header_check_names_empty_and_non_image_files(tmp_path, content, why):
    path = tmp_path / "a.jpg"
    path.write_bytes(content)
    assert io.header_problem(path) == why


def test_header_check_passes_whole_files_and_missing_ones_are_named(tmp_path):
    for suffix in (".jpg", ".png", ".bmp"):
        assert io.header_problem(write_image(tmp_path / f"ok{suffix}", (1, 2, 3))) is None
    assert io.header_problem(tmp_path / "gone.jpg") == "does not exist"


def test_jpeg_with_data_after_its_end_marker_passes(tmp_path):
    path = write_image(tmp_path / "tail.jpg", (9, 9, 9))
    path.write_bytes(path.read_bytes() + b"\0" * 4096)  # some cameras append data
    assert io.header_problem(path) is None


def broken_png(path):
    """A PNG with its signature and IEND intact but a corrupted image stream."""
    write_image(path, (40, 80, 120), size=(32, 32))
    data = bytearray(path.read_bytes())
    data[data.find(b"IDAT") + 8] ^= 0xFF
    path.write_bytes(bytes(data))
    return path


def test_verify_images_decodes_what_the_header_check_cannot_see(tmp_path, capsys):
    write_imagefolder(tmp_path / "tree", {"a": 3, "b": 3}, split="train",
                      suffixes=(".png",))
    write_imagefolder(tmp_path / "tree", {"a": 1, "b": 1}, split="test", suffixes=(".png",))
    bad = broken_png(tmp_path / "tree/train/b/img001.png")
    args = ["data=imagefolder", f"data.root={tmp_path / 'tree'}", "data.source.val_fraction=0.34"]
    assert summary_main(*args) == 0
    assert "ready to train (listed images header-checked)" in capsys.readouterr().out
    assert summary_main(*args, "--verify-images", "format=json") == 1
    summary = json.loads(capsys.readouterr().out)
    assert summary["images"] == "full"
    [problem] = summary["problems"]
    assert problem.startswith(f"{bad}: cannot be decoded (")


def test_summary_exits_non_zero_and_lists_what_training_would_fail_on(tmp_path, capsys):
    write_rafdb(tmp_path, [1, 2, 3, 4, 5, 6, 7] * 2, [])
    assert summary_main("data=rafdb", f"data.root={tmp_path}",
                        "data.source.val_fraction=0.5") == 1
    out = capsys.readouterr().out
    assert "training would fail: 1 problem(s)\n  - split 'test' has no samples" in out
    assert re.search(r"\ntotal +7 +7 +0\n", out)


def test_summary_with_problems_counts_but_reports_no_landmarks(tmp_path):
    for split, counts in (("train", {"a": 2, "b": 2}), ("val", {"a": 1, "b": 1}),
                          ("test", {"a": 1, "b": 1})):
        write_imagefolder(tmp_path, counts, split=split)
    empty = tmp_path / "train/a/zero.jpg"
    empty.write_bytes(b"")
    datamodule = FERDataModule(ImageFolder(tmp_path))
    datamodule.landmark_report = {"train": {"detected": 5, "missed": 0, "rate": 1.0}}
    summary = summarize(datamodule)
    assert summary["train"] == {"a": 3, "b": 2}
    assert summary["problems"] == [f"{empty}: is empty (0 bytes)"]
    assert "landmarks" not in summary
    assert f"training would fail: 1 problem(s)\n  - {empty}: is empty" in render(summary)


# -- file reading: encodings, 16-bit images ---------------------------------------------


@pytest.mark.parametrize("encoding", ["utf-16", "utf-8-sig", "utf-16-le"])
def test_csv_in_utf16_or_with_a_bom_is_read(tmp_path, encoding):
    rows = make_rows()
    path = write_fer2013_csv(tmp_path, rows)
    path.write_bytes(path.read_text().encode(encoding))
    source = FER2013Source(tmp_path)
    assert source.split_info("train").labels.tolist() == rows.labels[:14]
    np.testing.assert_array_equal(source.load("test", 6).image, rows.images[27])


def test_latin1_csv_names_the_file_line_and_byte(tmp_path):
    path = write_fer2013_csv(tmp_path, make_rows())
    lines = path.read_bytes().split(b"\n")
    lines[5] = lines[5].replace(b"Training", b"Training\xe9")
    path.write_bytes(b"\n".join(lines))
    with pytest.raises(DatasetError, match=rf"{path}, line 6: byte 0xe9 is not UTF-8 text; "
                                           r"expected UTF-8 \(or UTF-16 with a byte-order "
                                           r"mark\)"):
        FER2013Source(tmp_path).split_info("train")


def test_sixteen_bit_png_is_scaled_not_saturated(tmp_path):
    ramp = (np.arange(16 * 16, dtype=np.uint32).reshape(16, 16) * 257).astype(np.uint16)
    path = tmp_path / "deep.png"
    Image.fromarray(ramp).save(path)
    assert Image.open(path).mode.startswith("I;16")
    rgb = io.read_image(path)
    assert rgb.shape == (16, 16, 3) and rgb.dtype == np.uint8
    np.testing.assert_array_equal(rgb[..., 0], np.arange(256).reshape(16, 16))
    np.testing.assert_array_equal(io.read_image(path, colour="keep"), rgb[..., 0])


@pytest.mark.parametrize("name", ["../x.jpg", "a/../../x.jpg", "/etc/passwd", "", ".",
                                  "C/../.."])
def test_paths_leaving_the_folder_are_refused(tmp_path, name):
    assert io.under_root(tmp_path, name) is None


def test_paths_inside_the_folder_are_kept(tmp_path):
    assert io.under_root(tmp_path, "1/a.jpg") == tmp_path / "1/a.jpg"
    assert io.under_root(tmp_path, "a/../b.jpg") == tmp_path / "b.jpg"


# -- classes training never sees; training and the summary stop on the same lines --------


def test_class_folders_differing_only_in_case_are_a_problem(tmp_path):
    write_imagefolder(tmp_path, {"happy": 4, "sad": 4}, split="train")
    write_imagefolder(tmp_path, {"Happy": 2, "sad": 2}, split="val")
    assert problems_of(ImageFolder(tmp_path)) == [
        "class folders train/happy, val/Happy differ only in case, so they are 2 classes; "
        "rename them to one spelling"]


def test_a_val_or_test_class_that_train_lacks_is_a_problem(tmp_path):
    write_imagefolder(tmp_path, {"happy": 4, "sad": 4}, split="train")
    write_imagefolder(tmp_path, {"happy": 2, "sad": 2, "fear": 2}, split="test")
    assert problems_of(ImageFolder(tmp_path, val_fraction=0.5)) == [
        "class folder(s) test/fear of split 'test' have no counterpart in train/: a class "
        "without training samples cannot be learned; add its training images or remove it"]


def summary_exit_line(capsys, *overrides: str) -> str:
    """What ``python -m fer_lightning.data summary`` prints for a dataset training
    refuses: its problem lines, or the one-line error it exits with."""
    from hydra.core.global_hydra import GlobalHydra

    GlobalHydra.instance().clear()
    try:
        assert summary_main(*overrides) == 1
    except SystemExit as stop:
        return str(stop)
    return capsys.readouterr().out


def rewrite_label_csv(root, old: str, new: str) -> None:
    label_csv = root / "FER2013Valid" / "label.csv"
    label_csv.write_text(label_csv.read_text().replace(old, new, 1))


@pytest.mark.parametrize("case", ["one_class", "case", "bad_label_csv", "no_usage"])
def test_training_and_summary_stop_on_the_same_dataset_error(make_cfg, tmp_path, capsys, case):
    from fixtures_fer import ferplus_names, write_ferplus_folders

    root = tmp_path / "data"
    if case == "one_class":
        write_imagefolder(root, {"happy": 6})
        overrides = ["data=imagefolder", "data.source.split_fractions=[0.5,0.25,0.25]"]
        expected = "1 class (happy); a classifier needs at least two"
    elif case == "case":
        write_imagefolder(root, {"happy": 4, "sad": 4}, split="train")
        write_imagefolder(root, {"Happy": 2, "sad": 2}, split="val")
        overrides = ["data=imagefolder"]
        expected = "differ only in case"
    elif case == "bad_label_csv":
        rows = make_rows()
        votes = [[10, 0, 0, 0, 0, 0, 0, 0, 0, 0]] * len(rows.labels)
        write_ferplus_folders(root, rows, ferplus_names(rows.usage), votes)
        rewrite_label_csv(root, ',"(0, 0, 48, 48)"', "")
        overrides = ["data=ferplus"]
        expected = "FER2013Valid/label.csv, line 1: 11 fields; expected 12"
    else:
        write_fer2013_csv(root, make_rows())
        (root / "fer2013.csv").write_text((root / "fer2013.csv").read_text()
                                          .replace("emotion,pixels,Usage", "emotion,pixels,Use", 1))
        overrides = ["data=fer2013"]
        expected = "Usage"
    overrides = [*overrides, f"data.root={root}"]
    printed = summary_exit_line(capsys, *overrides)
    with pytest.raises(DatasetError) as error:
        train(make_cfg(*overrides, *FAST, tiny=False))
    message = str(error.value)
    assert expected in message and expected in printed
    lines = [line.strip(" -") for line in message.splitlines()]
    assert lines[-1] in printed  # the same problem line, word for word
    assert "Epoch" not in capsys.readouterr().out


def test_only_each_nodes_first_process_checks_the_image_files(tmp_path, monkeypatch):
    write_rafdb(tmp_path, [1, 2, 3, 4, 5, 6, 7] * 2, [1, 2])
    (tmp_path / "Image/aligned/train_00003_aligned.jpg").write_bytes(b"")
    monkeypatch.setenv("LOCAL_RANK", "1")  # a DDP worker: rank 0 reads the headers
    FERDataModule(RafDB(tmp_path, val_fraction=0.5)).check(fit=True)
    monkeypatch.setenv("LOCAL_RANK", "0")
    with pytest.raises(DatasetError, match="train_00003_aligned.jpg .*is empty"):
        FERDataModule(RafDB(tmp_path, val_fraction=0.5)).check(fit=True)


@pytest.mark.parametrize("text", [
    "a,b,c\n1,2,3\n",
    "a,b\r\n1,2\r\n\r\n3,4",  # CRLF, a blank line, no final newline
    "\ufeffh1,h2\nx,\"y,z\"\nq,\"multi\nline\"\nlast,1\n",  # BOM, quoted comma and newline
    "a,b\n1,\"2\"\n",
    "a\rb\rc\n",  # old Mac line ends
    "x, y ,z\n,,\n",
    " \n",
])
def test_csv_rows_equal_the_csv_module(tmp_path, text):
    """The split-at-commas fast path gives the csv module's rows and line numbers, and
    hands over to the csv module from the first quoted or carriage-return line."""
    import csv

    path = tmp_path / "rows.csv"
    path.write_bytes(text.encode("utf-8"))
    with path.open(encoding="utf-8-sig", newline="") as handle:
        reader = csv.reader(handle)
        expected = [(reader.line_num, row) for row in reader]
    assert list(io.csv_rows(path)) == expected
