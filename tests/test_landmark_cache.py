"""The landmark cache: computed once, resumed after an interruption, keyed by content,
root and backend settings, shared by concurrent processes, repaired when damaged; the
quality filter and missing-face policies; the DataModule integration."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import skimage.data
from landmark_fixtures import CountingExtractor, TinySource, make_cache

from fer_lightning.data.datamodule import FERDataModule
from fer_lightning.data.landmarks.config import LandmarksConfig
from fer_lightning.data.landmarks.content import (
    FileDigestMemo,
    digest_method,
    sample_digests,
    source_identity,
)
from fer_lightning.data.landmarks.schema import canonical_mean_shape
from fer_lightning.data.sources.base import SPLITS, ListedImage, RawSample, SplitInfo
from fer_lightning.data.summary import format_text
from fer_lightning.train import train

REPO = Path(__file__).resolve().parents[1]


def fresh_points(tmp_path: Path, source: TinySource | None = None) -> np.ndarray:
    cache = make_cache(tmp_path / "fresh", CountingExtractor(), source=source)
    cache.compute()
    return cache.load().points


def test_first_run_extracts_everything_second_run_nothing(tmp_path: Path) -> None:
    first = CountingExtractor()
    assert make_cache(tmp_path, first).compute() == 10
    assert first.calls == 10
    second = CountingExtractor()
    cache = make_cache(tmp_path, second)
    assert cache.complete and cache.compute() == 0
    arrays = cache.load()
    assert second.calls == 0
    assert arrays.points.shape == (10, 68, 2) and arrays.valid.dtype == bool
    np.testing.assert_array_equal(arrays.valid, np.arange(10) % 4 != 3)
    np.testing.assert_allclose(arrays.points[5, 0], [0.05, 0.05])
    assert np.isnan(arrays.points[3]).all() and np.isnan(arrays.crop_box).all()
    assert np.isnan(arrays.face_box).all()  # no detector box, no photo crop
    np.testing.assert_array_equal(arrays.extra["box"][:, 0][arrays.valid], np.arange(10)[
        arrays.valid])
    assert not list(cache.directory.glob("chunk_*")) and not list(cache.directory.glob("*.tmp*"))
    done = json.loads((cache.directory / "done.json").read_text())
    assert done["detection"] == {"detected": 8, "missed": 2, "rate": 0.8}
    assert done["digests"] == "decoded image" and len(done["checksums"]["points.npy"]) == 3


def test_interrupted_run_resumes_at_the_first_missing_chunk(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="interrupted"):
        make_cache(tmp_path, CountingExtractor(fail_after=6)).compute()
    cache = make_cache(tmp_path, CountingExtractor())
    assert not cache.complete
    assert [p.name for p in cache.directory.glob("chunk_*.npz")] == [
        "chunk_000000000-000000004.npz"]  # chunk 0 survived
    resumed = CountingExtractor()
    assert make_cache(tmp_path, resumed).compute() == 6
    assert resumed.calls == 6
    np.testing.assert_array_equal(cache.load().points, fresh_points(tmp_path))


def test_key_follows_settings_split_root_and_source_settings(tmp_path: Path) -> None:
    base = make_cache(tmp_path, CountingExtractor()).directory
    assert make_cache(tmp_path, CountingExtractor()).directory == base
    assert make_cache(tmp_path, CountingExtractor(scale=0.02)).directory != base
    assert make_cache(tmp_path, CountingExtractor(), split="val").directory != base
    assert make_cache(tmp_path, CountingExtractor(), source=TinySource(seed=1)).directory != base
    # another copy of the dataset (same file names, another root) gets its own entry
    other_copy = TinySource(root=tmp_path / "copy")
    assert make_cache(tmp_path, CountingExtractor(), source=other_copy).directory != base
    assert base.name.startswith("TinySource-train-counting-")


def test_identity_resolves_the_root_and_ignores_private_state(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    os.symlink(tmp_path / "data", tmp_path / "link")
    source = TinySource(root=tmp_path / "link")
    identity = source_identity(source)
    assert identity["root"] == str((tmp_path / "data").resolve())
    assert identity == source_identity(TinySource(root=tmp_path / "data"))
    source.set_value("train", 0, 77)  # content is covered by the digests, not the identity
    assert source_identity(source) == identity


def test_edited_sample_reextracts_only_its_chunk(tmp_path: Path) -> None:
    source = TinySource()
    make_cache(tmp_path, CountingExtractor(), source=source).compute()
    source.set_value("train", 5, 42)  # an image edited in place: same name, same size
    extractor = CountingExtractor()
    cache = make_cache(tmp_path, extractor, source=source)
    assert cache.compute() == 4 and extractor.calls == 4  # rows 4-7 only
    arrays = cache.load()
    np.testing.assert_allclose(arrays.points[5, 0], [0.42, 0.42])
    np.testing.assert_array_equal(arrays.points, fresh_points(tmp_path, source))
    assert json.loads((cache.directory / "done.json").read_text())["generation"] == 2


def test_swapped_samples_of_the_same_size_are_detected(tmp_path: Path) -> None:
    source = TinySource()
    make_cache(tmp_path, CountingExtractor(), source=source).compute()
    source.set_value("train", 1, 6)
    source.set_value("train", 6, 1)  # two rows swapped (FER2013: same length, same file size)
    cache = make_cache(tmp_path, CountingExtractor(), source=source)
    assert cache.compute() == 8
    points = cache.load().points
    np.testing.assert_allclose(points[[1, 6], 0, 0], [0.06, 0.01])


def test_digests_use_the_sources_own_method_when_it_has_one() -> None:
    class Digested(TinySource):
        def sample_digest(self, split: str, index: int) -> bytes:
            return f"{split}/{index}".encode()

    fast, decoded = Digested(), TinySource()
    assert not np.array_equal(sample_digests(fast, "train", 10),
                              sample_digests(decoded, "train", 10))
    fast.set_value("train", 0, 99)  # the method decides: unchanged digest
    np.testing.assert_array_equal(sample_digests(fast, "train", 10),
                                  sample_digests(Digested(), "train", 10))


class FileSource(TinySource):
    """TinySource whose samples are listed as image files (with optional face boxes)."""

    def __init__(self, folder: Path, boxes: list | None = None) -> None:
        super().__init__()
        self.files = []
        for index in range(10):
            self.files.append(folder / f"{index}.png")
            self.files[-1].write_bytes(bytes([index]) * 64)
        self.boxes = boxes or [None] * 10

    def image_files(self, split: str) -> list[ListedImage]:
        return [ListedImage(path, box=box)
                for path, box in zip(self.files, self.boxes, strict=True)]


def test_image_files_are_hashed_once_and_again_only_when_they_change(tmp_path: Path) -> None:
    source = FileSource(tmp_path)
    memo_file = tmp_path / "memo" / "file_digests.json"
    first_memo = FileDigestMemo(memo_file)
    first = sample_digests(source, "train", 10, first_memo)
    assert first_memo.hashed == 10 and digest_method(source, "train", 10) == "image files"
    second_memo = FileDigestMemo(memo_file)
    np.testing.assert_array_equal(sample_digests(source, "train", 10, second_memo), first)
    assert second_memo.hashed == 0  # every file's stat signature matched: nothing read
    source.files[3].write_bytes(b"edited in place")
    third_memo = FileDigestMemo(memo_file)
    third = sample_digests(source, "train", 10, third_memo)
    assert third_memo.hashed == 1
    changed = np.flatnonzero((third != first).any(axis=1))
    assert changed.tolist() == [3]


def test_a_face_box_is_part_of_an_image_files_digest(tmp_path: Path) -> None:
    plain = sample_digests(FileSource(tmp_path), "train", 10)
    boxes = [None] * 9 + [(1, 2, 30, 30)]
    boxed = sample_digests(FileSource(tmp_path, boxes), "train", 10)
    assert np.flatnonzero((plain != boxed).any(axis=1)).tolist() == [9]


def test_three_processes_on_one_cache_dir_share_the_work(tmp_path: Path) -> None:
    """Three extractions started together (a SLURM array's first jobs) all succeed with
    identical arrays, and every sample is extracted exactly once among them."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), str(REPO / "tests")])}
    code = "import sys, landmark_fixtures as f; f.extract_in_subprocess(*sys.argv[1:])"
    processes = [subprocess.Popen([sys.executable, "-c", code, str(tmp_path / "cache"),
                                   str(tmp_path / f"out{i}.npz"), "0.01"], env=env,
                                  stderr=subprocess.PIPE, text=True) for i in range(3)]
    errors = [process.communicate(timeout=120)[1] for process in processes]
    assert [process.returncode for process in processes] == [0, 0, 0], errors
    outputs = [np.load(tmp_path / f"out{i}.npz") for i in range(3)]
    for out in outputs[1:]:
        for key in ("points", "valid", "box"):
            np.testing.assert_array_equal(out[key], outputs[0][key])
    assert sum(int(out["extracted"]) for out in outputs) == 40
    assert outputs[0]["valid"].sum() == 30 and np.isfinite(outputs[0]["points"][0]).all()


def test_damaged_chunk_file_is_named_and_reextracted(tmp_path: Path, caplog) -> None:
    with pytest.raises(RuntimeError, match="interrupted"):
        make_cache(tmp_path, CountingExtractor(fail_after=6)).compute()
    [chunk] = make_cache(tmp_path, CountingExtractor()).directory.glob("chunk_*.npz")
    chunk.write_bytes(chunk.read_bytes()[:200])  # truncated: a killed copy, a full disk
    extractor = CountingExtractor()
    with caplog.at_level(logging.WARNING):
        cache = make_cache(tmp_path, extractor)
        assert cache.compute() == 10
    assert any(str(chunk) in record.getMessage() and "damaged" in record.getMessage()
               for record in caplog.records)
    np.testing.assert_array_equal(cache.load().points, fresh_points(tmp_path))


def test_damaged_merged_rows_are_named_and_reextracted(tmp_path: Path, caplog) -> None:
    cache = make_cache(tmp_path, CountingExtractor())
    cache.compute()
    done = json.loads((cache.directory / "done.json").read_text())
    points = cache.directory / done["arrays"] / "points.npy"
    data = bytearray(points.read_bytes())
    row = 68 * 2 * 4
    data[-5 * row - 8: -5 * row] = b"\xff" * 8  # flip bytes inside row 4 (of 10)
    points.write_bytes(bytes(data))
    extractor = CountingExtractor()
    with caplog.at_level(logging.WARNING):
        repaired = make_cache(tmp_path, extractor)
        assert repaired.compute() == 4 and extractor.calls == 4
    assert any(str(points) in r.getMessage() and "rows 4-7" in r.getMessage()
               for r in caplog.records)
    np.testing.assert_array_equal(repaired.load().points, fresh_points(tmp_path))


def test_damaged_array_header_rebuilds_the_split(tmp_path: Path, caplog) -> None:
    cache = make_cache(tmp_path, CountingExtractor())
    cache.compute()
    done = json.loads((cache.directory / "done.json").read_text())
    valid = cache.directory / done["arrays"] / "valid.npy"
    valid.write_bytes(b"not a numpy file")
    with caplog.at_level(logging.WARNING):
        repaired = make_cache(tmp_path, CountingExtractor())
        assert repaired.compute() == 10
    assert any(str(valid) in r.getMessage() for r in caplog.records)
    np.testing.assert_array_equal(repaired.load().valid, np.arange(10) % 4 != 3)


def test_chunk_size_change_across_a_resume(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="interrupted"):
        make_cache(tmp_path, CountingExtractor(fail_after=6)).compute()  # rows 0-3 saved
    resumed = make_cache(tmp_path, CountingExtractor(), chunk_size=3)
    assert resumed.compute() < 10  # the saved rows are reused
    np.testing.assert_array_equal(resumed.load().points, fresh_points(tmp_path))
    again = make_cache(tmp_path, CountingExtractor(), chunk_size=5)
    assert again.compute() == 0  # merged rows do not depend on the chunk size


def test_old_layout_entry_is_named_and_not_reused(tmp_path: Path, caplog) -> None:
    old = tmp_path / "TinySource-train-counting-0123456789abcdef"
    old.mkdir()
    (old / "key.json").write_text(json.dumps({"cache_version": 1}))
    (old / "done.json").write_text(json.dumps({"detected": 10, "missed": 0, "rate": 1.0}))
    with caplog.at_level(logging.WARNING):
        cache = make_cache(tmp_path, CountingExtractor())
        assert cache.compute() == 10
    assert cache.directory != old
    assert any(str(old) in r.getMessage() and "old layout" in r.getMessage()
               for r in caplog.records)


def test_parallel_workers_give_the_serial_result(tmp_path: Path) -> None:
    serial = make_cache(tmp_path / "serial", CountingExtractor())
    serial.compute()
    parallel = make_cache(tmp_path / "parallel", CountingExtractor(), num_workers=2)
    assert parallel.compute() == 10
    np.testing.assert_array_equal(parallel.load().points, serial.load().points)
    np.testing.assert_array_equal(parallel.load().valid, serial.load().valid)


# -- the DataModule, policies and the quality filter ------------------------------------


def datamodule(tmp_path: Path, policy: str, extractor: CountingExtractor | None = None,
               **landmarks) -> FERDataModule:
    return FERDataModule(TinySource(), image_size=8, batch_size=4, landmark_encoding="overlay",
                         landmarks={"name": "counting", "extractor": extractor
                                    or CountingExtractor(), "cache_dir": str(tmp_path),
                                    "on_missing": policy, "chunk_size": 4, **landmarks})


def test_mean_shape_policy_keeps_all_and_reports(tmp_path: Path) -> None:
    dm = datamodule(tmp_path, "mean_shape")
    dm.prepare_data()
    dm.setup("fit")
    # train values 0..9 miss 3, 7; val 10..15 misses 11, 15; test 20..24 misses 23.
    assert dm.landmark_report["train"] == {"detected": 8, "missed": 2, "filtered": 0,
                                           "rate": 0.8, "dropped": 0}
    assert dm.landmark_report["val"]["missed"] == 2 and dm.landmark_report["test"]["missed"] == 1
    train = dm.datasets["train"]
    assert len(train) == 10
    sample = train[3]
    assert not sample["landmarks_valid"] and not sample["face_box_valid"]
    valid_values = [v for v in range(10) if v % 4 != 3]
    expected = np.mean(valid_values) * 0.01  # mean of the training split's valid shapes
    np.testing.assert_allclose(sample["landmarks"].numpy(), expected, rtol=1e-5)
    np.testing.assert_allclose(dm.datasets["val"][1]["landmarks"].numpy(), expected, rtol=1e-5)
    assert train[5]["landmarks_valid"]
    np.testing.assert_allclose(train[5]["landmarks"][0].numpy(), [0.05, 0.05], rtol=1e-6)


def test_drop_policy_removes_and_counts(tmp_path: Path) -> None:
    dm = datamodule(tmp_path, "drop")
    dm.prepare_data()
    dm.setup("fit")
    assert dm.landmark_report["train"]["dropped"] == 2
    assert len(dm.datasets["train"]) == 8 and len(dm.datasets["test"]) == 4
    indices = [int(dm.datasets["train"][i]["index"]) for i in range(8)]
    assert indices == [0, 1, 2, 4, 5, 6, 8, 9]
    assert all(dm.datasets["train"][i]["landmarks_valid"] for i in range(8))
    assert dm.class_counts("train") == [3, 2, 3]  # labels i % 3 of the kept indices


def test_quality_filter_counts_filtered_faces_and_summary_prints_them(tmp_path: Path) -> None:
    """The fake points are all equal (no eyes above a mouth): the geometry check
    removes every detected face; they are reported as filtered, not missed."""
    dm = datamodule(tmp_path, "drop", quality={"min_prob": None})
    dm.prepare_data()
    dm.setup("fit")
    assert dm.landmark_report["train"] == {"detected": 8, "missed": 2, "filtered": 8,
                                           "rate": 0.8, "dropped": 10}
    text = format_text({"train": {"a": 10}, "skipped": {}, "source": "tiny",
                        "landmarks": dm.landmark_report})
    assert "landmarks train: 8 / 10 faces found (80.0 %), 8 filtered by quality, " \
           "10 dropped" in text
    unfiltered = datamodule(tmp_path, "drop")  # same cache: nothing is extracted again
    unfiltered.setup("fit")
    assert unfiltered.landmark_report["train"]["filtered"] == 0


def test_setup_reuses_prepared_cache_and_rejects_bad_policy(tmp_path: Path) -> None:
    datamodule(tmp_path, "mean_shape").prepare_data()
    extractor = CountingExtractor()
    dm = datamodule(tmp_path, "mean_shape", extractor)
    dm.prepare_data()
    dm.setup("fit")
    assert extractor.calls == 0
    with pytest.raises(ValueError, match="landmarks.on_missing must be one of"):
        datamodule(tmp_path, "ignore")


def test_canonical_mean_shape_is_a_face() -> None:
    shape = canonical_mean_shape(68)
    assert shape.shape == (68, 2) and (shape > 0).all() and (shape < 1).all()
    assert shape[36:42, 1].mean() < shape[30, 1] < shape[48:68, 1].mean()
    five = canonical_mean_shape(5)
    assert five[0, 0] < five[1, 0] and five[3, 0] < five[4, 0]
    np.testing.assert_allclose(five[0], shape[36:42].mean(0), rtol=1e-6)


class PhotoSource:
    """A real photo and a face-less grey image as the train split (faces to find and
    crop); one grey image as val and as test."""

    class_names = ["a", "b"]

    def split_info(self, split: str) -> SplitInfo:
        return SplitInfo(labels=np.arange(2 if split == "train" else 1, dtype=np.int64))

    def load(self, split: str, index: int) -> RawSample:
        photo = split == "train" and index == 0
        image = skimage.data.astronaut() if photo else np.full((64, 64, 3), 90, np.uint8)
        return RawSample(image=image, label=index)


def test_photo_dataset_is_cropped_as_the_landmarks_were(tmp_path: Path) -> None:
    dm = FERDataModule(PhotoSource(), image_size=32, channels=3, batch_size=2,
                       landmark_encoding="overlay",
                       landmarks={"name": "dlib", "cache_dir": str(tmp_path),
                                  "precropped": False, "face_detector": "hog",
                                  "crop_margin": 0.25, "extractor": {
                                      "_target_": "fer_lightning.data.landmarks.dlib_backend."
                                                  "DlibExtractor"}})
    dm.prepare_data()
    dm.setup("fit")
    assert dm.landmark_report["train"]["detected"] == 1  # the grey image has no face
    arrays = dm.landmark_caches()["train"].load()
    box = arrays.crop_box[0]
    assert box[2] - box[0] == box[3] - box[1]  # square crop around the face
    assert box[0] < 224 < box[2] and box[1] < 126 < box[3]  # MediaPipe's nose tip
    face = dm.datasets["train"][0]
    assert face["landmarks_valid"] and face["image"].shape == (3, 32, 32)
    nose = face["landmarks"][30].numpy()
    assert 0.3 < nose[0] < 0.7 and 0.3 < nose[1] < 0.8  # centred in the crop
    # the HOG detection inside a 25 %-margin crop: 1 / 1.5 of its side, centred
    assert face["face_box_valid"]
    np.testing.assert_allclose(face["face_box"].numpy(), [1 / 6, 1 / 6, 5 / 6, 5 / 6],
                               atol=0.02)
    assert not dm.datasets["train"][1]["landmarks_valid"]


def test_fast_dev_run_with_dlib_on_synthetic_faces(make_cfg, tmp_path: Path) -> None:
    cache_dir = tmp_path / "landmark_cache"
    cfg = make_cfg("landmarks=dlib", f"landmarks.cache_dir={cache_dir}",
                   "data.source.train_size=16", "data.source.val_size=8",
                   "data.source.test_size=8", "data.batch_size=8", "trainer.fast_dev_run=true")
    assert cfg.landmarks.precropped is True  # synthetic data declares nothing: pre-cropped
    results = train(cfg)
    assert "test" in results
    reports = {path.parent.name.split("-")[1]: json.loads(path.read_text())
               for path in cache_dir.glob("*/done.json")}
    assert set(reports) == set(SPLITS)
    assert all(report["digests"] == "sample_digest" for report in reports.values())
    train_report = reports["train"]["detection"]
    assert train_report["detected"] + train_report["missed"] == 16
    assert train_report["rate"] > 0.5  # drawn faces: dlib finds most of them


@pytest.mark.parametrize("backend, target, points", [
    ("dlib", "DlibExtractor", 68), ("mediapipe", "MediapipeExtractor", 68),
    ("mtcnn", "MtcnnExtractor", 5)])
def test_backend_configs_compose_into_pipelines(make_cfg, backend: str, target: str,
                                                points: int) -> None:
    from fer_lightning.data.landmarks.pipeline import build_pipeline

    cfg = make_cfg(f"landmarks={backend}", "landmarks.precropped=false")
    config = LandmarksConfig.from_mapping(cfg.landmarks)
    assert config.cache_dir.endswith("landmark_cache") and config.on_missing == "mean_shape"
    pipeline = build_pipeline(config)
    assert type(pipeline.extractor).__name__ == target and pipeline.num_points == points
    assert pipeline.cropper is not None and pipeline.settings["crop"]["margin"] == 0.25
    assert build_pipeline(config, precropped=True).cropper is None
    assert (pipeline.quality is not None) == (backend == "mtcnn")
    assert config == LandmarksConfig.from_mapping(config.to_dict())

