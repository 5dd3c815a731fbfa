"""`python -m fer_lightning.report` on fabricated run folders with known numbers."""

from __future__ import annotations

import csv
import json
import math
import os

import numpy as np
import pytest
from scipy import stats

from fer_lightning.report.__main__ import main
from fer_lightning.report.build import build_report
from fer_lightning.report.discover import ReportError
from fer_lightning.report.stats import paired_power, pairs_needed
from tests.fixtures_runs import CLASSES, make_run

SEEDS = (1, 2, 3)
SEED_SHIFT = {1: 0.0, 2: 0.01, 3: -0.005}       # shared by every cell of a seed
LANDMARK_GAIN = {1: 0.0, 2: 0.006, 3: -0.003}   # landmarks effect = 0.03 + this
HEAD_GAIN = {1: 0.002, 2: -0.002, 3: 0.003}     # head effect = -0.01 + this


def grid_acc(landmarks: str, head: str, seed: int) -> float:
    gt, fc = landmarks == "groundtruth", head == "fc"
    return (0.60 + SEED_SHIFT[seed] + gt * (0.03 + LANDMARK_GAIN[seed])
            + fc * (-0.01 + HEAD_GAIN[seed]))


@pytest.fixture(scope="module")
def grid(tmp_path_factory):
    """landmarks x head x 3 seeds as one multirun folder; happy gains 10 points more
    from landmarks than the other classes."""
    root = tmp_path_factory.mktemp("grid") / "multirun"
    job = 0
    for landmarks in ("none", "groundtruth"):
        for head in ("gap", "fc"):
            for seed in SEEDS:
                acc = grid_acc(landmarks, head, seed)
                happy = acc + (0.1 if landmarks == "groundtruth" else 0.0)
                make_run(root / str(job), {"landmarks": landmarks, "head": head}, seed,
                         test=acc, per_class={"happy": happy})
                job += 1
    return root


@pytest.fixture(scope="module")
def grid_report(grid):
    return build_report([grid])


def effect_of(block, axis, metric="test/acc"):
    [effect] = [e for e in block["effects"] if e["axis"] == axis and e["metric"] == metric]
    return effect


def test_axes_come_from_group_choices_and_seed_is_the_replicate(grid_report):
    report = grid_report
    [block] = report["blocks"]
    assert block["axes"] == ["landmarks", "head"]
    details = {axis["name"]: axis for axis in block["axis_details"]}
    assert details["landmarks"]["values"] == ["none", "groundtruth"]
    assert details["head"]["baseline"] == "gap"
    # what a group option sets is not an axis of its own; paths differ per run and are ignored
    assert "landmarks.enabled" in details["landmarks"]["covarying"]
    assert "head.pool" in details["head"]["covarying"]
    assert block["fixed"]["data"] == "synthetic" and block["fixed"]["model"] == "mini_xception"
    assert report["incomplete"] == []


def test_cell_means_and_intervals_are_exact(grid_report):
    [block] = grid_report["blocks"]
    assert len(block["cells"]) == 4
    for cell in block["cells"]:
        values = [grid_acc(cell["axes"]["landmarks"], cell["axes"]["head"], s) for s in SEEDS]
        summary = cell["metrics"]["test/acc"]
        assert cell["n"] == 3 and cell["seeds"] == [1, 2, 3]
        assert summary["mean"] == pytest.approx(np.mean(values), abs=1e-12)
        assert summary["std"] == pytest.approx(np.std(values, ddof=1), abs=1e-12)
        half = stats.t.ppf(0.975, 2) * np.std(values, ddof=1) / math.sqrt(3)
        assert summary["ci_low"] == pytest.approx(summary["mean"] - half, abs=1e-12)
        assert summary["ci_low"] < summary["mean"] < summary["ci_high"]
        assert cell["metrics"]["test/macro_f1"]["mean"] == pytest.approx(np.mean(values) - 0.01)
        assert cell["wall_time_s"] == pytest.approx(62.0) and cell["epochs"] == 2


def test_paired_effects_match_hand_computed_differences(grid_report):
    [block] = grid_report["blocks"]
    landmarks = effect_of(block, "landmarks")
    assert (landmarks["a"], landmarks["b"], landmarks["n_pairs"]) == ("none", "groundtruth", 6)
    diffs = [0.03 + LANDMARK_GAIN[s] for s in SEEDS] * 2
    assert landmarks["diff_mean"] == pytest.approx(0.031, abs=1e-12)
    half = stats.t.ppf(0.975, 5) * np.std(diffs, ddof=1) / math.sqrt(6)
    assert landmarks["ci_low"] == pytest.approx(0.031 - half, abs=1e-9)
    assert landmarks["ci_high"] == pytest.approx(0.031 + half, abs=1e-9)
    assert landmarks["ci_low"] < landmarks["diff_mean"] < landmarks["ci_high"]
    assert landmarks["wins"] == 6 and landmarks["strata"] == 2
    assert landmarks["verdict"].startswith("landmarks=groundtruth vs none: +3.1 points acc [")
    assert "6 pairs" in landmarks["verdict"]
    assert "no detectable difference" not in landmarks["verdict"]
    head = effect_of(block, "head")
    assert (head["a"], head["b"], head["n_pairs"]) == ("gap", "fc", 6)
    assert head["diff_mean"] == pytest.approx(-0.009, abs=1e-12)
    # every metric gets an effect; mean-class acc is acc - 0.005 in every run: same diffs
    assert effect_of(block, "landmarks", "test/mean_class_acc")["diff_mean"] == \
        pytest.approx(0.031, abs=1e-12)


def test_per_class_deltas_show_which_class_gains(grid_report):
    [block] = grid_report["blocks"]
    per_class = effect_of(block, "landmarks")["per_class"]
    assert set(per_class) == set(CLASSES)
    assert per_class["happy"]["diff_mean"] == pytest.approx(0.131, abs=1e-12)
    assert per_class["sad"]["diff_mean"] == pytest.approx(0.031, abs=1e-12)
    # the landmark effect within each head (interaction table)
    by = {json.dumps(item["given"]): item for item in effect_of(block, "landmarks")["by"]}
    assert by['{"head": "gap"}']["n_pairs"] == 3
    assert by['{"head": "fc"}']["diff_mean"] == pytest.approx(0.031, abs=1e-12)


def test_seeds_needed_follow_the_power_of_a_paired_t_test(grid_report):
    [block] = grid_report["blocks"]
    landmarks = effect_of(block, "landmarks")
    needed = landmarks["pairs_needed"]
    assert paired_power(needed, landmarks["sd"], 0.01) >= 0.8 > \
        paired_power(needed - 1, landmarks["sd"], 0.01)
    assert landmarks["seeds_needed"] == math.ceil(needed / 2)
    # the textbook case: standardised effect 1 needs 10 pairs at alpha 0.05, power 0.8
    assert pairs_needed(0.01, 0.01) == 10


def test_interval_covering_zero_says_no_detectable_difference(tmp_path):
    for seed, (ce, focal) in zip(SEEDS, [(0.60, 0.61), (0.62, 0.61), (0.58, 0.582)],
                                 strict=True):
        make_run(tmp_path / f"ce{seed}", {"loss": "ce"}, seed, test=ce)
        make_run(tmp_path / f"focal{seed}", {"loss": "focal"}, seed, test=focal)
    [block] = build_report([tmp_path])["blocks"]
    loss = effect_of(block, "loss")
    assert loss["diff_mean"] == pytest.approx(0.002 / 3, abs=1e-12)
    assert loss["ci_low"] < 0 < loss["ci_high"]
    assert loss["verdict"].startswith("loss=focal vs ce: +0.1 points acc [")
    assert "3 pairs: no detectable difference" in loss["verdict"]
    assert "seeds" in loss["verdict"]


def test_incomplete_runs_are_listed_with_why(grid, tmp_path):
    make_run(tmp_path / "ok1", {}, 1, test=0.6)
    make_run(tmp_path / "ok2", {}, 2, test=0.62)
    crashed = make_run(tmp_path / "crashed", {}, 3, test=None, results=False)
    (crashed / "train.log").write_text("[INFO] epoch 0\nRuntimeError: CUDA out of memory\n")
    old = 1_000_000_000
    for path in [crashed, *crashed.rglob("*")]:
        os.utime(path, (old, old))
    stopped = make_run(tmp_path / "stopped", {}, 4, test=None, results=False)
    (stopped / "checkpoints").mkdir()
    (stopped / "checkpoints" / "last.ckpt").write_bytes(b"")
    for path in [stopped, *stopped.rglob("*")]:
        os.utime(path, (old, old))
    sigterm = make_run(tmp_path / "sigterm", {}, 7, test=None, results=False)
    (sigterm / "train.log").write_text(
        "[WARNING] Stopped by SIGTERM in epoch 1 at step 40; last.ckpt holds that step.\n")
    make_run(tmp_path / "running", {}, 5, test=None, results=False)
    make_run(tmp_path / "valonly", {}, 6, test=None, val=0.7)
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "results.json").write_text("{not json")
    report = build_report([tmp_path])
    why = {os.path.basename(item["path"]): item["why"] for item in report["incomplete"]}
    assert set(why) == {"crashed", "stopped", "sigterm", "running", "valonly", "broken"}
    assert why["crashed"].startswith("crashed (2 of 10 epochs logged): RuntimeError: CUDA out")
    assert "stopped, crashed or killed" in why["stopped"]
    assert why["sigterm"].startswith("stopped by SIGTERM (2 of 10 epochs logged): [WARNING]")
    assert f"ckpt_path={stopped / 'checkpoints' / 'last.ckpt'}" in why["stopped"]
    assert why["running"].startswith("no results.json yet: still running?")
    assert why["valonly"].startswith("no test split: results.json holds val metrics only")
    assert why["broken"].startswith("results.json is not valid JSON")
    [block] = report["blocks"]
    assert block["n_runs"] == 2 and block["cells"][0]["n"] == 2


def test_block_without_any_test_split_is_compared_on_val(tmp_path):
    make_run(tmp_path / "a", {"head": "gap"}, 1, test=None, val=0.5)
    make_run(tmp_path / "b", {"head": "fc"}, 1, test=None, val=0.4)
    [block] = build_report([tmp_path])["blocks"]
    assert block["split"] == "val" and block["metric"] == "val/acc"
    assert effect_of(block, "head", "val/acc")["diff_mean"] == pytest.approx(-0.1)
    assert any("no run of this block has a test split" in note for note in block["notes"])


def test_mixed_datasets_and_code_versions_are_separate_blocks(tmp_path):
    for seed in (1, 2):
        make_run(tmp_path / f"syn{seed}", {"landmarks": "none"}, seed, test=0.6)
        make_run(tmp_path / f"fer{seed}", {"data": "fer2013", "landmarks": "groundtruth"},
                 seed, test=0.5)
        make_run(tmp_path / f"new{seed}", {"landmarks": "groundtruth"}, seed, test=0.7,
                 commit="def456")
    report = build_report([tmp_path])
    blocks = {(b["fixed"]["data"], b["fixed"]["git_commit"]): b for b in report["blocks"]}
    assert set(blocks) == {("synthetic", "abc123"), ("fer2013", "abc123"),
                           ("synthetic", "def456")}
    for block in report["blocks"]:
        assert block["axes"] == [] and block["effects"] == [] and block["n_runs"] == 2
    assert blocks[("fer2013", "abc123")]["fixed"]["landmarks"] == "groundtruth"


def test_runs_launched_without_hydra_record_get_the_same_axes(tmp_path):
    for seed in SEEDS:
        for landmarks, acc in (("none", 0.6), ("groundtruth", 0.63)):
            make_run(tmp_path / f"{landmarks}{seed}", {"landmarks": landmarks}, seed,
                     test=acc + seed / 1000 * (landmarks == "none"), hydra=False)
    [block] = build_report([tmp_path])["blocks"]
    assert block["axes"] == ["landmarks"]
    assert effect_of(block, "landmarks")["diff_mean"] == pytest.approx(0.03 - 0.002)


def test_key_overrides_are_axes_and_duplicates_keep_the_newest(tmp_path):
    for seed in (1, 2):
        for lr, acc in ((0.001, 0.6), (0.01, 0.55)):
            make_run(tmp_path / f"lr{lr}-{seed}", {"optimizer.lr": lr}, seed,
                     test=acc + seed / 100)
    make_run(tmp_path / "again", {"optimizer.lr": 0.01}, 12, test=0.9)
    results = json.loads((tmp_path / "again" / "results.json").read_text())
    results["seed"] = 1  # the same cell and seed as lr0.01-1, finished later
    (tmp_path / "again" / "results.json").write_text(json.dumps(results))
    report = build_report([tmp_path])
    [block] = report["blocks"]
    assert block["axes"] == ["optimizer.lr"]
    effect = effect_of(block, "optimizer.lr")
    assert (effect["a"], effect["b"], effect["n_pairs"]) == (0.001, 0.01, 2)
    assert effect["diff_mean"] == pytest.approx(((0.9 - 0.61) + (0.57 - 0.62)) / 2)
    [dropped] = report["incomplete"]
    assert dropped["path"].endswith("lr0.01-1") and "same cell and seed=1" in dropped["why"]


def test_single_run_gives_n1_without_interval(tmp_path):
    run = make_run(tmp_path / "only", {}, 42, test=0.7)
    report = build_report([run])
    [block] = report["blocks"]
    [cell] = block["cells"]
    assert cell["n"] == 1 and cell["axes"] == {}
    assert cell["metrics"]["test/acc"] == {"mean": 0.7, "std": None, "ci_low": None,
                                           "ci_high": None}
    assert block["effects"] == [] and report["incomplete"] == []
    assert main([str(run)]) == 0  # tables and plots of a single run
    assert "| 1 | 70.0 | 69.5 | 69.0 |" in (run / "report" / "report.md").read_text()


def test_empty_folder_is_a_clear_error(tmp_path, capsys):
    with pytest.raises(ReportError, match="no run folders under"):
        build_report([tmp_path])
    assert main([str(tmp_path)]) == 1
    assert "report: no run folders under" in capsys.readouterr().err
    assert main([str(tmp_path / "missing")]) == 1
    assert "no such file or folder" in capsys.readouterr().err


def test_json_format_prints_the_contract(grid, capsys):
    assert main(["--format", "json", str(grid)]) == 0
    report = json.loads(capsys.readouterr().out)
    assert set(report) >= {"blocks", "incomplete"}
    [block] = report["blocks"]
    assert set(block) >= {"fixed", "axes", "cells", "effects"}
    cell = block["cells"][0]
    assert set(cell) >= {"axes", "n", "seeds", "metrics"}
    assert set(cell["metrics"]["test/acc"]) == {"mean", "std", "ci_low", "ci_high"}
    for effect in block["effects"]:
        assert set(effect) >= {"axis", "a", "b", "n_pairs", "metric", "diff_mean", "ci_low",
                               "ci_high", "verdict"}
        assert 0 <= abs(effect["diff_mean"]) <= 1
    assert not (grid / "report").exists(), "--format json writes no files without --out"


def test_report_folder_holds_markdown_csv_json_and_plots(grid, tmp_path, capsys):
    out = tmp_path / "out"
    assert main([str(grid), "--out", str(out), "--baseline", "head=fc"]) == 0
    printed = capsys.readouterr().out
    assert "landmarks=groundtruth vs none: +3.1 points acc" in printed
    markdown = (out / "report.md").read_text()
    assert "- landmarks=groundtruth vs none: +3.1 points acc [" in markdown
    assert "head=gap vs fc: +0.9 points acc" in markdown  # --baseline head=fc
    assert "| happy | +13.1 * |" in markdown
    for plot in ("effects", "cells", "curves", "per_class"):
        assert (out / f"block1-{plot}.png").stat().st_size > 1000
        assert f"block1-{plot}.png" in markdown
    rows = list(csv.DictReader((out / "runs.csv").open()))
    assert len(rows) == 12
    assert {row["landmarks"] for row in rows} == {"none", "groundtruth"}
    first = next(r for r in rows if r["path"].endswith("/0"))
    assert float(first["acc"]) == pytest.approx(grid_acc("none", "gap", 1))
    assert json.loads((out / "report.json").read_text())["blocks"][0]["axes"] == \
        ["landmarks", "head"]


def test_unknown_baseline_value_is_an_error(grid, capsys):
    assert main([str(grid), "--baseline", "head=mlp", "--no-plots",
                 "--out", str(grid.parent / "o")]) == 1
    assert "--baseline head=mlp: the axis has values ['fc', 'gap']" in capsys.readouterr().err


def test_validation_curves_leave_out_the_best_checkpoint_validation(grid_report):
    [block] = grid_report["blocks"]
    curve = block["cells"][0]["curve"]
    assert curve["epochs"] == [0, 1] and curve["mean"] == pytest.approx([0.3, 0.5])
    assert curve["n"] == [3, 3]


def test_ablation_benchmark_writes_the_readme_section(grid, tmp_path, monkeypatch):
    from benchmarks import ablation

    monkeypatch.setattr(ablation, "OUT", tmp_path)
    assert main([str(grid), "--out", str(tmp_path / "mba"), "--no-plots"]) == 0
    section = ablation.grid_markdown("mba", grid, 754.0, "benchmarks/ablation")
    assert "12 runs in 12 min 34 s" in section
    assert "- landmarks=groundtruth vs none: +3.1 points acc [" in section
    assert "python -m fer_lightning -m hydra.sweep.dir=logs/ablation/mba" in section
    assert "![mba effects](benchmarks/ablation/mba/block1-effects.png)" in section
    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n{ablation.BEGIN} placeholder -->\nold\n{ablation.END}\nrest\n")
    ablation.fill_readme(readme, section)
    text = readme.read_text()
    assert text.startswith("intro\n<!-- ablation-report:begin (filled by") and "old" not in text
    assert text.endswith(f"{ablation.END}\nrest\n") and section in text
