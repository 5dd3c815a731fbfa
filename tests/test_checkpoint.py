"""Checkpoint safety and metadata: weights_only loading, clear errors, class-name checks."""

from __future__ import annotations

import pytest
import torch

from fer_lightning import checkpoint as ckpt
from fer_lightning.build import build_trained_net
from fer_lightning.config import ConfigError
from fer_lightning.train import train
from tests.fixtures_inference import write_checkpoint, write_malicious

FER2013 = ["angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"]
RAFDB = ["surprise", "fear", "disgust", "happiness", "sadness", "anger", "neutral"]


@pytest.fixture(scope="module")
def valid_checkpoint(tmp_path_factory):
    return write_checkpoint(["model=mini_xception", "model.num_modules=2"],
                            tmp_path_factory.mktemp("valid") / "net.ckpt")


@pytest.mark.parametrize("zip_format", [True, False], ids=["zip", "legacy"])
def test_malicious_pickle_is_refused_and_never_runs(tmp_path, monkeypatch, zip_format):
    monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
    marker = tmp_path / "marker"
    path = write_malicious(tmp_path / "evil.ckpt", marker, zip_format)
    with pytest.raises(ckpt.CheckpointError, match="objects other than tensors") as error:
        ckpt.load_checkpoint(path)
    assert str(path) in str(error.value)
    assert not marker.exists(), "unpickling the checkpoint ran code"


def test_train_refuses_a_malicious_ckpt_path_even_when_torch_is_told_to_unpickle(
        make_cfg, tmp_path, monkeypatch):
    # Before the fix, Lightning loaded ckpt_path with torch's default weights_only, which
    # this environment variable turns off: the pickle ran.
    monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
    marker = tmp_path / "marker"
    path = write_malicious(tmp_path / "evil.ckpt", marker)
    with pytest.raises(ckpt.CheckpointError, match="objects other than tensors"):
        train(make_cfg("train=false", f"ckpt_path={path}", "logger=none"))
    assert not marker.exists()


def test_broken_and_foreign_files_say_what_is_wrong(tmp_path, valid_checkpoint):
    with pytest.raises(ckpt.CheckpointError, match="no such checkpoint file"):
        ckpt.load_checkpoint(tmp_path / "missing.ckpt")
    truncated = tmp_path / "truncated.ckpt"
    truncated.write_bytes(valid_checkpoint.read_bytes()[:2000])
    with pytest.raises(ckpt.CheckpointError, match="truncated or corrupt"):
        ckpt.load_checkpoint(truncated)
    empty = tmp_path / "empty.ckpt"
    empty.write_bytes(b"")
    with pytest.raises(ckpt.CheckpointError, match="not a readable torch checkpoint"):
        ckpt.load_checkpoint(empty)
    state_dict = tmp_path / "weights.pth"
    torch.save({"conv.weight": torch.zeros(2)}, state_dict)
    with pytest.raises(ckpt.CheckpointError, match="not a fer_lightning checkpoint"):
        ckpt.load_checkpoint(state_dict)
    lightning_only = tmp_path / "other.ckpt"
    torch.save({"state_dict": {}, "epoch": 3}, lightning_only)
    with pytest.raises(ckpt.CheckpointError, match="without fer_lightning metadata"):
        ckpt.load_checkpoint(lightning_only)


def test_a_newer_format_asks_for_an_upgrade(tmp_path, valid_checkpoint):
    checkpoint = torch.load(valid_checkpoint, weights_only=True)
    checkpoint["fer_lightning"]["format_version"] = ckpt.FORMAT_VERSION + 1
    checkpoint["fer_lightning"]["package_version"] = "9.0.0"
    newer = tmp_path / "newer.ckpt"
    torch.save(checkpoint, newer)
    with pytest.raises(ckpt.CheckpointError,
                       match=r"written by fer_lightning 9\.0\.0 in checkpoint format 2.*upgrade"):
        ckpt.load_checkpoint(newer)


def test_rebuilt_net_has_the_checkpoint_weights(valid_checkpoint):
    checkpoint = ckpt.load_checkpoint(valid_checkpoint)
    net = build_trained_net(checkpoint)
    expected = {key[4:]: value for key, value in checkpoint["state_dict"].items()
                if key.startswith("net.")}
    assert net.state_dict().keys() == expected.keys()
    assert all(torch.equal(net.state_dict()[key], value) for key, value in expected.items())
    assert not net.training
    assert net(torch.zeros(2, 1, 48, 48)).shape == (2, 7)


def test_class_names_must_match_or_be_remapped_by_name():
    assert ckpt.label_mapping(FER2013, FER2013) is None
    with pytest.raises(ConfigError) as error:
        ckpt.label_mapping(FER2013, RAFDB)
    message = str(error.value)
    assert str(FER2013) in message and str(RAFDB) in message and "remap=true" in message
    # RAF-DB's labels onto a FER2013-ordered net: anger = angry, happiness = happy, ...
    assert ckpt.label_mapping(FER2013, RAFDB, remap=True) == [5, 2, 1, 3, 4, 0, 6]
    assert ckpt.label_mapping(FER2013, ["happy", "neutral"], remap=True) == [3, 6]


def test_names_that_do_not_match_need_an_explicit_mapping():
    names = ["joy", "neutral"]
    with pytest.raises(ConfigError, match=r"dataset classes \['joy'\] have no checkpoint class"):
        ckpt.label_mapping(FER2013, names, remap=True)
    assert ckpt.label_mapping(FER2013, names, remap={"joy": "happy"}) == [3, 6]
    with pytest.raises(ConfigError, match="several dataset classes map to one"):
        ckpt.label_mapping(FER2013, ["happy", "happiness"], remap=True)
