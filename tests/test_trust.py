"""Stored configs are data: a checkpoint or ONNX file that names a class this package never
builds is refused by every command before anything in it is built."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml
from omegaconf import OmegaConf

from fer_lightning import checkpoint as ckpt
from fer_lightning import trust
from fer_lightning.config import compose_config
from fer_lightning.eval import compose_eval_config, evaluate
from fer_lightning.export import ensure_onnx, export_onnx
from fer_lightning.predict import Predictor, predict
from fer_lightning.train import train
from tests.fixtures_inference import astronaut, write_checkpoint

TINY_NET = ["model=mini_xception", "model.num_modules=2"]


def payload(marker: Path, **extra: object) -> dict:
    """The red team's node: instantiating it creates ``marker``."""
    return {"_target_": "builtins.open", "_args_": [str(marker), "w"], **extra}


def with_payload(source: Path, target: Path, where: str, node: object) -> Path:
    """A copy of the checkpoint ``source`` whose stored config holds ``node`` at the
    dotted key ``where`` (plain data: it still passes ``weights_only`` loading)."""
    checkpoint = torch.load(source, weights_only=True)
    config = OmegaConf.create(checkpoint[ckpt.METADATA_KEY]["config"])
    OmegaConf.update(config, where, node, force_add=True)
    checkpoint[ckpt.METADATA_KEY]["config"] = OmegaConf.to_container(config)
    torch.save(checkpoint, target)
    return target


@pytest.fixture(scope="module")
def clean_checkpoint(tmp_path_factory) -> Path:
    return write_checkpoint(TINY_NET, tmp_path_factory.mktemp("clean") / "net.ckpt")


@pytest.fixture
def hostile(clean_checkpoint, tmp_path) -> tuple[Path, Path]:
    """(a checkpoint with the payload nested in its model config, the marker path)."""
    marker = tmp_path / "marker.txt"
    path = with_payload(clean_checkpoint, tmp_path / "hostile.ckpt", "model.extra",
                        {"inner": payload(marker)})
    return path, marker


def refused(error: pytest.ExceptionInfo, path: Path, key: str) -> None:
    message = str(error.value)
    assert str(path) in message and key in message and "'builtins.open'" in message
    assert "\n" not in message


def test_every_target_of_the_shipped_configs_is_trusted():
    # The golden files are the composed job configs of the default, every data, landmarks
    # and model option and every experiment (test_config_golden keeps them equal to what
    # composing gives); the other groups' targets come from their own files.
    golden = sorted((Path(__file__).parent / "golden/configs").glob("*.yaml"))
    assert len(golden) >= 30
    for path in golden:
        assert trust.untrusted_target(yaml.safe_load(path.read_text())) is None, path.name


def test_the_trusted_targets_come_from_the_config_files(tmp_path, monkeypatch):
    (tmp_path / "model").mkdir()
    (tmp_path / "model/net.yaml").write_text(
        "_target_: pkg.Net\nblock:\n  - _target_: pkg.Block\n    size: ${data.size}\n")
    assert trust.shipped_targets(tmp_path) == {"pkg.Net", "pkg.Block"}
    assert "fer_lightning.nets.mini_xception.MiniXception" in trust.shipped_targets()
    assert "builtins.open" not in trust.trusted_targets()
    monkeypatch.setenv(trust.TRUST_ENV, "mine.nets.Net, mine.nets.Other")
    assert {"mine.nets.Net", "mine.nets.Other"} <= trust.trusted_targets()


def test_checkpoints_of_earlier_configs_keep_loading():
    """Before fer_lightning.progress.progress_bar the default callbacks named Lightning's
    RichProgressBar: a checkpoint of then (e.g. an early `make weights`) is not refused."""
    stored = {"fer_lightning": {"config": {"callbacks": {
        "progress_bar": {"_target_": "lightning.pytorch.callbacks.RichProgressBar"},
        "model_summary": {"_target_": "lightning.pytorch.callbacks.RichModelSummary"}}}}}
    assert "lightning.pytorch.callbacks.RichProgressBar" not in trust.shipped_targets()
    assert trust.untrusted_target(stored) is None
    trust.check_stored(stored, "old.ckpt")


@pytest.mark.parametrize("where, node, key", [
    ("model.extra", {"_target_": "builtins.open"}, "model.extra._target_"),
    ("model.blocks", [1, {"deep": [{"_target_": "torch.hub.load"}]}],
     "model.blocks[1].deep[0]._target_"),
    ("loss.weight", {"_target_": "builtins.open", "_partial_": True}, "loss.weight._target_"),
    ("landmarks.extractor", {"_target_": "subprocess.run"}, "landmarks.extractor._target_"),
    ("model._target_", "os.system", "model._target_"),
])
def test_any_untrusted_target_at_any_depth_names_its_key(where, node, key):
    stored = OmegaConf.create({"model": {"_target_": "fer_lightning.nets.mba.MBANet"}})
    OmegaConf.update(stored, where, node, force_add=True)
    found = trust.untrusted_target({"fer_lightning": {"config": OmegaConf.to_container(stored)}})
    assert found is not None and found[0] == f"fer_lightning.config.{key}"


def test_interpolations_and_odd_group_options_are_refused():
    with pytest.raises(trust.UntrustedConfigError, match=r"data\.root='\$\{oc.env:HOME\}'"):
        trust.check_stored({"fer_lightning": {"config": {"data": {"root": "${oc.env:HOME}"}}}},
                           "x.ckpt")
    for option in ("fer2013,rafdb", "../../etc", "rafdb data.root=/", 3):
        with pytest.raises(trust.UntrustedConfigError, match="fer_lightning.choices.data"):
            trust.check_stored({"fer_lightning": {"choices": {"data": option}}}, "x.ckpt")
    trust.check_stored({"fer_lightning": {"choices": {"data": "fer2013",
                                                      "hydra/launcher": "basic"}}}, "x.ckpt")


def test_deep_nesting_and_long_values_stay_one_short_line():
    deep: list = []
    node = deep
    for _ in range(5000):
        node.append([])
        node = node[0]
    with pytest.raises(trust.UntrustedConfigError, match="nested more than 100 levels"):
        trust.check_stored({"fer_lightning": {"config": {"model": deep}}}, "x.ckpt")
    with pytest.raises(trust.UntrustedConfigError) as error:
        trust.check_stored({"model": {"_target_": "x" * 10_000}}, "x.ckpt")
    assert len(str(error.value)) < 500


def test_loading_refuses_the_payload(hostile):
    path, marker = hostile
    with pytest.raises(trust.UntrustedConfigError) as error:
        ckpt.load_checkpoint(path)
    refused(error, path, "fer_lightning.config.model.extra.inner._target_")
    assert not marker.exists()


def test_eval_refuses_the_payload(hostile, tmp_path):
    path, marker = hostile
    with pytest.raises(trust.UntrustedConfigError) as error:
        evaluate(compose_eval_config([f"ckpt_path={path}"], tmp_path / "eval"))
    refused(error, path, "model.extra.inner._target_")
    assert not marker.exists()


def test_predict_refuses_the_payload(hostile, tmp_path):
    path, marker = hostile
    image = tmp_path / "face.png"
    from PIL import Image

    Image.fromarray(astronaut(64)).save(image)
    cfg = compose_config([f"ckpt_path={path}", f"input={image}", "detect=false",
                          "progress=false"], tmp_path / "out", config_name="predict")
    with pytest.raises(trust.UntrustedConfigError) as error:
        predict(cfg)
    refused(error, path, "model.extra.inner._target_")
    assert not marker.exists()


def test_export_refuses_the_payload(hostile, tmp_path):
    path, marker = hostile
    with pytest.raises(trust.UntrustedConfigError) as error:
        export_onnx(path, tmp_path / "net.onnx", images=[astronaut(64)], detect=False)
    refused(error, path, "model.extra.inner._target_")
    assert not marker.exists() and not (tmp_path / "net.onnx").exists()


@pytest.mark.parametrize("train_first", [False, True], ids=["train=false", "resume"])
def test_training_from_the_checkpoint_refuses_the_payload(hostile, make_cfg, train_first):
    path, marker = hostile
    cfg = make_cfg(*TINY_NET, f"train={str(train_first).lower()}", f"ckpt_path={path}",
                   "logger=none", "trainer.max_epochs=1")
    with pytest.raises(trust.UntrustedConfigError) as error:
        train(cfg)
    refused(error, path, "model.extra.inner._target_")
    assert not marker.exists()


def test_predict_refuses_an_onnx_file_with_the_payload(clean_checkpoint, tmp_path):
    import onnx

    onnx_path = export_onnx(clean_checkpoint, tmp_path / "net.onnx", images=[astronaut(64)],
                            detect=False).path
    marker = tmp_path / "marker.txt"
    graph = onnx.load(str(onnx_path))
    for prop in graph.metadata_props:
        if prop.key == "fer_lightning":
            metadata = json.loads(prop.value)
            metadata["config"]["landmarks"].update(enabled=True, extractor=payload(marker))
            prop.value = json.dumps(metadata)
    onnx.save(graph, str(onnx_path))
    with pytest.raises(trust.UntrustedConfigError) as error:
        Predictor.from_checkpoint(onnx_path)
    refused(error, onnx_path, "fer_lightning.config.landmarks.extractor._target_")
    assert not marker.exists()


# -- backend=onnx: a .onnx beside a checkpoint is used only if it came from it ----------


def onnx_properties(path: Path) -> dict[str, str]:
    import onnx

    return {prop.key: prop.value for prop in onnx.load(str(path)).metadata_props}


@pytest.fixture(scope="module")
def other_checkpoint(tmp_path_factory) -> Path:
    """A checkpoint of the same net with other class names."""
    return write_checkpoint(TINY_NET, tmp_path_factory.mktemp("other") / "other.ckpt",
                            ["a", "b", "c"])


def test_export_stores_the_checkpoint_digest(clean_checkpoint, tmp_path):
    import hashlib

    report = export_onnx(clean_checkpoint, tmp_path / "net.onnx", images=[astronaut(64)],
                         detect=False)
    expected = hashlib.sha256(clean_checkpoint.read_bytes()).hexdigest()
    assert onnx_properties(report.path)["checkpoint_sha256"] == expected


def test_a_newer_onnx_from_another_checkpoint_is_exported_again(clean_checkpoint,
                                                                other_checkpoint, tmp_path):
    checkpoint = tmp_path / "net.ckpt"
    checkpoint.write_bytes(clean_checkpoint.read_bytes())
    sibling = checkpoint.with_suffix(".onnx")
    export_onnx(other_checkpoint, sibling, images=[astronaut(64)], detect=False)
    assert sibling.stat().st_mtime >= checkpoint.stat().st_mtime  # newer, but not its own
    with pytest.raises(ckpt.CheckpointError, match="exported from another checkpoint"):
        Predictor.from_checkpoint(checkpoint, backend="onnx")  # the API never guesses
    assert ensure_onnx(checkpoint) == sibling  # the predict command exports it again
    predictor = Predictor.from_checkpoint(checkpoint, backend="onnx")
    assert predictor.model.runner.backend == "onnx"
    assert predictor.class_names == ckpt.class_names(ckpt.load_checkpoint(checkpoint))
    assert json.loads(onnx_properties(sibling)["class_names"]) == predictor.class_names


def test_the_onnx_exported_from_this_checkpoint_is_reused(clean_checkpoint, tmp_path):
    checkpoint = tmp_path / "net.ckpt"
    checkpoint.write_bytes(clean_checkpoint.read_bytes())
    sibling = export_onnx(checkpoint, images=[astronaut(64)], detect=False).path
    import os

    os.utime(checkpoint)  # touched, not changed: the digest still matches
    before = sibling.stat().st_mtime_ns
    ensure_onnx(checkpoint)
    Predictor.from_checkpoint(checkpoint, backend="onnx")
    assert sibling.stat().st_mtime_ns == before


def test_a_corrupt_sibling_onnx_is_exported_again(clean_checkpoint, tmp_path):
    checkpoint = tmp_path / "net.ckpt"
    checkpoint.write_bytes(clean_checkpoint.read_bytes())
    sibling = checkpoint.with_suffix(".onnx")
    sibling.write_bytes(b"\x08\x07garbage" * 100)
    ensure_onnx(checkpoint)
    predictor = Predictor.from_checkpoint(checkpoint, backend="onnx")
    assert predictor.model.runner.backend == "onnx"
    assert "checkpoint_sha256" in onnx_properties(sibling)


@pytest.mark.parametrize("content", [b"\x08\x07garbage" * 100, b""], ids=["garbage", "empty"])
def test_a_corrupt_onnx_file_is_one_named_error(tmp_path, content):
    path = tmp_path / "broken.onnx"
    path.write_bytes(content)
    with pytest.raises(ckpt.CheckpointError, match="not a readable ONNX file") as error:
        Predictor.from_checkpoint(path)
    assert str(path) in str(error.value) and "\n" not in str(error.value)


def test_truncated_onnx_file_is_one_named_error(clean_checkpoint, tmp_path):
    path = export_onnx(clean_checkpoint, tmp_path / "net.onnx", images=[astronaut(64)],
                       detect=False).path
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(ckpt.CheckpointError, match="not a readable ONNX file"):
        Predictor.from_checkpoint(path)


@pytest.mark.parametrize("module, extra", [
    ("fer_lightning.eval", []),
    ("fer_lightning.export", []),
    ("fer_lightning.predict", ["input=."]),
])
def test_the_commands_refuse_the_payload_with_one_line(hostile, module, extra, tmp_path):
    import os
    import subprocess
    import sys

    path, marker = hostile
    done = subprocess.run([sys.executable, "-m", module, f"ckpt_path={path}", *extra],
                          cwd=tmp_path, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])})
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert "Traceback" not in done.stderr and len(lines) == 1, done.stderr[-2000:]
    assert "model.extra.inner._target_='builtins.open'" in lines[0]
    assert not marker.exists()


def test_an_export_that_fails_parity_leaves_no_file_with_the_digest(clean_checkpoint,
                                                                    tmp_path):
    from fer_lightning.export import ExportError

    checkpoint = tmp_path / "net.ckpt"
    checkpoint.write_bytes(clean_checkpoint.read_bytes())
    with pytest.raises(ExportError, match="the file was not written"):
        export_onnx(checkpoint, images=[astronaut(64)], detect=False, tolerance=-1.0)
    assert sorted(path.name for path in tmp_path.iterdir()) == ["net.ckpt"]


# -- a resumed checkpoint's record of its best files names files, never deletes others ---


def test_resuming_a_crafted_best_checkpoint_record_deletes_nothing_outside(make_cfg,
                                                                           tmp_path):
    from tests.conftest import TINY

    first = tmp_path / "first"
    run = [*TINY, "logger=none", "trainer.max_epochs=1"]
    train(make_cfg(*run, tiny=False, output_dir=first))
    last = first / "checkpoints/last.ckpt"
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    second = tmp_path / "second"
    # "<this run's checkpoint folder>/../../victim.txt": inside the folder by its prefix.
    crafted = f"{second}/checkpoints/../../victim.txt"
    checkpoint = torch.load(last, weights_only=True)
    [key] = [name for name in checkpoint["callbacks"] if name.startswith("BestCheckpoint")]
    checkpoint["callbacks"][key].update(
        best_k_models={crafted: torch.tensor(-1.0)}, kth_best_model_path=crafted,
        kth_value=torch.tensor(-1.0), best_model_path=crafted,
        best_model_score=torch.tensor(-1.0))
    torch.save(checkpoint, last)
    results = train(make_cfg(*run[:-1], "trainer.max_epochs=2", f"ckpt_path={first}",
                             tiny=False, output_dir=second))
    assert victim.read_text() == "keep me"
    assert Path(results["checkpoint"]).parent == second / "checkpoints"


def test_the_best_record_keeps_its_own_files_and_recomputes_the_kth(tmp_path):
    folder = tmp_path / "checkpoints"
    folder.mkdir()
    a, b = str(folder / "best-a.ckpt"), str(folder / "best-b.ckpt")
    state = {"dirpath": str(folder), "best_model_path": a, "last_model_path": "s3://x/y",
             "kth_best_model_path": f"{folder}/../outside.ckpt", "kth_value": torch.tensor(0.1),
             "best_k_models": {a: torch.tensor(0.9), b: torch.tensor(0.5),
                               f"{folder}/../outside.ckpt": torch.tensor(0.1),
                               "s3://bucket/any": torch.tensor(0.2)}}
    record = trust.confine_best_record(state, str(folder), "max")
    assert set(record["best_k_models"]) == {a, b}
    assert record["kth_best_model_path"] == b and float(record["kth_value"]) == 0.5
    assert record["best_model_path"] == a and record["last_model_path"] == ""
    assert trust.confine_best_record(state, str(folder), "min")["kth_best_model_path"] == a
