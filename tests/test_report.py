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
    # per-class deltas carry their intervals: happy gains 13.1 points with the landmark
    # effect's spread (the same paired differences plus 10 points)
    diffs = [0.131 + LANDMARK_GAIN[s] for s in SEEDS] * 2
    half = 100 * stats.t.ppf(0.975, 5) * np.std(diffs, ddof=1) / math.sqrt(6)
    assert f"| happy | +13.1 [{13.1 - half:+.1f}, {13.1 + half:+.1f}] * |" in markdown
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
    section = ablation.grid_markdown("mba", grid, 754.0, "benchmarks/ablation_results")
    assert "12 runs in 12 min 34 s" in section
    assert "- landmarks=groundtruth vs none: +3.1 points acc [" in section
    assert "python -m fer_lightning -m hydra.sweep.dir=logs/ablation/mba" in section
    assert "![mba effects](benchmarks/ablation_results/mba/block1-effects.png)" in section
    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n{ablation.BEGIN} placeholder -->\nold\n{ablation.END}\nrest\n")
    ablation.fill_readme(readme, section)
    text = readme.read_text()
    assert text.startswith("intro\n<!-- ablation-report:begin (filled by") and "old" not in text
    assert text.endswith(f"{ablation.END}\nrest\n") and section in text


# ----------------------------------------------------------- unusable run folders --

def strict_json(text: str):
    """json.loads that refuses NaN / Infinity tokens (as strict JSON parsers do)."""
    def refuse(token):
        raise ValueError(f"non-standard JSON token {token}")
    return json.loads(text, parse_constant=refuse)


def edit_results(run, edit):
    """Rewrite a run's results.json through ``edit(content) -> new content``."""
    path = run / "results.json"
    path.write_text(json.dumps(edit(json.loads(path.read_text()))))


def test_unusable_runs_are_listed_with_their_reason_and_the_rest_reported(tmp_path):
    make_run(tmp_path / "ok1", {}, 1, test=0.6)
    make_run(tmp_path / "ok2", {}, 2, test=0.62)

    def without_f1(content):
        del content["test"]["metrics"]["macro_f1"]
        return content

    edit_results(make_run(tmp_path / "no_f1", {}, 3, test=0.6), without_f1)
    edit_results(make_run(tmp_path / "a_list", {}, 4, test=0.6), lambda content: [content])
    edit_results(make_run(tmp_path / "a_string", {}, 5, test=0.6), lambda content: "done")
    (make_run(tmp_path / "not_json", {}, 6, test=0.6) / "results.json").write_text('{"test":')
    for name, value in (("nan", math.nan), ("inf", math.inf), ("above_one", 1.7)):
        def set_acc(content, value=value):
            content["test"]["metrics"]["acc"] = value
            return content
        edit_results(make_run(tmp_path / name, {}, 7, test=0.6), set_acc)

    def negative_class(content):
        content["val"]["per_class_acc"]["fear"] = -0.1
        return content

    edit_results(make_run(tmp_path / "bad_class", {}, 8, test=0.6), negative_class)
    bad_config = make_run(tmp_path / "bad_config", {}, 9, test=0.6)
    (bad_config / "config.yaml").write_text("model:\n  name: mini_xception\n bad: [1\n")
    bad_hydra = make_run(tmp_path / "bad_hydra", {}, 10, test=0.6)
    (bad_hydra / ".hydra" / "hydra.yaml").write_text("hydra: {runtime: [}\n")
    (make_run(tmp_path / "list_config", {}, 11, test=0.6) / "config.yaml").write_text("- 1\n")
    odd = make_run(tmp_path / "odd_trainer", {}, 12, test=None, results=False)
    (odd / "config.yaml").write_text("trainer: 5\nseed: 12\n")
    (odd / "train.log").write_text("[INFO] Detected KeyboardInterrupt, attempting graceful "
                                   "shutdown ...\n")
    (odd / "csv" / "metrics.csv").write_text("epoch,train/acc\nabc,0.5\n1,0.5\n")

    report = build_report([tmp_path])
    why = {os.path.basename(item["path"]): item["why"] for item in report["incomplete"]}
    assert why == {
        "no_f1": "results.json test.metrics has no 'macro_f1' (it has acc, mean_class_acc)",
        "a_list": "results.json holds a list, expected an object with val / test metrics",
        "a_string": "results.json holds a string, expected an object with val / test metrics",
        "not_json": "results.json is not valid JSON (Expecting value: line 1 column 9 "
                    "(char 8))",
        "nan": "results.json test.metrics.acc is nan, expected a finite number in [0, 1]",
        "inf": "results.json test.metrics.acc is inf, expected a finite number in [0, 1]",
        "above_one": "results.json test.metrics.acc is 1.7, outside [0, 1]",
        "bad_class": "results.json val.per_class_acc.fear is -0.1, outside [0, 1]",
        "bad_config": "config.yaml is not valid YAML (expected <block end>, but found '<block "
                      "mapping start>' at line 3, column 2)",
        "bad_hydra": ".hydra/hydra.yaml is not valid YAML (expected the node content, but "
                     "found '}' at line 1, column 19)",
        "list_config": "config.yaml holds a list, expected a mapping of settings",
        "odd_trainer": "interrupted by Ctrl-C (2 of None epochs logged): [INFO] Detected "
                       "KeyboardInterrupt, attempting graceful shutdown ...",
    }
    [block] = report["blocks"]
    assert block["n_runs"] == 2 and block["cells"][0]["metrics"]["test/acc"]["mean"] == \
        pytest.approx(0.61)
    assert report["n_runs_found"] == 14
    for cell in block["cells"]:
        assert "nan" not in json.dumps(cell)


def test_report_json_is_strict_json_with_null_for_undefined_values(tmp_path, capsys):
    for seed, decay in ((1, 0.0), (2, 0.0), (3, math.nan)):
        run = make_run(tmp_path / f"r{seed}", {"optimizer.weight_decay": 0.0}, seed, test=0.6,
                       curve=[0.3, 0.5])
        config = (run / "config.yaml").read_text()
        if math.isnan(decay):  # a hand-edited config, NaN as YAML writes it
            (run / "config.yaml").write_text(config.replace("weight_decay: 0.0",
                                                            "weight_decay: .nan"))
        metrics = run / "csv" / "metrics.csv"
        metrics.write_text(metrics.read_text().replace("0,0,0.5,0.3", "0,0,0.5,nan"))
    assert main(["--format", "json", "--out", str(tmp_path / "out"), "--no-plots",
                 str(tmp_path)]) == 0
    printed = capsys.readouterr().out
    report = strict_json(printed)
    assert strict_json((tmp_path / "out" / "report.json").read_text()) == report
    [block] = report["blocks"]
    assert block["axes"] == ["optimizer.weight_decay"]
    assert block["axis_details"][0]["values"] == [0.0, None]  # NaN: undefined -> null
    curve = block["cells"][0]["curve"]
    assert curve["epochs"] == [1] and curve["n"] == [2]  # the NaN epoch is not a point
    single = [cell for cell in block["cells"] if cell["n"] == 1][0]["metrics"]["test/acc"]
    assert single == {"mean": 0.6, "std": None, "ci_low": None, "ci_high": None}


def test_intervals_of_proportions_stay_in_their_range(tmp_path):
    # near 100 % and near 0 %: the t interval of the mean would leave [0, 1]
    for seed, (high, low) in zip(SEEDS, [(1.0, 0.0), (0.98, 0.02), (0.9, 0.1)], strict=True):
        make_run(tmp_path / f"high{seed}", {"loss": "ce"}, seed, test=high, val=high,
                 per_class={"happy": [0.0, 1.0, 0.0][seed - 1]})
        make_run(tmp_path / f"low{seed}", {"loss": "focal"}, seed, test=low, val=low,
                 per_class={"happy": [1.0, 0.0, 1.0][seed - 1]})
    report = build_report([tmp_path])
    assert report["incomplete"] == []
    [block] = report["blocks"]
    for cell, values in zip(block["cells"], ([1.0, 0.98, 0.9], [0.0, 0.02, 0.1]), strict=True):
        summary = cell["metrics"]["test/acc"]
        half = stats.t.ppf(0.975, 2) * np.std(values, ddof=1) / math.sqrt(3)
        assert 0.0 <= summary["ci_low"] <= summary["ci_high"] <= 1.0
        if values[0] == 1.0:
            assert summary["ci_high"] == 1.0
            assert summary["ci_low"] == pytest.approx(np.mean(values) - half, abs=1e-12)
        else:
            assert summary["ci_low"] == 0.0
            assert summary["ci_high"] == pytest.approx(np.mean(values) + half, abs=1e-12)
    loss = effect_of(block, "loss")
    happy = loss["per_class"]["happy"]  # differences +1, -1, +1: t interval [-2.5, +3.2]
    assert happy["diff_mean"] == pytest.approx(1 / 3)
    assert (happy["ci_low"], happy["ci_high"]) == (-1.0, 1.0)
    assert -1.0 <= loss["ci_low"] <= loss["ci_high"] <= 1.0


def test_crashed_training_writes_its_error_to_train_log_and_the_report_shows_it(tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    repo = Path(__file__).resolve().parents[1]
    env = {**os.environ, "WANDB_MODE": "offline", "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join([str(repo), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run(
        [sys.executable, "-m", "fer_lightning", "data.source.train_size=32",
         "data.source.val_size=16", "data.source.test_size=16", "trainer=cpu",
         "trainer.max_epochs=2", "callbacks.progress_bar=null", "callbacks.model_summary=null",
         "+callbacks.crash._target_=tests.fixtures_runs.CrashAfterFirstEpoch"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 1, done.stderr[-3000:]
    assert "RuntimeError: injected crash after epoch 0" in done.stderr  # Hydra's report
    assert "Crashed with" not in done.stdout + done.stderr  # the log line is for train.log
    [run] = (tmp_path / "logs" / "train" / "runs").iterdir()
    log = (run / "train.log").read_text()
    assert "[ERROR] - Crashed with RuntimeError: injected crash after epoch 0\n" \
           "Traceback (most recent call last):" in log
    assert log.rstrip().endswith("RuntimeError: injected crash after epoch 0")
    [item] = build_report([tmp_path / "logs"])["incomplete"]
    assert item == {"path": str(run.resolve()), "why": "crashed (0 of 2 epochs logged): "
                    "RuntimeError: injected crash after epoch 0"}


# ------------------------------------------------- output folders of other commands --

def test_eval_predict_export_folders_are_counted_not_listed(tmp_path, capsys):
    from tests.fixtures_runs import make_command_folder

    logs = tmp_path / "logs"
    for seed in (1, 2):
        make_run(logs / "train" / "runs" / f"t{seed}", {}, seed, test=0.6 + seed / 100)
    ckpt = logs / "train" / "runs" / "t1" / "checkpoints" / "best-epoch001.ckpt"
    make_command_folder(logs / "eval" / "runs" / "e1", "eval", ckpt)
    make_command_folder(logs / "predict" / "runs" / "p1", "predict", ckpt)
    make_command_folder(logs / "export" / "runs" / "x1", "export", ckpt)
    # eval's results.json copied out alone, and an export folder whose Hydra record is
    # damaged (its export.log still names the command)
    copied = logs / "copied"
    copied.mkdir()
    (copied / "results.json").write_text((logs / "eval/runs/e1/results.json").read_text())
    damaged = make_command_folder(logs / "export" / "runs" / "x2", "export", ckpt)
    (damaged / ".hydra" / "hydra.yaml").write_text("hydra: [\n")
    report = build_report([logs])
    assert report["incomplete"] == []
    assert report["other_outputs"] == {"eval": 2, "export": 2, "predict": 1}
    assert report["n_runs_found"] == 2 and report["blocks"][0]["n_runs"] == 2
    assert main([str(logs), "--no-plots"]) == 0
    printed = capsys.readouterr().out.splitlines()
    line = "5 output folders of other commands left out (eval 2, export 2, predict 1)"
    assert line in printed
    assert not any(row.strip().startswith("left out (") for row in printed)  # no table
    markdown = (logs / "report" / "report.md").read_text()
    assert f"0 left out (see the end); {line}." in markdown
    rows = list(csv.DictReader((logs / "report" / "runs.csv").open()))
    assert [row["status"] for row in rows] == ["compared", "compared"]
    with pytest.raises(ReportError, match=r"^no training runs under .*/logs/eval, only output "
                       r"folders of other commands \(eval 1\)"):
        build_report([logs / "eval"])


# --------------------------------------------------------- degenerate cells, pairs --

def one_class_matrix(column: int, per_class: int = 10) -> list[list[int]]:
    """A 7-class confusion matrix of a run that predicts class ``column`` for every face."""
    return [[per_class if c == column else 0 for c in range(7)] for _ in range(7)]


def test_cells_at_chance_and_one_class_runs_are_flagged_in_the_verdict(tmp_path):
    # 6 runs at chance: 70 test faces, every run predicts one class (1/7 = 14.3 % acc)
    for seed in SEEDS:
        make_run(tmp_path / f"ce{seed}", {"loss": "ce"}, seed, test=1 / 7, mean_class=1 / 7,
                 confusion=one_class_matrix(6))
        make_run(tmp_path / f"focal{seed}", {"loss": "focal"}, seed,
                 test=[0.15, 0.13, 0.16][seed - 1], mean_class=0.15,
                 confusion=one_class_matrix(3) if seed == 1 else None)
    [block] = build_report([tmp_path])["blocks"]
    ce, focal = block["cells"]
    assert ce["chance"] == pytest.approx(1 / 7)
    assert ce["at_chance"] == ["acc", "mean_class_acc"]
    assert focal["at_chance"] == ["acc", "mean_class_acc"]  # within its seed interval
    assert [item["class"] for item in ce["one_class_runs"]] == ["neutral"] * 3
    assert focal["one_class_runs"] == [{"path": str((tmp_path / "focal1").resolve()),
                                        "class": "happy"}]
    assert block["warnings"] == [
        "cell loss=ce: at chance, test acc 14.3 % [14.3, 14.3] vs 1/7 = 14.3 %",
        "cell loss=ce: at chance, test mean-class acc 14.3 % [14.3, 14.3] vs 1/7 = 14.3 %",
        "cell loss=ce: 3 of 3 runs predict one class for every test face (neutral)",
        "cell loss=focal: at chance, test acc 14.7 % [10.9, 18.5] vs 1/7 = 14.3 %",
        "cell loss=focal: at chance, test mean-class acc 15.0 % [15.0, 15.0] vs 1/7 = 14.3 %",
        "cell loss=focal: 1 of 3 runs predict one class for every test face (happy)",
    ]
    loss = effect_of(block, "loss")
    assert loss["seeds_needed"] is None
    assert loss["verdict"].endswith(
        "3 pairs: no detectable difference; no seeds estimate (a compared cell learned "
        "nothing); caution: 2 of its 2 cells at chance (loss=ce; loss=focal); 2 of its 2 "
        "cells with runs that predict one class (loss=ce; loss=focal)")


def test_chance_is_judged_on_the_test_set_size_for_a_single_seed(tmp_path):
    # one seed each, 686 faces: 16 % is 1.3 binomial standard errors (1.34 points) from
    # 1/7, at chance; 60 % is far from it
    spread = [[20 if c == r else 13 for c in range(7)] for r in range(7)]
    make_run(tmp_path / "a", {"loss": "ce"}, 1, test=0.16, mean_class=0.16, confusion=spread)
    make_run(tmp_path / "b", {"loss": "focal"}, 1, test=0.6, mean_class=0.6, confusion=spread)
    [block] = build_report([tmp_path])["blocks"]
    assert [cell["at_chance"] for cell in block["cells"]] == [["acc", "mean_class_acc"], []]
    loss = effect_of(block, "loss")
    assert loss["verdict"] == ("loss=focal vs ce: +44.0 points acc, 1 pair: no interval (run "
                               "more seeds); no seeds estimate (a compared cell learned "
                               "nothing); caution: only 1 pair (fewer than 3); 1 of its 2 "
                               "cells at chance (loss=ce)")


def test_effects_with_fewer_than_three_pairs_are_flagged(tmp_path):
    for seed, (ce, focal) in zip((1, 2), [(0.60, 0.63), (0.61, 0.65)], strict=True):
        make_run(tmp_path / f"ce{seed}", {"loss": "ce"}, seed, test=ce)
        make_run(tmp_path / f"focal{seed}", {"loss": "focal"}, seed, test=focal)
    [block] = build_report([tmp_path])["blocks"]
    loss = effect_of(block, "loss")
    assert loss["n_pairs"] == 2 and loss["cautions"] == ["only 2 pairs (fewer than 3)"]
    assert loss["verdict"].endswith("; caution: only 2 pairs (fewer than 3)")
    assert block["warnings"] == []


def test_a_key_that_changes_with_a_combination_of_axes_is_named_as_a_confound(tmp_path):
    # landmarks x head, but optimizer.lr is 0.01 in the (groundtruth, fc) cell only
    for seed in SEEDS:
        for landmarks in ("none", "groundtruth"):
            for head in ("gap", "fc"):
                overrides = {"landmarks": landmarks, "head": head}
                if (landmarks, head) == ("groundtruth", "fc"):
                    overrides["optimizer.lr"] = 0.01
                make_run(tmp_path / f"{landmarks}-{head}-{seed}", overrides, seed,
                         test=grid_acc(landmarks, head, seed))
    [block] = build_report([tmp_path])["blocks"]
    assert block["axes"] == ["landmarks", "head"]
    for axis in ("landmarks", "head"):
        effect = effect_of(block, axis)
        assert effect["confounds"] == [{"key": "optimizer.lr", "pairs": 3}]
        assert effect["verdict"].endswith(
            "; caution: confounded: optimizer.lr also differs in 3 of 6 pairs")
        assert effect_of(block, axis, "test/macro_f1")["confounds"] == effect["confounds"]


def test_factorial_grid_and_keys_set_by_the_axis_are_no_confounds(grid_report):
    [block] = grid_report["blocks"]
    for effect in block["effects"]:
        assert effect["confounds"] == [] and effect["cautions"] == []
        assert "caution" not in effect["verdict"]
    assert block["warnings"] == []
    assert all(cell["at_chance"] == [] for cell in block["cells"])


def test_per_class_heatmap_shows_each_delta_with_its_interval(grid_report, tmp_path,
                                                              monkeypatch):
    import matplotlib.axes

    from fer_lightning.report import plots

    drawn = []
    original = matplotlib.axes.Axes.text

    def record(self, x, y, text, *args, **kwargs):
        drawn.append(text)
        return original(self, x, y, text, *args, **kwargs)

    monkeypatch.setattr(matplotlib.axes.Axes, "text", record)
    [block] = grid_report["blocks"]
    assert plots.plot_per_class(block, tmp_path / "heat.png").stat().st_size > 1000
    happy = effect_of(block, "landmarks")["per_class"]["happy"]
    expected = f"+13.1 *\n[{100 * happy['ci_low']:+.1f}, {100 * happy['ci_high']:+.1f}]"
    assert expected in drawn
    assert len(drawn) == len(CLASSES) * len([e for e in block["effects"]
                                             if e["metric"] == "test/acc"])


# --------------------------------------------------------------- printed output --

def test_tables_and_paths_are_printed_whole_outside_a_terminal(tmp_path, capsys):
    root = tmp_path / ("a-folder-name-long-enough-to-pass-eighty-columns-" * 2)
    for seed in SEEDS:
        for head, acc in (("gap", 0.6), ("fc", 0.62)):
            make_run(root / f"{head}-{seed}", {"head": head}, seed, test=acc + seed / 1000)
    stopped = make_run(root / "stopped-run", {"head": "gap"}, 9, test=None, results=False)
    (stopped / "train.log").write_text("RuntimeError: a crash whose message is long enough "
                                       "to pass the eighty columns of a terminal by far\n")
    out = root / "report-folder-with-a-long-name"
    assert main([str(root), "--no-plots", "--out", str(out)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert f"report: {out / 'report.md'}" in lines  # the path on one line
    [row] = [line for line in lines if str(stopped) in line]
    assert "crashed (2 of 10 epochs logged): RuntimeError: a crash whose message is long " \
           "enough to pass the eighty columns of a terminal by far" in row
    assert any(line.startswith("  head=fc vs gap: +2.0 points acc [") and len(line) > 80
               for line in lines)
    assert not any("…" in line for line in lines)
