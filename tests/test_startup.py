"""Start-up: ``--help``, a config error and a missing dataset answer before torch and
Lightning are imported (their import is several seconds of CPU; the timings are in
``make bench``, this file checks what is imported), and the signature cache that lets the
key checks answer without importing the targets."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from fer_lightning import signatures
from fer_lightning.config import may_have_a_gpu

HEAVY = ("torch", "lightning")


def run_and_list_heavy(module: str, *arguments: str, cache_dir: Path, cwd: Path
                       ) -> tuple[int, str, list[str]]:
    """Run ``python -m module arguments`` in a fresh interpreter; (exit status, output,
    which of HEAVY it had imported when it ended)."""
    probe = textwrap.dedent(f"""
        import runpy, sys
        sys.argv = [{module!r}, *{list(arguments)!r}]
        status = 0
        try:
            runpy.run_module({module!r}, run_name="__main__", alter_sys=True)
        except SystemExit as stop:
            status = stop.code if isinstance(stop.code, int) else 1
            if not isinstance(stop.code, int | None):
                print(stop.code)
        print("HEAVY=" + ",".join(m for m in {HEAVY!r} if m in sys.modules))
        sys.exit(status)
    """)
    env = {**os.environ, "FER_LIGHTNING_CACHE_DIR": str(cache_dir), "HYDRA_FULL_ERROR": "0"}
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                          cwd=cwd, env=env, timeout=300)
    output = done.stdout + done.stderr
    assert "HEAVY=" in done.stdout, output
    heavy = done.stdout.rsplit("HEAVY=", 1)[-1].splitlines()[0].split(",")
    return done.returncode, output, [name for name in heavy if name]


@pytest.mark.parametrize("module", ["fer_lightning", "fer_lightning.eval",
                                    "fer_lightning.predict", "fer_lightning.export"])
def test_help_answers_before_torch_is_imported(module, tmp_path):
    status, output, heavy = run_and_list_heavy(module, "--help", cache_dir=tmp_path,
                                               cwd=tmp_path)
    assert status == 0, output
    assert f"python -m {module} [key=value ...]" in output and "Its own keys" in output
    assert heavy == []


def test_data_tool_usage_answers_before_torch_is_imported(tmp_path):
    status, output, heavy = run_and_list_heavy("fer_lightning.data", "--help",
                                               cache_dir=tmp_path, cwd=tmp_path)
    assert status == 1 and "usage: python -m fer_lightning.data" in output
    assert heavy == []


@pytest.mark.parametrize(("override", "message"), [
    ("+lr=0.1", "Config error: lr=0.1 is a key nothing reads; nearest known keys: optimizer.lr"),
    ("trainer.max_epochs=abc", "Config error: trainer.max_epochs must be a positive integer"),
    ("optimizer.lr=-1", "Config error: optimizer.lr must be a number >= 0"),
])
def test_config_errors_answer_before_torch_is_imported(override, message, tmp_path):
    status, output, heavy = run_and_list_heavy("fer_lightning", override, cache_dir=tmp_path,
                                               cwd=tmp_path)
    assert status == 1 and message in output, output
    assert heavy == []
    assert not (tmp_path / "logs").exists() or not any((tmp_path / "logs").rglob("*.ckpt"))


@pytest.mark.skipif(may_have_a_gpu(), reason="a GPU driver is here: torch is asked about it")
def test_a_missing_dataset_answers_before_torch_is_imported(tmp_path):
    missing = tmp_path / "no-such-fer2013"
    status, output, heavy = run_and_list_heavy("fer_lightning", "data=fer2013",
                                               f"data.root={missing}", cache_dir=tmp_path,
                                               cwd=tmp_path)
    assert status == 1, output
    assert f"FER2013 root {missing} is not a directory" in output
    assert "add data=synthetic" in output
    assert heavy == []


def test_key_errors_of_a_node_answer_from_the_signature_cache(tmp_path, monkeypatch):
    """With a cold cache the node's keys are checked after the import (the full check,
    run here in-process, names the key and fills the cache); once cached, the same error
    answers in a fresh process without torch."""
    from fer_lightning.config import ConfigError, check_config, compose_config

    monkeypatch.setenv("FER_LIGHTNING_CACHE_DIR", str(tmp_path))
    cfg = compose_config(["+model.widht=2"], tmp_path / "cold")
    assert signatures.signature(cfg.model._target_, allow_import=False) is None
    with pytest.raises(ConfigError, match="model.widht is not a key of model"):
        check_config(cfg)
    assert json.loads(signatures.cache_file(tmp_path).read_text())
    second = run_and_list_heavy("fer_lightning", "+model.widht=2", cache_dir=tmp_path,
                                cwd=tmp_path)
    assert second[0] == 1 and "model.widht is not a key of model" in second[1]
    assert "accepted keys: base_width, bn_eps" in second[1]
    assert second[2] == []
    third = run_and_list_heavy("fer_lightning", "model.num_modules=abc", cache_dir=tmp_path,
                               cwd=tmp_path)
    assert "Config error: model.num_modules must be an integer, got 'abc'" in third[1]
    assert third[2] == []


class Sample:
    """A target for the cache tests."""

    def __init__(self, width: int, rate: float | None = None, name: str = "x",
                 *args: int, shape: tuple[int, int] = (1, 1)) -> None:
        self.width = width


def test_signature_lists_parameters_and_their_scalar_types(tmp_path, monkeypatch):
    monkeypatch.setenv("FER_LIGHTNING_CACHE_DIR", str(tmp_path))
    found = signatures.signature(f"{__name__}.Sample")
    assert found.parameters == ("width", "rate", "name", "shape")
    assert not found.var_keyword
    assert found.scalars == {"width": (frozenset({int}), False),
                             "rate": (frozenset({float}), True),
                             "name": (frozenset({str}), False)}
    assert signatures.signature(f"{__name__}.Sample", allow_import=False) == found


def test_an_entry_whose_source_file_changed_is_read_again(tmp_path, monkeypatch):
    monkeypatch.setenv("FER_LIGHTNING_CACHE_DIR", str(tmp_path / "cache"))
    package = tmp_path / "pkg"
    package.mkdir()
    source = package / "targets_for_cache.py"
    source.write_text("class Net:\n    def __init__(self, width: int = 1) -> None:\n"
                      "        pass\n")
    monkeypatch.syspath_prepend(str(package))
    assert signatures.signature("targets_for_cache.Net").parameters == ("width",)
    assert signatures.signature("targets_for_cache.Net", allow_import=False) is not None
    source.write_text("class Net:\n    def __init__(self, width: int = 1, depth: int = 2"
                      ") -> None:\n        pass\n")
    os.utime(source, ns=(0, 0))  # a different stamp even within the clock's resolution
    assert signatures.signature("targets_for_cache.Net", allow_import=False) is None


def test_a_cache_file_that_does_not_parse_is_ignored(tmp_path, monkeypatch):
    monkeypatch.setenv("FER_LIGHTNING_CACHE_DIR", str(tmp_path))
    path = signatures.cache_file()
    path.write_text("{not json")
    assert signatures.signature(f"{__name__}.Sample", allow_import=False) is None
    assert signatures.signature(f"{__name__}.Sample").parameters[0] == "width"
    path.write_text(json.dumps({f"{__name__}.Sample": {"files": "nonsense"}}))
    assert signatures.signature(f"{__name__}.Sample", allow_import=False) is None
