"""Composed job configs are pinned: refactoring the yaml (shared bases, inheritance) must
not change what any experiment or group option composes to.

Each case is what ``python -m fer_lightning <overrides> --cfg job`` prints (interpolations
unresolved), compared as data (key order is cosmetic). After an intended change to a config,
regenerate the files with ``FER_REGEN_GOLDEN=1 pytest tests/test_config_golden.py`` and
review the diff.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml
from hydra import compose, initialize_config_module
from hydra.core.global_hydra import GlobalHydra
from omegaconf import OmegaConf

GOLDEN = Path(__file__).parent / "golden" / "configs"
CONF = Path(__file__).resolve().parents[1] / "fer_lightning" / "conf"


def _options(group: str) -> list[str]:
    return sorted(path.stem for path in (CONF / group).glob("*.yaml")
                  if not path.stem.startswith("_"))


CASES = {
    "default": [],
    **{f"data-{name}": [f"data={name}"] for name in _options("data")},
    **{f"landmarks-{name}": [f"landmarks={name}"] for name in _options("landmarks")},
    **{f"model-{name}": [f"model={name}"] for name in _options("model")},
    **{f"experiment-{name}": [f"+experiment={name}"] for name in _options("experiment")},
}


def job_config(overrides: list[str]) -> dict:
    """The job config (no ``hydra`` node) as plain data, interpolations unresolved."""
    GlobalHydra.instance().clear()
    with initialize_config_module(config_module="fer_lightning.conf", version_base="1.3"):
        cfg = compose("train", overrides=overrides)
    return yaml.safe_load(OmegaConf.to_yaml(cfg))


@pytest.mark.parametrize("name", sorted(CASES))
def test_composed_job_config_is_unchanged(name):
    current = job_config(CASES[name])
    path = GOLDEN / f"{name}.yaml"
    if os.environ.get("FER_REGEN_GOLDEN"):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump(current, sort_keys=False))
    assert path.is_file(), f"no golden config for {name}: run with FER_REGEN_GOLDEN=1"
    assert current == yaml.safe_load(path.read_text()), (
        f"{' '.join(CASES[name]) or 'the default config'} composes differently from {path}")


def test_every_option_has_a_golden_file():
    assert sorted(p.stem for p in GOLDEN.glob("*.yaml")) == sorted(CASES)
