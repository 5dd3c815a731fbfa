"""FER+ source: every vote rule of every label mode against hand computations, both
on-disk forms, bad input; the soft-target loss; the data summary (function and CLI)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections import Counter

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from fixtures_fer import (
    FERRows,
    ferplus_names,
    make_rows,
    write_fer2013_csv,
    write_ferplus_csv,
    write_ferplus_folders,
    write_kaggle_train_test,
)

from fer_lightning.data.datamodule import FERDataModule
from fer_lightning.data.sources.base import DatasetError
from fer_lightning.data.sources.ferplus import (
    EMPTY_NAME,
    NO_MAJORITY,
    TOO_SPREAD,
    UNKNOWN_OR_NF,
    FERPlusSource,
    votes_to_distribution,
)
from fer_lightning.data.sources.validate import image_problems
from fer_lightning.data.summary import render, summarize
from fer_lightning.losses import SoftTargetCrossEntropy
from fer_lightning.train import train

MODES = ("majority", "probability", "crossentropy", "multi_target")


def onehot(k: int) -> list[float]:
    return [1.0 if i == k else 0.0 for i in range(8)]


def dist(**shares: float) -> list[float]:
    """An 8-class target from {class index name: share}, e.g. dist(c0=6/9, c1=3/9)."""
    target = [0.0] * 8
    for key, share in shares.items():
        target[int(key[1:])] = share
    return target


# Votes (neutral, happiness, surprise, sadness, anger, disgust, fear, contempt, unknown, NF)
# and, per mode, the hand-computed target or skip reason. Rule by rule: outlier votes (<= 1)
# are zeroed first; majority needs top > 50 % of the remaining votes; probability /
# crossentropy take the tied maxima round by round until >= 75 % or 3 emotions, a tie
# reaching unknown/NF stops (dropping it unless it came first), then need > 50 % covered
# and <= 3 emotions; multi_target keeps >= 30 % shares and needs > 50 % kept; a peak at
# unknown / NF is dropped; the two columns go and the rest is renormalised.
CASES = {
    # 1-vote outliers removed: without that, 5 of 10 would not be a majority.
    "outliers": ([5, 1, 1, 1, 1, 1, 0, 0, 0, 0],
                 {"majority": onehot(0), "probability": onehot(0), "multi_target": onehot(0)}),
    "two_emotions": ([6, 3, 1, 0, 0, 0, 0, 0, 0, 0],
                     {"majority": onehot(0), "probability": dist(c0=6 / 9, c1=3 / 9),
                      "multi_target": dist(c0=6 / 9, c1=3 / 9)}),
    # probability stops once 75 % is covered; multi_target's 30 % drops the 2 votes.
    "dominant": ([8, 2, 0, 0, 0, 0, 0, 0, 0, 0],
                 {"majority": onehot(0), "probability": onehot(0), "multi_target": onehot(0)}),
    # tied maxima are taken together; a 4-4 tie is no majority.
    "tie": ([4, 4, 2, 0, 0, 0, 0, 0, 0, 0],
            {"majority": NO_MAJORITY, "probability": dist(c0=0.5, c1=0.5),
             "multi_target": dist(c0=0.5, c1=0.5)}),
    # 3 emotions taken: the loop stops below 75 %, 12 of 18 > 50 % keeps it.
    "three_rounds": ([5, 4, 3, 2, 2, 2, 0, 0, 0, 0],
                     {"majority": NO_MAJORITY, "probability": dist(c0=5 / 12, c1=4 / 12,
                                                                    c2=3 / 12),
                      "multi_target": TOO_SPREAD}),
    # 3 emotions cover 12 of 26 <= 50 %: discarded.
    "half_covered": ([5, 4, 3, 2, 2, 2, 2, 2, 2, 2],
                     {"majority": NO_MAJORITY, "probability": TOO_SPREAD,
                      "multi_target": TOO_SPREAD}),
    # a tie in round 2 brings 4 emotions: more than 3 is discarded.
    "four_emotions": ([3, 3, 2, 2, 0, 0, 0, 0, 0, 0],
                      {"majority": NO_MAJORITY, "probability": TOO_SPREAD,
                       "multi_target": dist(c0=0.5, c1=0.5)}),
    "unknown_top": ([2, 0, 0, 0, 0, 0, 0, 0, 6, 2],
                    {"majority": UNKNOWN_OR_NF, "probability": UNKNOWN_OR_NF,
                     "multi_target": UNKNOWN_OR_NF}),
    # unknown tied with the top emotion: unknown dropped, 4 of 10 <= 50 % -> discarded;
    # multi_target keeps both at 40 %, argmax is neutral, unknown's column goes.
    "unknown_ties_top": ([4, 0, 0, 0, 0, 0, 0, 0, 4, 2],
                         {"majority": NO_MAJORITY, "probability": TOO_SPREAD,
                          "multi_target": onehot(0)}),
    # two emotions tied with unknown: the reference keeps the two (6 of 9 > 50 %).
    "unknown_ties_two": ([3, 3, 0, 0, 0, 0, 0, 0, 3, 0],
                         {"majority": NO_MAJORITY, "probability": dist(c0=0.5, c1=0.5),
                          "multi_target": dist(c0=0.5, c1=0.5)}),
    # unknown tied in round 2: dropped, search stops, 7 of 9 kept.
    "unknown_round_two": ([5, 2, 0, 0, 0, 0, 0, 0, 2, 0],
                          {"majority": onehot(0), "probability": dist(c0=5 / 7, c1=2 / 7),
                           "multi_target": onehot(0)}),
    # unknown in round 2 leaves 5 of 10 (not > 50 %); multi_target keeps unknown's 30 %
    # during the check, then drops its column.
    "unknown_share": ([5, 0, 0, 0, 0, 0, 0, 0, 3, 2],
                      {"majority": NO_MAJORITY, "probability": TOO_SPREAD,
                       "multi_target": onehot(0)}),
    "not_a_face": ([3, 0, 0, 0, 0, 0, 0, 0, 0, 7],
                   {"majority": UNKNOWN_OR_NF, "probability": UNKNOWN_OR_NF,
                    "multi_target": UNKNOWN_OR_NF}),
    # fear and contempt are kept (the reference's literal index test would drop them).
    "contempt": ([2, 0, 0, 0, 0, 0, 0, 8, 0, 0],
                 {"majority": onehot(7), "probability": onehot(7), "multi_target": onehot(7)}),
    "fear": ([0, 0, 0, 0, 0, 0, 7, 3, 0, 0],
             {"majority": onehot(6), "probability": dist(c6=0.7, c7=0.3),
              "multi_target": dist(c6=0.7, c7=0.3)}),
    # every vote an outlier: nothing left.
    "all_single_votes": ([1] * 10,
                         {"majority": NO_MAJORITY, "probability": TOO_SPREAD,
                          "multi_target": TOO_SPREAD}),
}


def expected(case: str, mode: str) -> list[float] | str:
    """crossentropy processes votes exactly like probability (they differ in the loss)."""
    return CASES[case][1]["probability" if mode == "crossentropy" else mode]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("case", list(CASES))
def test_every_vote_rule(case, mode):
    target, reason = votes_to_distribution(CASES[case][0], mode)
    want = expected(case, mode)
    if isinstance(want, str):
        assert target is None and reason == want
    else:
        assert reason == "" and target.dtype == np.float32
        np.testing.assert_allclose(target, want, atol=1e-6)


# -- a fixture holding every case: Training = the cases + one empty name ----------------

VAL_VOTES = [[0, 9, 1, 0, 0, 0, 0, 0, 0, 0], [4, 4, 2, 0, 0, 0, 0, 0, 0, 0],
             [0, 0, 0, 0, 0, 4, 0, 0, 6, 0], [0, 0, 0, 0, 0, 0, 0, 0, 0, 0]]
TEST_VOTES = [[0, 0, 3, 7, 0, 0, 0, 0, 0, 0], [0, 0, 0, 0, 0, 0, 0, 0, 0, 0]]
N_CASES = len(CASES)


def ferplus_fixture() -> tuple[FERRows, list[str], list[list[int]]]:
    """Rows: the cases (Training), an empty-named Training row, then val and test rows;
    the val and test rows with all-zero votes have empty names."""
    rows = make_rows({"Training": N_CASES + 1, "PublicTest": 4, "PrivateTest": 2}, seed=5)
    votes = [v for v, _ in CASES.values()] + [[0, 10, 0, 0, 0, 0, 0, 0, 0, 0]] \
        + VAL_VOTES + TEST_VOTES
    names = ferplus_names(rows.usage, empty={N_CASES, N_CASES + 4, N_CASES + 6})
    return rows, names, votes


def check_train_split(source: FERPlusSource, mode: str, rows: FERRows,
                      empty_counted: bool) -> None:
    kept = [(i, case) for i, case in enumerate(CASES) if not isinstance(expected(case, mode),
                                                                        str)]
    reasons = Counter(expected(case, mode) for case in CASES
                      if isinstance(expected(case, mode), str))
    if empty_counted:
        reasons[EMPTY_NAME] += 1
    info = source.split_info("train")
    assert info.skipped == dict(reasons)
    assert len(info.labels) == len(kept)
    for index, (row, case) in enumerate(kept):
        sample = source.load("train", index)
        np.testing.assert_allclose(sample.target, expected(case, mode), atol=1e-6)
        assert sample.label == int(np.argmax(expected(case, mode))) == info.labels[index]
        np.testing.assert_array_equal(sample.image, rows.images[row])


def check_eval_splits(source: FERPlusSource, empty_counted: bool) -> None:
    """val and test use majority whatever the training mode (as the reference does)."""
    val = source.split_info("val")
    assert val.labels.tolist() == [1]
    assert val.skipped == {NO_MAJORITY: 1, UNKNOWN_OR_NF: 1,
                           **({EMPTY_NAME: 1} if empty_counted else {})}
    test = source.split_info("test")
    assert test.labels.tolist() == [3]
    np.testing.assert_array_equal(source.load("test", 0).target, onehot(3))
    assert test.skipped == ({EMPTY_NAME: 1} if empty_counted else {})


@pytest.mark.parametrize("mode", MODES)
def test_csv_pair_targets_per_sample(tmp_path, mode):
    rows, names, votes = ferplus_fixture()
    write_ferplus_csv(tmp_path, rows, names, votes)
    source = FERPlusSource(tmp_path, label_mode=mode)
    assert source.layout == "csv" and len(source.class_names) == 8
    check_train_split(source, mode, rows, empty_counted=True)
    check_eval_splits(source, empty_counted=True)


@pytest.mark.parametrize("mode", ["majority", "multi_target"])
def test_folder_release_targets_per_sample(tmp_path, mode):
    rows, names, votes = ferplus_fixture()
    write_ferplus_folders(tmp_path, rows, names, votes)
    source = FERPlusSource(tmp_path, label_mode=mode)
    assert source.layout == "folders"
    check_train_split(source, mode, rows, empty_counted=False)
    check_eval_splits(source, empty_counted=False)


def test_eval_label_mode_and_csv_pair_preferred(tmp_path):
    rows, names, votes = ferplus_fixture()
    write_ferplus_folders(tmp_path, rows, names, votes)
    write_ferplus_csv(tmp_path, rows, names, votes)
    assert FERPlusSource(tmp_path).layout == "csv"
    assert FERPlusSource(tmp_path, layout="folders").layout == "folders"
    soft_eval = FERPlusSource(tmp_path, eval_label_mode="crossentropy")
    assert soft_eval.split_info("val").labels.tolist() == [1, 0]  # the 4-4 tie is kept
    np.testing.assert_allclose(soft_eval.load("val", 1).target, dist(c0=0.5, c1=0.5))


def test_fer2013_csv_elsewhere(tmp_path):
    rows, names, votes = ferplus_fixture()
    write_ferplus_csv(tmp_path / "plus", rows, names, votes)
    (tmp_path / "plus" / "fer2013.csv").rename(tmp_path / "pixels.csv")
    source = FERPlusSource(tmp_path / "plus", fer2013_csv=tmp_path / "pixels.csv")
    np.testing.assert_array_equal(source.load("train", 0).image, rows.images[0])


# -- bad input -------------------------------------------------------------------------


def test_missing_files_name_path_and_layout(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"(?s)is not a directory.*FER2013Train"):
        FERPlusSource(tmp_path / "nowhere")
    rows, names, votes = ferplus_fixture()
    write_ferplus_csv(tmp_path, rows, names, votes)
    (tmp_path / "fer2013.csv").unlink()
    with pytest.raises(FileNotFoundError, match=rf"(?s){tmp_path / 'fer2013.csv'} not found.*"
                                                r"fer2013new.csv"):
        FERPlusSource(tmp_path)
    with pytest.raises(ValueError, match="label_mode='soft'; allowed"):
        FERPlusSource(tmp_path, label_mode="soft")


def rewrite_line(path, line: int, old: str, new: str) -> None:
    lines = path.read_text().splitlines()
    assert old in lines[line - 1]
    lines[line - 1] = lines[line - 1].replace(old, new, 1)
    path.write_text("\n".join(lines) + "\n")


@pytest.mark.parametrize("line, old, new, message", [
    (4, ",0,0,0,0\n", ",0,x,0,0\n", "line 4: contempt votes 'x'; expected a non-negative"),
    (3, ",6,3,1,", ",6,-3,1,", "line 3: happiness votes '-3'"),
    (5, "Training", "PublicTest", r"line 5: Usage 'PublicTest' but .*fer2013.csv line 5 "
                                  r"says 'Training'"),
    (6, ",0,0\n", "\n", "line 6: 10 fields; expected 12"),
])
def test_bad_votes_name_file_and_line(tmp_path, line, old, new, message):
    rows, names, votes = ferplus_fixture()
    _, new_csv = write_ferplus_csv(tmp_path, rows, names, votes)
    text = new_csv.read_text().splitlines(keepends=True)
    assert old in text[line - 1]
    text[line - 1] = text[line - 1].replace(old, new, 1)
    new_csv.write_text("".join(text))
    with pytest.raises(ValueError, match=rf"fer2013new.csv, {message}"):
        FERPlusSource(tmp_path).split_info("train")


def test_row_count_mismatch_and_missing_column(tmp_path):
    rows, names, votes = ferplus_fixture()
    _, new_csv = write_ferplus_csv(tmp_path, rows, names, votes)
    new_csv.write_text("".join(new_csv.read_text().splitlines(keepends=True)[:-1]))
    with pytest.raises(ValueError, match=r"fer2013new.csv has 22 data rows but .*fer2013.csv "
                                         r"has 23"):
        FERPlusSource(tmp_path).split_info("train")
    write_ferplus_csv(tmp_path, rows, names, votes)
    new_csv.write_text(new_csv.read_text().replace(",NF", ",nonface", 1))
    with pytest.raises(ValueError, match=r"fer2013new.csv, line 1: .*lacks column\(s\) \['NF'\]"):
        FERPlusSource(tmp_path).split_info("val")


def test_folder_release_bad_files(tmp_path):
    rows, names, votes = ferplus_fixture()
    write_ferplus_folders(tmp_path, rows, names, votes)
    (tmp_path / "FER2013Train" / "fer0000002.png").unlink()
    with pytest.raises(FileNotFoundError, match=r"FER2013Train/label.csv, line 3: image "
                                                r"'fer0000002.png' is listed but"):
        FERPlusSource(tmp_path).split_info("train")
    png = tmp_path / "FER2013Test" / f"fer{N_CASES + 5:07d}.png"
    png.write_bytes(png.read_bytes()[:60])
    source = FERPlusSource(tmp_path)
    with pytest.raises(ValueError, match=rf"cannot decode image file {png} \(listed in "
                                         r".*FER2013Test/label.csv, line 1\): "):
        source.load("test", 0)
    label_csv = tmp_path / "FER2013Valid" / "label.csv"
    label_csv.write_text(label_csv.read_text().replace(",0,0\n", "\n", 1))
    with pytest.raises(ValueError, match="FER2013Valid/label.csv, line 1: 10 fields; expected "
                                         "12 \\(image name, face box"):
        FERPlusSource(tmp_path).split_info("val")


# Rows verbatim from microsoft/FERPlus data/FER2013Valid/label.csv (names not contiguous
# once rows without a name are left out): name, quoted box, 10 votes.
RELEASE_ROWS = ('fer0028638.png,"(0, 0, 48, 48)",4,0,0,0,1,0,0,4,1,0\n'
                'fer0028641.png,"(0, 0, 48, 48)",5,5,0,0,0,0,0,0,0,0\n'
                'fer0028642.png,"(0, 0, 48, 48)",0,10,0,0,0,0,0,0,0,0\n'
                'fer0028645.png,"(0, 0, 48, 48)",10,0,0,0,0,0,0,0,0,0\n')


def release_copy(root, label_text: str = RELEASE_ROWS, size: int = 48):
    """A folder release whose three label.csv files hold ``label_text`` as shipped, with
    a ``size`` x ``size`` grey PNG (pixel value = row number) for every listed name."""
    from PIL import Image

    for folder in ("FER2013Train", "FER2013Valid", "FER2013Test"):
        (root / folder).mkdir(parents=True)
        (root / folder / "label.csv").write_text(label_text)
        for row, line in enumerate(RELEASE_ROWS.splitlines()):
            image = np.full((size, size), 10 * row, np.uint8)
            Image.fromarray(image).save(root / folder / line.split(",")[0])
    return root


def test_folder_release_read_as_shipped(tmp_path):
    source = FERPlusSource(release_copy(tmp_path))
    assert source.layout == "folders"
    info = source.split_info("val")
    assert info.labels.tolist() == [1, 0]  # 10 happiness votes; 10 neutral votes
    assert info.skipped == {NO_MAJORITY: 2}  # 4-4 and 5-5 ties
    sample = source.load("val", 0)
    assert sample.image.shape == (48, 48) and int(sample.image[0, 0]) == 20
    listed = source.image_files("val")
    assert [image.path.name for image in listed] == ["fer0028642.png", "fer0028645.png"]
    assert listed[0].box == (0, 0, 48, 48) and "label.csv, line 3" in listed[0].where


def test_folder_release_header_line_is_passed_over(tmp_path):
    header = 'Image name,Face box,neutral,happiness,surprise,sadness,anger,disgust,fear,' \
             'contempt,unknown,NF\n'
    source = FERPlusSource(release_copy(tmp_path, header + RELEASE_ROWS))
    assert source.split_info("train").labels.tolist() == [1, 0]
    assert "line 4" in source.image_files("train")[0].where


def test_folder_release_box_cropped_and_checked_against_the_image(tmp_path):
    rows = RELEASE_ROWS.replace('fer0028642.png,"(0, 0, 48, 48)"',
                                'fer0028642.png,"(8, 4, 40, 44)"')
    source = FERPlusSource(release_copy(tmp_path, rows))
    assert source.load("val", 0).image.shape == (40, 32)
    assert source.image_files("val")[0].box == (8, 4, 32, 40)
    resized = tmp_path / "resized"
    source = FERPlusSource(release_copy(resized, size=40))
    problems = image_problems(source, ["val"])
    assert len(problems) == 2 and "label.csv, line 3): face box (left, top, right, bottom) " \
        "= (0, 0, 48, 48) does not lie inside the 40x40 image" in problems[0]
    with pytest.raises(DatasetError, match=r"fer0028642.png \(listed in .*label.csv, line 3\): "
                                           r"face box .* does not lie inside the 40x40 image"):
        source.load("val", 0)


@pytest.mark.parametrize("box, message", [
    ("0, 0, 48, 48", "face box '0, 0, 48, 48'; expected four integers"),
    ("(0, 0, 48)", "face box '\\(0, 0, 48\\)'; expected four integers"),
    ("(0, 0, a, 48)", "face box .* expected four integers"),
    ("(10, 0, 10, 48)", "face box '\\(10, 0, 10, 48\\)' is empty or negative"),
    ("(-1, 0, 48, 48)", "face box .* is empty or negative"),
])
def test_folder_release_bad_box_names_file_and_line(tmp_path, box, message):
    rows = RELEASE_ROWS.replace('fer0028641.png,"(0, 0, 48, 48)"', f'fer0028641.png,"{box}"')
    with pytest.raises(ValueError, match=rf"FER2013Train/label.csv, line 2: {message}"):
        FERPlusSource(release_copy(tmp_path, rows)).split_info("train")


def test_folder_release_without_the_box_field_is_refused(tmp_path):
    rows = "".join(line.replace(',"(0, 0, 48, 48)"', "") + "\n"
                   for line in RELEASE_ROWS.splitlines())
    with pytest.raises(ValueError, match=r"label.csv, line 1: 11 fields; expected 12"):
        FERPlusSource(release_copy(tmp_path, rows)).split_info("train")


# -- the soft-target loss ----------------------------------------------------------------


LOGITS = torch.tensor([[2.0, 0.5, -1.0], [0.0, 1.0, 3.0]])
TARGET = torch.tensor([[0.75, 0.25, 0.0], [0.0, 0.5, 0.5]])


def test_soft_ce_crossentropy_and_majority_by_hand():
    log_p = torch.log_softmax(LOGITS, dim=1)
    by_hand = -(0.75 * log_p[0, 0] + 0.25 * log_p[0, 1] + 0.5 * log_p[1, 1]
                + 0.5 * log_p[1, 2]) / 2
    assert torch.isclose(SoftTargetCrossEntropy("crossentropy")(LOGITS, TARGET), by_hand)
    hard = F.one_hot(torch.tensor([0, 2]), 3).float()
    assert torch.isclose(SoftTargetCrossEntropy("majority")(LOGITS, hard),
                         F.cross_entropy(LOGITS, torch.tensor([0, 2])))


def test_soft_ce_multi_target_by_hand():
    p = torch.softmax(LOGITS, dim=1)
    eps = 0.001
    t0 = torch.tensor([1.0, 1.0, eps])  # emotions in the target set weigh 1 (1 - eps + eps)
    t1 = torch.tensor([eps, 1.0, 1.0])
    by_hand = -(torch.log((t0 * p[0]).max()) + torch.log((t1 * p[1]).max())) / 2
    loss = SoftTargetCrossEntropy("multi_target", epsilon=eps)(LOGITS, TARGET)
    assert torch.isclose(loss, by_hand)


def test_soft_ce_probability_draws_from_the_target():
    torch.manual_seed(0)
    logits = LOGITS[1:].expand(4000, 3)
    target = TARGET[1:].expand(4000, 3)
    loss = SoftTargetCrossEntropy("probability")(logits, target)
    log_p = torch.log_softmax(LOGITS[1], dim=0)
    expected_loss = -(0.5 * log_p[1] + 0.5 * log_p[2])  # its expectation is soft CE
    assert abs(loss.item() - expected_loss.item()) < 0.05
    hard = F.one_hot(torch.tensor([0, 2]), 3).float()
    assert torch.isclose(SoftTargetCrossEntropy("probability")(LOGITS, hard),
                         F.cross_entropy(LOGITS, torch.tensor([0, 2])))


def test_soft_ce_rejects_bad_config_and_shapes():
    with pytest.raises(ValueError, match="loss.mode='soft'"):
        SoftTargetCrossEntropy("soft")
    with pytest.raises(ValueError, match=r"target of shape \(2,\) does not match"):
        SoftTargetCrossEntropy()(LOGITS, torch.tensor([0, 1]))


# -- training and the summary ------------------------------------------------------------


SMALL_RUN = ("data.batch_size=4", "trainer=cpu", "trainer.fast_dev_run=true", "logger=none",
             "callbacks.progress_bar=null", "callbacks.model_summary=null")


def test_fast_dev_run_ferplus_soft_ce(make_cfg, tmp_path):
    rows, names, votes = ferplus_fixture()
    write_ferplus_csv(tmp_path / "plus", rows, names, votes)
    cfg = make_cfg("data=ferplus", f"data.root={tmp_path / 'plus'}", "loss=soft_ce",
                   "data.source.label_mode=crossentropy", *SMALL_RUN, tiny=False)
    assert cfg.loss.mode == "crossentropy"
    results = train(cfg)
    assert len(results["test"]["confusion_matrix"]) == 8


def test_soft_ce_without_soft_targets_is_an_error(make_cfg):
    with pytest.raises(ValueError, match="provides none"):
        train(make_cfg("loss=soft_ce", "trainer.fast_dev_run=true", "logger=none"))


def datamodule_of(source, report=None) -> FERDataModule:
    """A datamodule over ``source`` whose landmark report is ``report``."""
    datamodule = FERDataModule(source)
    datamodule.landmark_report = report or {}
    return datamodule


def test_summary_counts_skips_and_landmark_hook(tmp_path):
    rows, names, votes = ferplus_fixture()
    write_ferplus_csv(tmp_path, rows, names, votes)
    summary = summarize(datamodule_of(FERPlusSource(tmp_path),
                                    report={"train": {"found": 3, "total": 4}}))
    assert list(summary) == ["train", "val", "test", "skipped", "warnings", "landmarks",
                             "source"]
    assert summary["warnings"] == ["no training samples of class(es) happiness, surprise, "
                                   "sadness, anger, disgust"]
    assert summary["val"] == {"neutral": 0, "happiness": 1, "surprise": 0, "sadness": 0,
                              "anger": 0, "disgust": 0, "fear": 0, "contempt": 0}
    assert summary["train"]["neutral"] == 4 and summary["train"]["contempt"] == 1
    assert summary["skipped"]["train"] == {EMPTY_NAME: 1, NO_MAJORITY: 8, UNKNOWN_OR_NF: 2}
    assert summary["landmarks"] == {"train": {"found": 3, "total": 4}}
    text = render(summary)
    assert "skipped train: 11 (empty image name: 1, no clear majority: 8, unknown or not a " \
           "face: 2)" in text
    assert json.loads(render(summary, "json")) == summary


def test_summary_text_states_the_landmark_detection_rate(tmp_path):
    rows, names, votes = ferplus_fixture()
    write_ferplus_csv(tmp_path, rows, names, votes)
    report = {"train": {"detected": 30, "missed": 10, "rate": 0.75, "dropped": 0}}
    text = render(summarize(datamodule_of(FERPlusSource(tmp_path), report=report)))
    assert "landmarks train: 30 / 40 faces found (75.0 %), 0 dropped" in text


def test_summary_reports_unavailable_split(tmp_path):
    from fer_lightning.data.sources.fer2013 import FER2013Source

    write_kaggle_train_test(tmp_path, make_rows())
    summary = summarize(datamodule_of(FER2013Source(tmp_path, holdout_fraction=0.5)))
    assert sum(summary["train"].values()) == 7 and sum(summary["val"].values()) == 7
    assert "test" not in summary and "no labels" in summary["unavailable"]["test"]


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "fer_lightning.data", "summary", *args],
                          capture_output=True, text=True, timeout=120)


@pytest.mark.slow
def test_summary_cli_json_in_a_subprocess(tmp_path):
    write_fer2013_csv(tmp_path, make_rows())
    result = run_cli("data=fer2013", f"data.root={tmp_path}", "format=json")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["train"] == {name: 2 for name in ["angry", "disgust", "fear", "happy", "sad",
                                                     "surprise", "neutral"]}
    assert summary["skipped"] == {"train": {}, "val": {}, "test": {}}


def test_summary_cli_text_and_errors(tmp_path, capsys):
    from hydra.core.global_hydra import GlobalHydra

    from fer_lightning.data.__main__ import main

    write_fer2013_csv(tmp_path, make_rows())
    GlobalHydra.instance().clear()
    assert main(["summary", "data=fer2013", f"data.root={tmp_path}"]) == 0
    assert re.search(r"\ntotal +14 +7 +7\n", capsys.readouterr().out)
    GlobalHydra.instance().clear()
    with pytest.raises(SystemExit, match=f"error: FER2013 root {tmp_path / 'none'} is not a "
                                         f"directory"):
        main(["summary", "data=fer2013", f"data.root={tmp_path / 'none'}"])


def test_soft_label_mode_with_a_hard_label_loss_fails_before_training(make_cfg, tmp_path):
    from fer_lightning.config import ConfigError, check_config

    with pytest.raises(ConfigError, match="label_mode=crossentropy .* add loss=soft_ce"):
        check_config(make_cfg("data=ferplus", f"data.root={tmp_path}", "loss=ce",
                              "data.source.label_mode=crossentropy", tiny=False))


def test_folder_release_names_leaving_the_folder_are_skipped_and_counted(tmp_path):
    rows, names, votes = ferplus_fixture()
    write_ferplus_folders(tmp_path, rows, names, votes)
    label_csv = tmp_path / "FER2013Test" / "label.csv"
    box = '"(0, 0, 48, 48)"'
    label_csv.write_text(label_csv.read_text() + f"../FER2013Train/fer0000000.png,{box},"
                         f"0,0,10,0,0,0,0,0,0,0\n._fer.png,{box},0,0,10,0,0,0,0,0,0,0\n")
    info = FERPlusSource(tmp_path).split_info("test")
    assert info.labels.tolist() == [3]
    assert info.skipped == {"path_outside_root": 1, "macos_resource_file": 1}
