"""A checkpoint write that runs out of disk space is one error naming the folder, and the
previous checkpoint survives it."""

from __future__ import annotations

import errno

import pytest
import torch

import fer_lightning.resume as resume
from fer_lightning.resume import AtomicCheckpointIO


class FullDisk:
    """A file whose device fills up after ``room`` bytes, as a full disk behaves."""

    def __init__(self, file, room: int) -> None:
        self.file, self.room = file, room

    def write(self, data) -> int:
        if len(data) > self.room:
            raise OSError(errno.ENOSPC, "No space left on device")
        self.room -= len(data)
        return self.file.write(data)

    def __getattr__(self, name):
        return getattr(self.file, name)


def test_disk_full_during_a_checkpoint_write_names_the_path(tmp_path, monkeypatch):
    path = tmp_path / "checkpoints" / "last.ckpt"
    AtomicCheckpointIO().save_checkpoint({"epoch": 1}, path)
    real_save = torch.save
    monkeypatch.setattr(resume.torch, "save",
                        lambda obj, file: real_save(obj, FullDisk(file, room=64)))
    with pytest.raises(OSError) as error:
        AtomicCheckpointIO().save_checkpoint({"epoch": 2, "state": torch.zeros(4096)}, path)
    assert error.value.errno == errno.ENOSPC
    assert str(error.value).startswith(f"[Errno {errno.ENOSPC}] no space left on the device "
                                       f"of {path.parent} while writing checkpoint last.ckpt")
    assert error.value.__cause__ is None and error.value.__suppress_context__
    assert torch.load(path, weights_only=True)["epoch"] == 1
    assert [p.name for p in path.parent.iterdir()] == ["last.ckpt"]


def test_other_write_errors_pass_unchanged(tmp_path, monkeypatch):
    def denied(obj, file):
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(resume.torch, "save", denied)
    with pytest.raises(PermissionError, match="Permission denied"):
        AtomicCheckpointIO().save_checkpoint({"epoch": 1}, tmp_path / "a.ckpt")
