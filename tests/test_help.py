"""`--help` of each command: what it does, its own keys with defaults, the groups it takes."""

from __future__ import annotations

import pytest

from fer_lightning.cli_help import command_help, own_keys
from tests.test_cli import run_cli

PRIVATE = ("_base", "_encoding", "_extracted", "_vgg_cbam_base")


def test_predict_help_lists_its_keys_and_no_training_groups(tmp_path):
    done = run_cli(["--help"], cwd=tmp_path, module="fer_lightning.predict")
    assert done.returncode == 0, done.stderr[-2000:]
    page = done.stdout
    assert page.startswith("python -m fer_lightning.predict [key=value ...]")
    assert "the expression of every face in an image" in page  # what the command does
    assert "  input=??? (required)\n      An image, a folder of images" in page
    assert "  backend=torch\n      torch: the checkpoint's net with PyTorch" in page
    assert "  out=${paths.output_dir}\n" in page  # Hydra's $-substitution left it intact
    assert "Groups it takes: none" in page
    for word in ("model:", "  model ", "loss", "ms_fpn", *PRIVATE, "== Config =="):
        assert word not in page
    assert not list(tmp_path.iterdir()), "--help wrote files"


def test_train_help_lists_groups_with_defaults_and_hides_private_files(tmp_path):
    done = run_cli(["--help"], cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    page = done.stdout
    assert "  seed=42\n" in page and "  verbose=false\n      true: also the third-party" in page
    assert "  data            affectnet, fer2013, ferplus, imagefolder, rafdb, synthetic " \
           "[synthetic]" in page
    assert "  hydra/launcher  local, slurm" in page and "+experiment" in page
    for private in PRIVATE:
        assert private not in page


@pytest.mark.parametrize("command, keys", [
    ("eval", ["task_name", "ckpt_path", "split", "tta", "tta_crop", "remap"]),
    ("export", ["task_name", "ckpt_path", "format", "out", "opset", "parity_input", "detect",
                "tolerance"]),
])
def test_every_scalar_key_of_the_command_is_on_its_page(command, keys):
    page = command_help(command)
    for key in keys:
        assert f"\n  {key}=" in page
    if command == "eval":  # the checkpoint's options are the defaults, not train.yaml's
        assert "  model      mba, mini_xception, ms_fpn, timm, vgg_cbam\n" in page
        assert "hparams_search" not in page and "[synthetic]" not in page


def test_keys_take_the_comment_right_above_them_only():
    text = ("# opening\ndefaults:\n  - paths: default\n  # inside defaults\n  - _self_\n\n"
            "# a: what a is\na: 1\nb: x\n\n# floating comment\n\nc:\n  nested: 2\nd: ???\n")
    assert own_keys(text) == [("a", "1", ["a: what a is"]), ("b", "x", []), ("d", "???", [])]
