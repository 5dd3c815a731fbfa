"""FER2013 source: the three csv forms, split mappings, hold-out, bad input, training."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from fixtures_fer import (
    make_rows,
    pixel_string,
    write_fer2013_csv,
    write_icml_csv,
    write_kaggle_train_test,
)

from fer_lightning.data.sources import fer2013
from fer_lightning.data.sources.fer2013 import (
    CLASS_NAMES,
    FER2013Source,
    SplitUnavailableError,
    read_fer_csv,
)
from fer_lightning.train import train

ROWS = make_rows()  # Training 14, PublicTest 7, PrivateTest 7; labels 0..6 cycling
TRAIN_ROWS = np.arange(14)
SMALL_RUN = ("data.batch_size=4", "trainer=cpu", "trainer.fast_dev_run=true", "logger=none",
             "callbacks.progress_bar=null", "callbacks.model_summary=null")


def check_split(source: FER2013Source, split: str, rows: np.ndarray) -> None:
    """Every sample of ``split`` is the fixture row it should be, pixel for pixel."""
    info = source.split_info(split)
    np.testing.assert_array_equal(info.labels, np.asarray(ROWS.labels)[rows])
    assert info.skipped == {}
    for index, row in enumerate(rows):
        sample = source.load(split, index)
        assert sample.image.dtype == np.uint8 and sample.image.shape == (48, 48)
        np.testing.assert_array_equal(sample.image, ROWS.images[row])
        assert sample.label == ROWS.labels[row] and sample.target is None


@pytest.mark.parametrize("writer", [write_fer2013_csv, write_icml_csv])
def test_usage_forms_map_splits_by_default(tmp_path, writer):
    writer(tmp_path, ROWS)
    source = FER2013Source(tmp_path)
    assert source.class_names == ["angry", "disgust", "fear", "happy", "sad", "surprise",
                                  "neutral"]
    check_split(source, "train", TRAIN_ROWS)
    check_split(source, "val", np.arange(14, 21))
    check_split(source, "test", np.arange(21, 28))


def test_split_mapping_is_configurable(tmp_path):
    write_fer2013_csv(tmp_path, ROWS)
    swapped = FER2013Source(tmp_path, splits={"train": "Training", "val": "PrivateTest",
                                              "test": "PublicTest"})
    check_split(swapped, "val", np.arange(21, 28))
    check_split(swapped, "test", np.arange(14, 21))
    merged = FER2013Source(tmp_path, splits={"train": ["Training", "PublicTest"],
                                             "val": "holdout", "test": "PrivateTest"},
                           holdout_fraction=0.5)
    rows = [*merged.split_indices("train"), *merged.split_indices("val")]
    assert sorted(rows) == list(range(21))
    assert np.bincount(merged.split_info("val").labels).tolist() == [1] * 7  # 1 of 3 per class
    with pytest.raises(ValueError, match="'PublicTest' is mapped to both train and test"):
        FER2013Source(tmp_path, splits={"train": ["Training", "PublicTest"],
                                        "val": "PrivateTest", "test": "PublicTest"})
    with pytest.raises(ValueError, match="splits.val='Public'.*Training"):
        FER2013Source(tmp_path, splits={"train": "Training", "val": "Public",
                                        "test": "PrivateTest"})


def test_val_holdout_is_stratified_and_seeded(tmp_path):
    write_fer2013_csv(tmp_path, ROWS)
    source = FER2013Source(tmp_path, splits={"train": "Training", "val": "holdout",
                                             "test": "PrivateTest"}, holdout_fraction=0.5)
    train_rows, val_rows = source.split_indices("train"), source.split_indices("val")
    assert sorted([*train_rows, *val_rows]) == list(range(14))
    assert np.bincount(source.split_info("val").labels, minlength=7).tolist() == [1] * 7
    again = FER2013Source(tmp_path, splits={"train": "Training", "val": "holdout",
                                            "test": "PrivateTest"}, holdout_fraction=0.5)
    np.testing.assert_array_equal(again.split_indices("val"), val_rows)


def test_train_csv_form_holds_out_val_and_has_no_test(tmp_path):
    write_kaggle_train_test(tmp_path, ROWS)
    source = FER2013Source(tmp_path, holdout_fraction=0.5, seed=3)
    train_rows, val_rows = source.split_indices("train"), source.split_indices("val")
    assert sorted([*train_rows, *val_rows]) == list(range(14))
    check_split(source, "val", val_rows)
    check_split(source, "train", train_rows)
    assert np.bincount(source.split_info("val").labels, minlength=7).tolist() == [1] * 7
    with pytest.raises(SplitUnavailableError, match="test.csv has no labels"):
        source.split_info("test")
    assert "hold-out" in source.describe()


def test_precedence_file_option_and_torchvision_layout(tmp_path):
    shifted = make_rows(seed=1)
    write_icml_csv(tmp_path / "fer2013", shifted)
    assert FER2013Source(tmp_path).path == tmp_path / "fer2013" / "icml_face_data.csv"
    write_fer2013_csv(tmp_path / "fer2013", ROWS)
    source = FER2013Source(tmp_path)
    assert source.path.name == "fer2013.csv"
    np.testing.assert_array_equal(source.load("train", 0).image, ROWS.images[0])
    icml = FER2013Source(tmp_path, file="icml_face_data.csv")
    np.testing.assert_array_equal(icml.load("train", 0).image, shifted.images[0])


def test_chunked_parse_matches_rows(tmp_path, monkeypatch):
    monkeypatch.setattr(fer2013, "CHUNK_ROWS", 3)
    table = read_fer_csv(write_fer2013_csv(tmp_path, ROWS))
    np.testing.assert_array_equal(table.images, ROWS.images)
    assert table.images.dtype == np.uint8
    assert table.lines.tolist() == list(range(2, 30))


def test_digit_parse_reads_the_published_form_and_leaves_the_rest_to_fromstring():
    """parse_digits takes single-space rows of one- to three-digit values (every value
    0..255 appears); any other spelling of the same numbers gives None, and parse_pixels
    then reads it through np.fromstring to the same images."""
    images = np.arange(2 * 48 * 48).reshape(2, 48, 48) % 256
    texts = [pixel_string(image) for image in images]
    np.testing.assert_array_equal(fer2013.parse_digits(texts), images)
    respelled = {"double space": texts[0].replace(" ", "  ", 1),
                 "leading space": " " + texts[0], "trailing space": texts[0] + " ",
                 "tab": texts[0].replace(" ", "\t", 1), "plus sign": "+" + texts[0],
                 "zero-padded": "0" + texts[0].replace(" 255 ", " 0255 ", 1)}
    for spelling, text in respelled.items():
        assert fer2013.parse_digits([text, texts[1]]) is None, spelling
        np.testing.assert_array_equal(
            fer2013.parse_pixels(Path("x.csv"), [2, 3], [text, texts[1]]), images)
    long_then_short = [texts[0] + " 7", texts[1].split(" ", 1)[1]]
    assert fer2013.parse_digits(long_then_short) is None, "row lengths are checked per row"
    assert fer2013.parse_digits([texts[0].replace(" 255 ", " 256 ", 1), texts[1]]) is None
    assert fer2013.parse_digits(["é" + texts[0][1:], texts[1]]) is None


@pytest.mark.parametrize("threads", [1, 3])
def test_chunks_parsed_on_threads_come_back_in_file_order(tmp_path, monkeypatch, threads):
    monkeypatch.setattr(fer2013, "CHUNK_ROWS", 2)
    monkeypatch.setattr(fer2013, "parse_threads", lambda: threads)
    table = read_fer_csv(write_fer2013_csv(tmp_path, ROWS))
    np.testing.assert_array_equal(table.images, ROWS.images)
    assert table.lines.tolist() == list(range(2, 30))


def test_a_bad_pixel_string_is_reported_before_a_later_bad_row(tmp_path, monkeypatch):
    """The pixel chunk of line 4 may still be parsing on a thread when line 8's field
    count is read; the error is still the first one in the file."""
    monkeypatch.setattr(fer2013, "CHUNK_ROWS", 2)
    monkeypatch.setattr(fer2013, "parse_threads", lambda: 2)
    path = corrupt(tmp_path, {2: (1, pixel_string(ROWS.images[2])[:-4]),
                              6: (2, "PrivateTest,extra")})
    with pytest.raises(ValueError, match="line 4: pixels hold 2303 values"):
        read_fer_csv(path)


# -- bad input: every error names the file and the line --------------------------------


def test_missing_root_or_csv_names_path_and_layout(tmp_path):
    with pytest.raises(FileNotFoundError,
                       match=f"(?s){tmp_path / 'nowhere'} is not a directory.*fer2013.csv"):
        FER2013Source(tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError,
                       match=f"(?s)no FER2013 csv in {tmp_path}.*icml_face_data"):
        FER2013Source(tmp_path)
    write_fer2013_csv(tmp_path, ROWS)
    with pytest.raises(FileNotFoundError, match="looked for train.csv"):
        FER2013Source(tmp_path, file="train.csv")


def corrupt(tmp_path, changes: dict[int, tuple[int, str]]):
    """fer2013.csv with field ``column`` of data row ``row`` replaced, per change."""
    path = write_fer2013_csv(tmp_path, ROWS)
    lines = path.read_text().splitlines()
    for row, (column, value) in changes.items():
        fields = lines[row + 1].split(",")
        fields[column] = value
        lines[row + 1] = ",".join(fields)
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.mark.parametrize("row, column, value, message", [
    (5, 1, pixel_string(ROWS.images[5])[:-4], "pixels hold 2303 values; expected 2304"),
    (20, 1, pixel_string(ROWS.images[20]) + " 7", "pixels hold 2305 values"),
    (9, 1, pixel_string(ROWS.images[9]).replace(" ", " 256 ", 1)[:-4] , "is 256; expected 0..255"),
    (3, 1, "12 x" + pixel_string(ROWS.images[3])[4:], "not space-separated integers"),
    (27, 1, "", "pixels hold 0 values"),
    (7, 0, "7", "emotion '7' is not a class index; expected an integer in 0..6"),
    (2, 0, "-1", "emotion '-1'"),
    (4, 0, "happy", "emotion 'happy'"),
    (11, 2, "Train", "Usage 'Train'; expected one of"),
    (12, 2, "PrivateTest,extra", "4 fields; expected 3"),
])
def test_bad_row_names_file_and_line(tmp_path, monkeypatch, row, column, value, message):
    monkeypatch.setattr(fer2013, "CHUNK_ROWS", 4)
    path = corrupt(tmp_path, {row: (column, value)})
    with pytest.raises(ValueError, match=rf"fer2013.csv, line {row + 2}: .*{message}"
                       .replace("(", r"\(").replace(")", r"\)")) as error:
        FER2013Source(tmp_path).split_info("train")
    assert str(path) in str(error.value)


def test_compensating_row_lengths_are_caught(tmp_path):
    """2305 values in one row and 2303 in the next add up right; still an error."""
    path = corrupt(tmp_path, {1: (1, pixel_string(ROWS.images[1]) + " 1"),
                              2: (1, pixel_string(ROWS.images[2]).split(" ", 1)[1])})
    with pytest.raises(ValueError, match="line 3: pixels hold 2305 values"):
        read_fer_csv(path)


def test_missing_columns_named(tmp_path):
    path = write_fer2013_csv(tmp_path, ROWS)
    text = path.read_text().replace("emotion,pixels,Usage", "label,pixels,Usage", 1)
    path.write_text(text)
    with pytest.raises(ValueError, match=r"fer2013.csv, line 1: .*lacks column\(s\) \['emotion'\]"):
        FER2013Source(tmp_path).split_info("train")


def test_fast_dev_run_on_fer2013(make_cfg, tmp_path):
    write_fer2013_csv(tmp_path / "fer", ROWS)
    results = train(make_cfg("data=fer2013", f"data.root={tmp_path / 'fer'}", *SMALL_RUN,
                             tiny=False))
    assert len(results["test"]["confusion_matrix"]) == len(CLASS_NAMES)


def test_train_csv_form_trains_validates_and_says_there_is_no_test(make_cfg, tmp_path, caplog):
    write_kaggle_train_test(tmp_path / "kaggle", ROWS)
    results = train(make_cfg("data=fer2013", f"data.root={tmp_path / 'kaggle'}",
                             "data.source.file=train.csv", "data.source.holdout_fraction=0.5",
                             *SMALL_RUN, tiny=False))
    assert "val" in results and "test" not in results
    assert "test.csv has no labels" in caplog.text


@pytest.mark.parametrize("writer", [write_fer2013_csv, write_icml_csv])
def test_usage_form_without_its_usage_column_is_an_error_not_all_train(tmp_path, writer):
    path = writer(tmp_path, ROWS)
    lines = path.read_text().splitlines()
    header = [name.strip() for name in lines[0].split(",")]
    keep = [i for i, name in enumerate(header) if name != "Usage"]
    rows = [",".join(line.split(",")[i] for i in keep) for line in lines]
    path.write_text("\n".join(rows) + "\n")
    with pytest.raises(ValueError, match=rf"{path.name}, line 1: header .* has no Usage "
                                         r"column, which assigns rows to train/val/test.*"
                                         r"name it train.csv"):
        FER2013Source(tmp_path).split_info("train")


def test_blank_lines_hold_no_rows(tmp_path):
    path = write_fer2013_csv(tmp_path, ROWS)
    path.write_text(path.read_text() + "\n\n")
    assert len(FER2013Source(tmp_path).split_info("test").labels) == 7
