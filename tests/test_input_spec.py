"""One input spec per run config, read by the resume check, eval's keep-list, the
trained-model runner and the ONNX metadata."""

from __future__ import annotations

import dataclasses

import pytest
from omegaconf import OmegaConf, open_dict

from fer_lightning import eval as eval_command
from fer_lightning import keys
from fer_lightning.config import ConfigError
from fer_lightning.input_spec import InputSpec, input_spec, resolve_precropped
from fer_lightning.resume import check_same_run


def test_spec_of_a_config_with_landmarks(make_cfg):
    cfg = make_cfg("model=mini_xception", "landmarks=groundtruth", "data.mean=0.4",
                   "data.std=[0.2]")
    spec = input_spec(cfg)
    assert (spec.image_size, spec.channels) == (cfg.data.image_size, cfg.data.channels)
    assert (spec.mean, spec.std) == (0.4, (0.2,))
    assert spec.normalisation() == (0.4, [0.2])
    assert spec.encoding == "overlay" and spec.landmarks == "groundtruth"
    assert set(spec.options) <= set(keys.ENCODING_KEYS) and spec.options
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.image_size = 1  # type: ignore[misc]
    hash(spec)  # frozen and plain: usable as a key


def test_spec_without_landmarks_names_no_encoding(make_cfg):
    spec = input_spec(make_cfg("model=mini_xception", "landmarks=none"))
    assert (spec.encoding, spec.landmarks, spec.encoding_options) == (None, None, ())
    assert isinstance(spec, InputSpec)


@pytest.mark.parametrize(("landmarks", "data", "expected"), [
    (None, None, True), (None, False, False), (True, False, True), (False, True, False)])
def test_precropped_resolved_in_one_place(landmarks, data, expected):
    cfg = OmegaConf.create({"landmarks": {"precropped": landmarks},
                            "data": {"precropped": data}})
    assert resolve_precropped(cfg) is expected


def test_eval_keeps_and_resume_compares_the_same_input_keys():
    assert {f"data.{key}" for key in keys.INPUT_DATA_KEYS} <= set(keys.NET_KEYS)
    assert {f"landmarks.{key}" for key in keys.ENCODING_KEYS} <= set(keys.NET_KEYS)
    assert eval_command.INPUT_DATA_KEYS is keys.INPUT_DATA_KEYS


def test_test_only_run_with_another_normalisation_is_refused(make_cfg, tmp_path):
    """Issue #18: train=false with another data.mean passed the check while eval kept the
    checkpoint's normalisation."""
    cfg = make_cfg("train=false")
    run_dir = tmp_path / "earlier"
    run_dir.mkdir()
    stored = OmegaConf.create(OmegaConf.to_container(cfg, resolve=True))
    (run_dir / "config.yaml").write_text(OmegaConf.to_yaml(stored))
    check_same_run(cfg, run_dir, str(run_dir))  # same config: accepted
    with open_dict(cfg):
        cfg.data.mean = 0.25
    with pytest.raises(ConfigError, match="data.mean"):
        check_same_run(cfg, run_dir, str(run_dir))
