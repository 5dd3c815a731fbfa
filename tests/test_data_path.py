"""The batched data path: uint8 split arrays, the decode cache, the epoch batch sampler
(shuffle, balanced, DDP shards, seed + epoch) and the DataModule's choice of path."""

from __future__ import annotations

import logging
import os

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp
from PIL import Image

import fer_lightning.data.decode_cache as decode_cache
from fer_lightning.data.arrays import (
    BatchLoader,
    EpochBatchSampler,
    decode_in_memory,
    split_arrays,
)
from fer_lightning.data.datamodule import FERDataModule
from fer_lightning.data.dataset import FERDataset
from fer_lightning.data.decode_cache import DecodeCache, to_training_pixels
from fer_lightning.data.sources.synthetic import SyntheticFaces
from fer_lightning.errors import ConfigError, WorkerError
from tests.ddp_shards import rank_indices
from tests.dying_source import DyingInWorkers


def faces(**kwargs) -> SyntheticFaces:
    settings = {"train_size": 40, "val_size": 8, "test_size": 8, **kwargs}
    return SyntheticFaces(**settings)


def test_decode_cache_holds_the_renderers_pixels_and_landmarks_exactly(tmp_path):
    source = faces()
    arrays = DecodeCache(tmp_path, source, "train", 48, 1).load()
    assert arrays["image"].shape == (40, 48, 48) and arrays["image"].dtype == np.uint8
    for index in (0, 17, 39):
        rendered = source.render("train", index)
        np.testing.assert_array_equal(arrays["image"][index], rendered.image)
        np.testing.assert_array_equal(arrays["landmarks"][index], rendered.landmarks)
    assert isinstance(arrays["image"], np.memmap), "read back memory-mapped"


def test_decode_cache_is_reused_and_keyed_by_generator_settings(tmp_path, monkeypatch):
    first = DecodeCache(tmp_path, faces(), "train", 48, 1)
    first.load()

    def no_decoding(*args, **kwargs):
        raise AssertionError("a complete entry was decoded again")

    monkeypatch.setattr(decode_cache, "decode_rows", no_decoding)
    again = DecodeCache(tmp_path, faces(), "train", 48, 1)
    assert again.directory == first.directory
    again.load()
    assert DecodeCache(tmp_path, faces(seed=1), "train", 48, 1).directory != first.directory
    assert DecodeCache(tmp_path, faces(), "train", 32, 1).directory != first.directory
    assert DecodeCache(tmp_path, faces(), "val", 48, 1).directory != first.directory


def test_a_half_written_entry_is_not_used(tmp_path):
    cache = DecodeCache(tmp_path, faces(), "val", 48, 1)
    cache.load()
    (cache.directory / "done.json").unlink()  # killed before the commit
    np.save(cache.directory / "image.npy", np.zeros((3, 48, 48), np.uint8))
    arrays = DecodeCache(tmp_path, faces(), "val", 48, 1).load()
    np.testing.assert_array_equal(arrays["image"][2], faces().render("val", 2).image)


def test_a_killed_builds_temporary_arrays_are_removed_by_the_next_build(tmp_path):
    cache = DecodeCache(tmp_path, faces(), "val", 48, 1)
    cache.directory.mkdir(parents=True)
    left = [cache.directory / "image.npy.tmp99999", cache.directory / "done.json.tmp99999"]
    for path in left:  # what a build killed with SIGKILL leaves
        path.write_bytes(b"\0" * 4096)
    cache.load()
    assert not any(path.exists() for path in left)
    assert sorted(path.name for path in cache.directory.iterdir()) == [
        ".lock", "done.json", "image.npy", "key.json", "landmarks.npy", "landmarks_valid.npy"]


def test_a_split_the_disk_cannot_hold_is_refused_before_anything_is_written(tmp_path,
                                                                           monkeypatch):
    cache = DecodeCache(tmp_path, faces(), "train", 48, 1)
    usage = decode_cache.shutil.disk_usage(tmp_path)
    monkeypatch.setattr(decode_cache.shutil, "disk_usage",
                        lambda path: usage._replace(free=cache.nbytes - 1))
    needed, free = f"{cache.nbytes / 1e6:,.1f}", f"{(cache.nbytes - 1) / 1e6:,.1f}"
    with pytest.raises(ConfigError, match=rf"decode cache .*-train-48px1-.*: the train split "
                                          rf"needs {needed} MB on disk and {free} MB are free "
                                          r"there; set data.cache_dir to a disk with room, "
                                          r"or data.decode_cache=off"):
        cache.load()
    assert not list(cache.directory.glob("*.npy*"))


def test_several_processes_decode_what_one_process_decodes(tmp_path, monkeypatch):
    monkeypatch.setattr(decode_cache, "CHUNK", 16)
    monkeypatch.setattr(decode_cache, "PARALLEL_FROM", 1)
    parallel = DecodeCache(tmp_path / "a", faces(), "train", 48, 1, workers=2).load()
    serial = DecodeCache(tmp_path / "b", faces(), "train", 48, 1, workers=1).load()
    np.testing.assert_array_equal(parallel["image"], serial["image"])


def test_a_worker_killed_mid_build_is_named_and_leaves_nothing_half_written(tmp_path,
                                                                           monkeypatch):
    monkeypatch.setattr(decode_cache, "CHUNK", 16)
    monkeypatch.setattr(decode_cache, "PARALLEL_FROM", 1)
    dying = DyingInWorkers(train_size=40, val_size=8, test_size=8)
    cache = DecodeCache(tmp_path, dying, "train", 48, 1, workers=2)
    with pytest.raises(WorkerError, match=r"decode cache .*-train-48px1-.*: a worker process "
                                          r"ended .* `if __name__ == \"__main__\":`"):
        cache.load()
    assert sorted(path.name for path in cache.directory.iterdir()) == [".lock", "key.json"]
    arrays = DecodeCache(tmp_path, dying, "train", 48, 1, workers=1).load()  # the next run
    np.testing.assert_array_equal(arrays["image"][39], faces().render("train", 39).image)


def test_decode_cache_prints_its_disk_size_before_it_writes(tmp_path, caplog):
    with caplog.at_level(logging.INFO, logger="fer_lightning.data.decode_cache"):
        DecodeCache(tmp_path, faces(), "train", 48, 3).load()
    # 40 x 48 x 48 x 3 pixels + 40 x 68 x 2 float32 landmarks + 40 validity flags
    assert "(0.3 MB on disk)" in caplog.text and "40 train images at 48x48" in caplog.text


def test_split_arrays_give_the_per_sample_paths_batches(tmp_path):
    source = faces(image_size=40, channels=3)
    dataset = FERDataset(source, "train", 32, 3, with_landmarks=True,
                         indices=np.array([5, 1, 30, 2]))  # e.g. on_missing=drop
    arrays = split_arrays(dataset, decode_in_memory(dataset))
    batch = arrays.gather(torch.tensor([2, 0]))
    assert batch["image"].dtype == torch.uint8 and batch["image"].shape == (2, 3, 32, 32)
    for row, position in enumerate((2, 0)):
        sample = dataset[position]
        torch.testing.assert_close(batch["image"][row].float() / 255.0, sample["image"],
                                   rtol=0, atol=0)
        for key in ("label", "index", "landmarks", "landmarks_valid", "face_box_valid"):
            torch.testing.assert_close(batch[key][row], sample[key], rtol=0, atol=0)
    assert batch["index"].tolist() == [30, 5]


def test_sampler_draws_each_epoch_from_seed_plus_epoch():
    sampler = EpochBatchSampler(10, 4, shuffle=True, seed=7, rank=0, num_replicas=1)
    first = torch.cat(list(sampler))
    assert sorted(first.tolist()) == list(range(10)) and len(sampler) == 3
    sampler.set_epoch(1)
    second = torch.cat(list(sampler))
    assert not torch.equal(first, second)
    resumed = EpochBatchSampler(10, 4, shuffle=True, seed=7, rank=0, num_replicas=1)
    resumed.set_epoch(1)
    assert torch.equal(torch.cat(list(resumed)), second)
    ordered = EpochBatchSampler(10, 4, rank=0, num_replicas=1)
    assert torch.cat(list(ordered)).tolist() == list(range(10))


def test_batch_loader_moves_an_epochs_indices_to_the_splits_device_before_gathering():
    """A blocking copy to a GPU waits for the work queued before it, so the indices must
    not cross per batch inside ``gather``; here the split says it lives on the meta
    device and records where the indices it is handed are."""
    class Split:
        device, seen = torch.device("meta"), []

        def gather(self, indices):
            self.seen.append(indices)
            return {}

    sampler = EpochBatchSampler(10, 4, shuffle=True, seed=7, rank=0, num_replicas=1)
    split = Split()
    assert len(list(BatchLoader(split, sampler, batches_done=lambda: 1))) == 2
    assert [i.device.type for i in split.seen] == ["meta", "meta"]
    assert [len(i) for i in split.seen] == [4, 2], "a resumed epoch skips the batches done"
    assert torch.equal(torch.cat(list(sampler.batches(start=1))), sampler.epoch_indices()[4:])


def test_balanced_sampler_draws_classes_evenly():
    labels = np.array([0] * 900 + [1] * 100)
    weights = 1.0 / np.bincount(labels)[labels]
    sampler = EpochBatchSampler(1000, 100, weights=weights, seed=0, rank=0, num_replicas=1)
    drawn = labels[torch.cat(list(sampler)).numpy()]
    assert len(drawn) == 1000 and 0.4 < drawn.mean() < 0.6


@pytest.mark.parametrize("size", [12, 13])
def test_ranks_get_disjoint_shards_that_cover_the_split(size):
    shards = [torch.cat(list(EpochBatchSampler(size, 2, shuffle=True, seed=3, rank=rank,
                                               num_replicas=3))).tolist() for rank in range(3)]
    assert len({len(shard) for shard in shards}) == 1, "every rank runs as many steps"
    assert set().union(*shards) == set(range(size))
    if size % 3 == 0:
        assert sum(len(shard) for shard in shards) == size, "disjoint"


def test_ddp_gloo_ranks_gather_disjoint_shards_of_the_batched_split(tmp_path):
    out = str(tmp_path / "shards.pt")
    port = 29500 + os.getpid() % 1000
    mp.start_processes(rank_indices, args=(2, port, out), nprocs=2, start_method="spawn")
    shards = [shard.tolist() for shard in torch.load(out)]
    assert len(shards[0]) == len(shards[1]) == 15
    assert not set(shards[0]) & set(shards[1])
    assert set(shards[0]) | set(shards[1]) == set(range(30))


def test_datamodule_serves_synthetic_faces_as_batches_from_the_cache(tmp_path, caplog):
    module = FERDataModule(faces(), batch_size=16, cache_dir=str(tmp_path), seed=0)
    with caplog.at_level(logging.INFO, logger="fer_lightning.data.datamodule"):
        module.setup("fit")
    assert "train decode cache" in caplog.text and "gathered by index" in caplog.text
    assert module.data_path("train") == "decode cache"
    assert not module.arrays and not any(tmp_path.iterdir()), "setup alone decodes nothing"
    batch = next(iter(module.train_dataloader()))
    assert batch["image"].dtype == torch.uint8 and batch["image"].shape == (16, 1, 48, 48)
    assert [len(b["label"]) for b in module.val_dataloader()] == [8]
    float_batch = module.on_after_batch_transfer(batch, 0)
    assert float_batch["image"].dtype == torch.float32
    assert float_batch["image"].min() >= -1 and float_batch["image"].max() <= 1


def test_datamodule_refuses_an_unknown_on_device_value():
    with pytest.raises(ValueError, match="data.on_device"):
        FERDataModule(faces(), on_device="gpu")
    with pytest.raises(ValueError, match="data.decode_cache"):
        FERDataModule(faces(), decode_cache="yes")


def test_photo_folders_are_served_from_the_decode_cache_with_the_per_sample_pixels(tmp_path):
    from fer_lightning.data.sources.imagefolder import ImageFolder
    from tests.fixtures_photos import write_imagefolder

    root = write_imagefolder(tmp_path / "faces", {"angry": 20, "happy": 20})
    cached = FERDataModule(ImageFolder(root), image_size=16, channels=3, batch_size=64,
                           cache_dir=str(tmp_path / "cache"))
    per_sample = FERDataModule(ImageFolder(root), image_size=16, channels=3, batch_size=64,
                               decode_cache="off")
    cached.setup("fit")
    per_sample.setup("fit")
    assert cached.data_path("train") == "decode cache"
    assert per_sample.data_path("train") == "per sample"
    assert per_sample.split_arrays("train") is None
    batch = next(iter(cached.train_dataloader()))
    reference = per_sample.datasets["train"]
    for image, index in zip(batch["image"], batch["index"], strict=True):
        position = int(np.flatnonzero(reference.indices == int(index))[0])
        torch.testing.assert_close(image.float() / 255.0, reference[position]["image"],
                                   rtol=0, atol=0)


def test_decode_cache_crops_first_and_is_keyed_by_file_content_and_crop(tmp_path):
    from fer_lightning.data.sources.imagefolder import ImageFolder
    from tests.fixtures_photos import gradient_image, write_image, write_imagefolder

    root = write_imagefolder(tmp_path / "faces", {"angry": 3, "happy": 3})
    source = ImageFolder(root, split_fractions=(0.5, 0.5, 0.0))
    size = len(source.split_info("train").labels)
    boxes = np.full((size, 4), np.nan, np.float32)
    boxes[0] = (0, 0, 12, 24)  # the left half of image 0, stretched to 8 x 8
    Image.fromarray(gradient_image(24, 24)).convert("RGB").save(
        source.image_files("train")[0].path, quality=95)
    cache = DecodeCache(tmp_path / "cache", source, "train", 8, 3, crop_boxes=boxes)
    image = cache.load()["image"]
    path = source.image_files("train")[0].path
    whole = np.asarray(Image.open(path).convert("RGB"))
    np.testing.assert_array_equal(image[0], to_training_pixels(whole[:, :12], 8, 3))
    assert not np.array_equal(image[0], to_training_pixels(whole, 8, 3)), "a crop shows"
    np.testing.assert_array_equal(image[1], to_training_pixels(
        np.asarray(Image.open(source.image_files("train")[1].path).convert("RGB")), 8, 3))
    uncropped = DecodeCache(tmp_path / "cache", source, "train", 8, 3)
    assert uncropped.directory != cache.directory
    write_image(path, (1, 2, 3))
    os.utime(path, (1, 1))  # another stat signature, whatever the clock
    edited = DecodeCache(tmp_path / "cache", ImageFolder(root, split_fractions=(0.5, 0.5, 0.0)),
                         "train", 8, 3, crop_boxes=boxes)
    assert edited.directory != cache.directory


def test_on_device_auto_keeps_a_split_on_the_gpu_only_within_its_share_of_free_memory():
    from fer_lightning.data.datamodule import ON_DEVICE_FRACTION, keep_on_device

    free = 1000
    share = int(ON_DEVICE_FRACTION * free)
    assert keep_on_device("auto", share, free) and not keep_on_device("auto", share + 1, free)
    assert keep_on_device("true", 10 * free, free) and not keep_on_device("false", 1, free)
    module = FERDataModule(faces(), on_device=True)  # Hydra passes booleans as such
    assert module.on_device == "true"


def test_per_sample_path_says_a_mid_epoch_resume_draws_the_rest_anew(tmp_path, caplog):
    from types import SimpleNamespace

    from fer_lightning.data.sources.imagefolder import ImageFolder
    from tests.fixtures_photos import write_imagefolder

    root = write_imagefolder(tmp_path / "faces", {"angry": 20, "happy": 20})
    module = FERDataModule(ImageFolder(root), image_size=16, batch_size=4, decode_cache="off")
    module.setup("fit")
    progress = SimpleNamespace(current=SimpleNamespace(ready=0))
    module.trainer = SimpleNamespace(
        current_epoch=1, fit_loop=SimpleNamespace(epoch_loop=SimpleNamespace(
            batch_progress=progress)))
    with caplog.at_level(logging.WARNING, logger="fer_lightning.data.datamodule"):
        module.train_dataloader()
        assert "drawn anew" not in caplog.text, "an epoch that starts at its beginning"
        progress.current.ready = 3
        module.train_dataloader()
    assert "Resumed 3 batches into epoch 1" in caplog.text and "drawn anew" in caplog.text
