"""Progress output: a live bar on a terminal, epoch and step lines in a log file."""

from __future__ import annotations

import io
from types import SimpleNamespace

import pytest
from rich.console import Console
from rich.table import Table

from fer_lightning.config import ConfigError, check_config
from fer_lightning.progress import (
    EpochBar,
    LogLineProgress,
    console_for,
    duration,
    epoch_label,
    progress_bar,
)
from tests.conftest import SMALL_NET
from tests.test_cli import run_cli

BAR_GLYPHS = ("it/s", " • ", "Epoch ", "Validation ", "Testing ")  # rich bar frames


def test_a_run_with_stdout_to_a_file_prints_epoch_and_step_lines_and_no_bar(tmp_path):
    done = run_cli(["+experiment=smoke", "data.source.train_size=48",
                    "data.source.val_size=32", "data.source.test_size=32",
                    "trainer.max_epochs=2", "callbacks.progress_bar.every_n_steps=2",
                    "callbacks.confusion_matrix=null", *SMALL_NET],
                   cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    out = done.stdout
    for glyph in BAR_GLYPHS:
        assert glyph not in out + done.stderr, f"bar frame ({glyph!r}) in a log file"
    assert "epoch 0 (1/2) started: 3 batches" in out
    assert "epoch 1 (2/2) started: 3 batches" in out
    assert "epoch 0 (1/2) batch 2/3, step 2" in out
    assert "epoch 1 (2/2) batch 2/3, step 5" in out
    assert "Error getting class" not in out + done.stderr  # a factory _target_ is fine
    assert "epoch ETA " in out and "run ETA " in out and "elapsed " in out
    assert "epoch 1 (2/2), step 6: train/loss " in out, "the per-epoch summary line"
    [results] = (tmp_path / "logs/smoke/runs").glob("*/results.json")
    assert f"results: {results}\n" in out, "the results path is wrapped"
    run = results.parent
    [best] = (run / "checkpoints").glob("best-*.ckpt")
    assert f"best checkpoint: {best}\nlast checkpoint: {run}/checkpoints/last.ckpt\n" in out
    assert f"evaluate it:     python -m fer_lightning.eval ckpt_path={run}\n" in out
    assert "epoch 0 (1/2) started" in (results.parent / "train.log").read_text()


def test_the_bar_labels_epochs_like_the_epoch_lines():
    bar = EpochBar()
    bar._trainer = SimpleNamespace(max_epochs=10)
    assert bar._get_train_description(9).strip() == "epoch 9 (10/10)" == epoch_label(9, 10)
    assert epoch_label(3, -1) == "epoch 3 (4)"


def test_auto_style_shows_lines_when_stdout_is_not_a_terminal(monkeypatch):
    monkeypatch.setattr("sys.stdout", io.StringIO())
    assert type(progress_bar()) is LogLineProgress
    assert type(progress_bar(style="rich")) is EpochBar
    lines = progress_bar(style="lines", every_n_seconds=None, every_n_steps=7)
    assert (lines.every_n_seconds, lines.every_n_steps) == (None, 7)


def test_durations_read_as_clock_times():
    assert [duration(s) for s in (0, 59.4, 61, 3725)] == ["0:00", "0:59", "1:01", "1:02:05"]


def test_tables_printed_to_a_file_keep_their_full_width():
    table = Table()
    table.add_column("a_column_name_" * 10)
    table.add_row("x")
    console = console_for(table)
    assert not console.is_terminal and console.width >= 140
    measured = Console(file=io.StringIO(), width=console.width)
    measured.print(table)
    assert "a_column_name_" * 10 in measured.file.getvalue()


@pytest.mark.parametrize("override, message", [
    ("callbacks.progress_bar.style=fancy",
     "callbacks.progress_bar.style must be one of ['auto', 'rich', 'lines'], got 'fancy'"),
    ("callbacks.progress_bar.every_n_seconds=0",
     "callbacks.progress_bar.every_n_seconds must be a positive number or null, got 0"),
    ("callbacks.progress_bar.every_n_steps=0",
     "callbacks.progress_bar.every_n_steps must be a positive integer, got 0"),
])
def test_bad_progress_settings_fail_with_their_key(make_cfg, override, message):
    with pytest.raises(ConfigError) as error:
        check_config(make_cfg(override, tiny=False))
    assert str(error.value) == message
