"""One front door: the shared command wrapper, the error prefixes, the data tool's
``--flags`` (old spelling kept with a note), and a Predictor that never exports."""

from __future__ import annotations

import pytest
from lightning.pytorch.utilities.exceptions import SIGTERMException

from fer_lightning import errors
from fer_lightning.cli import SIGTERM_STATUS, run_command
from fer_lightning.data.__main__ import parse


def _raise(error: BaseException):
    def work():
        raise error
    return work


@pytest.mark.parametrize(("error", "line"), [
    (errors.ConfigError("data.batch_size must be a positive integer, got -1"),
     "Config error: data.batch_size must be a positive integer, got -1"),
    (errors.DatasetError("RafDB: split 'test' has no samples"),
     "Dataset error: RafDB: split 'test' has no samples"),
    (errors.CheckpointError("x.ckpt: no such checkpoint file"),
     "Checkpoint error: x.ckpt: no such checkpoint file"),
    (errors.ExportError("differ by 1e-2"), "Export error: differ by 1e-2"),
    (errors.MissingPackage("pip install dlib-bin"), "Missing package: pip install dlib-bin"),
    (errors.ReportError("no run folders"), "Report error: no run folders"),
])
def test_user_error_is_one_line_and_exit_1(error, line):
    with pytest.raises(SystemExit) as stop:
        run_command(_raise(error))
    assert stop.value.code == line  # SystemExit with a string: printed, status 1


def test_errors_keep_their_builtin_bases():
    assert issubclass(errors.ConfigError, ValueError)
    assert issubclass(errors.CheckpointError, errors.ConfigError)
    assert issubclass(errors.MissingPackage, ImportError)
    from fer_lightning.data.landmarks.base import MissingBackendError
    assert issubclass(MissingBackendError, errors.MissingPackage)


def test_sigterm_exits_143_and_other_errors_propagate():
    with pytest.raises(SystemExit) as stop:
        run_command(_raise(SIGTERMException()))
    assert stop.value.code == SIGTERM_STATUS == 143
    with pytest.raises(KeyError):
        run_command(_raise(KeyError("bug")))


def test_command_prefix_and_extra_types():
    seen = []
    with pytest.raises(SystemExit) as stop:
        run_command(_raise(ValueError("bad opset")), also=(ValueError,),
                    prefix="Export error", on_user_error=seen.append)
    assert stop.value.code == "Export error: bad opset" and len(seen) == 1
    assert run_command(lambda: 3) == 3


def test_data_tool_flags(capsys):
    command, options, overrides = parse(["preview", "--out", "a.png", "--per-class=2",
                                         "--split", "val", "data.source.seed=3"])
    assert (command, options["out"], options["per_class"], options["split"]) == \
        ("preview", "a.png", "2", "val")
    assert overrides == ["data.source.seed=3"]
    _, options, _ = parse(["summary", "--verify-images", "--format", "json"])
    assert options["images"] == "full" and options["format"] == "json"
    assert capsys.readouterr().err == ""


def test_data_tool_old_spelling_still_works_with_a_note(capsys):
    _, options, overrides = parse(["summary", "format=json", "data=fer2013"])
    assert options["format"] == "json" and overrides == ["data=fer2013"]
    assert "note: format=json is the old spelling" in capsys.readouterr().err


@pytest.mark.parametrize(("argv", "message"), [
    (["summary", "--colour", "red"], "unknown option --colour"),
    (["preview", "--out"], "--out needs a value"),
])
def test_data_tool_bad_flag_is_named(argv, message):
    with pytest.raises(SystemExit, match=message):
        parse(argv)


def test_predictor_never_exports(tmp_path):
    """backend=onnx needs a current export; the predict command makes it, not Predictor."""
    from fer_lightning.inference.predictor import Predictor

    checkpoint = tmp_path / "best.ckpt"
    checkpoint.write_bytes(b"not read")
    with pytest.raises(errors.CheckpointError, match="export it first"):
        Predictor.from_checkpoint(checkpoint, backend="onnx")
    assert not (tmp_path / "best.onnx").exists()


def test_every_console_script_names_a_command_entry_point():
    import importlib
    import re
    from pathlib import Path

    text = (Path(__file__).parents[1] / "pyproject.toml").read_text()
    section = text.split("[project.scripts]", 1)[1].split("\n[", 1)[0]
    scripts = dict(re.findall(r'^([\w-]+) = "([^"]+)"', section, re.M))  # py3.10: no tomllib
    assert {"fer-train", "fer-eval", "fer-predict", "fer-export", "fer-data",
            "fer-report"} <= set(scripts)
    for target in scripts.values():
        module, _, name = target.partition(":")
        assert callable(getattr(importlib.import_module(module), name)), target


def test_unlisted_backend_package_gets_an_install_line_not_a_key_error():
    from fer_lightning.data.landmarks.base import MissingBackendError, require

    with pytest.raises(MissingBackendError, match="pip install no_such_package_xyz"):
        require("no_such_package_xyz", "newbackend")


def test_fernet_declares_whether_it_runs_image_by_image():
    """The ONNX export reads the declaration, not an attribute named ``detector``."""
    import torch

    from fer_lightning.inference.onnx_export import dynamic_batch
    from fer_lightning.nets.base import FERNet
    from fer_lightning.nets.ms_fpn import MSFPN

    with torch.device("meta"):
        kwargs = dict(num_classes=7, in_channels=3, image_size=96, head={"pool": "gap"},
                      backbone="resnet18")
        with_regions = MSFPN(**kwargs, use_landmarks=True)
        global_only = MSFPN(**kwargs, use_landmarks=False)
    assert with_regions.per_image_graph and not dynamic_batch(with_regions)
    assert not global_only.per_image_graph and dynamic_batch(global_only)
    assert FERNet.per_image_graph is False
