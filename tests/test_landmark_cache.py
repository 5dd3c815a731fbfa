"""The landmark cache: computed once, resumed after an interruption, keyed by what
changes its content; the missing-face policies; the DataModule integration."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import skimage.data

from fer_lightning.data.datamodule import FERDataModule
from fer_lightning.data.landmarks.cache import (
    LandmarkCache,
    LandmarkPipeline,
    canonical_mean_shape,
    source_fingerprint,
)
from fer_lightning.data.sources.base import SPLITS, RawSample, SplitInfo
from fer_lightning.train import train

SIZES = {"train": 10, "val": 6, "test": 5}


class TinySource:
    """``SIZES`` samples per split; sample i's image is filled with value i, its label is
    i % 3. Counts ``load`` calls."""

    class_names = ["a", "b", "c"]

    def __init__(self, seed: int = 0) -> None:
        self.seed = seed

    def split_info(self, split: str) -> SplitInfo:
        return SplitInfo(labels=np.arange(SIZES[split]) % 3)

    def load(self, split: str, index: int) -> RawSample:
        image = np.full((8, 8), index + 10 * SPLITS.index(split), np.uint8)
        return RawSample(image=image, label=index % 3)

    def fingerprint(self) -> str:
        return f"tiny-{self.seed}"


class CountingExtractor:
    """Points derived from the image value; a face is "missed" where value % 4 == 3.
    Counts calls; raises after ``fail_after`` calls (a simulated interruption)."""

    name = "counting"
    num_points = 68

    def __init__(self, scale: float = 0.01, fail_after: int | None = None) -> None:
        self.scale, self.fail_after, self.calls = scale, fail_after, 0

    @property
    def settings(self) -> dict:
        return {"scale": self.scale}

    @property
    def extra_shapes(self) -> dict:
        return {"box": (4,)}

    def extract(self, image: np.ndarray, face_box=None):
        if self.fail_after is not None and self.calls >= self.fail_after:
            raise RuntimeError("interrupted")
        self.calls += 1
        value = int(image[0, 0])
        if value % 4 == 3:
            return None, {"box": np.full(4, np.nan, np.float32)}
        points = np.full((68, 2), value * self.scale, np.float32)
        return points, {"box": np.full(4, value, np.float32)}


def make_cache(root: Path, extractor: CountingExtractor, split: str = "train",
               source: TinySource | None = None, **kwargs) -> LandmarkCache:
    return LandmarkCache(root, source or TinySource(), split, LandmarkPipeline(extractor),
                         chunk_size=4, progress=False, **kwargs)


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
    np.testing.assert_array_equal(arrays.extra["box"][:, 0][arrays.valid], np.arange(10)[
        arrays.valid])
    assert not list(cache.directory.glob("chunk_*")) and not list(cache.directory.glob("*.tmp*"))
    assert json.loads((cache.directory / "done.json").read_text()) == {
        "detected": 8, "missed": 2, "rate": 0.8}


def test_interrupted_run_resumes_at_the_first_missing_chunk(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="interrupted"):
        make_cache(tmp_path, CountingExtractor(fail_after=6)).compute()
    cache = make_cache(tmp_path, CountingExtractor())
    assert not cache.complete
    assert [start for start, _, _ in cache.missing_chunks()] == [4, 8]  # chunk 0 survived
    resumed = CountingExtractor()
    assert make_cache(tmp_path, resumed).compute() == 6
    assert resumed.calls == 6
    fresh = make_cache(tmp_path / "fresh", CountingExtractor())
    fresh.compute()
    np.testing.assert_array_equal(cache.load().points, fresh.load().points)


def test_key_follows_settings_split_source_and_size(tmp_path: Path) -> None:
    base = make_cache(tmp_path, CountingExtractor()).directory
    assert make_cache(tmp_path, CountingExtractor()).directory == base
    assert make_cache(tmp_path, CountingExtractor(scale=0.02)).directory != base
    assert make_cache(tmp_path, CountingExtractor(), split="val").directory != base
    assert make_cache(tmp_path, CountingExtractor(), source=TinySource(seed=1)).directory != base
    assert base.name.startswith("TinySource-train-counting-")


def test_fingerprint_fallback_hashes_config_and_named_files(tmp_path: Path) -> None:
    class NoFingerprint:
        def __init__(self, root: Path, fraction: float) -> None:
            self.root, self.fraction = root, fraction
            self._loaded = None  # private lazy state: not part of the key

    (tmp_path / "labels.csv").write_text("a,b\n")
    source = NoFingerprint(tmp_path, 0.1)
    key = source_fingerprint(source)
    source._loaded = np.zeros(100)
    assert source_fingerprint(source) == key
    assert source_fingerprint(NoFingerprint(tmp_path, 0.2)) != key
    (tmp_path / "labels.csv").write_text("a,b\n1,2\n")
    assert source_fingerprint(source) != key
    assert source_fingerprint(TinySource(seed=3)) == "tiny-3"


def test_parallel_workers_give_the_serial_result(tmp_path: Path) -> None:
    serial = make_cache(tmp_path / "serial", CountingExtractor())
    serial.compute()
    parallel = make_cache(tmp_path / "parallel", CountingExtractor(), num_workers=2)
    assert parallel.compute() == 10
    np.testing.assert_array_equal(parallel.load().points, serial.load().points)
    np.testing.assert_array_equal(parallel.load().valid, serial.load().valid)


def datamodule(tmp_path: Path, policy: str, extractor: CountingExtractor | None = None
               ) -> FERDataModule:
    return FERDataModule(TinySource(), image_size=8, batch_size=4, use_landmarks=True,
                         landmark_encoding="overlay",
                         landmarks={"name": "counting", "extractor": extractor
                                    or CountingExtractor(), "cache_dir": str(tmp_path),
                                    "on_missing": policy, "chunk_size": 4})


def test_mean_shape_policy_keeps_all_and_reports(tmp_path: Path) -> None:
    dm = datamodule(tmp_path, "mean_shape")
    dm.prepare_data()
    dm.setup("fit")
    # train values 0..9 miss 3, 7; val 10..15 misses 11, 15; test 20..24 misses 23.
    assert dm.landmark_report["train"] == {"detected": 8, "missed": 2, "rate": 0.8, "dropped": 0}
    assert dm.landmark_report["val"]["missed"] == 2 and dm.landmark_report["test"]["missed"] == 1
    train = dm.datasets["train"]
    assert len(train) == 10
    sample = train[3]
    assert not sample["landmarks_valid"]
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


def test_setup_reuses_prepared_cache_and_rejects_bad_policy(tmp_path: Path) -> None:
    datamodule(tmp_path, "mean_shape").prepare_data()
    extractor = CountingExtractor()
    dm = datamodule(tmp_path, "mean_shape", extractor)
    dm.prepare_data()
    dm.setup("fit")
    assert extractor.calls == 0
    with pytest.raises(ValueError, match="on_missing"):
        datamodule(tmp_path, "ignore")


def test_canonical_mean_shape_is_a_face() -> None:
    shape = canonical_mean_shape(68)
    assert shape.shape == (68, 2) and (shape > 0).all() and (shape < 1).all()
    assert shape[36:42, 1].mean() < shape[30, 1] < shape[48:68, 1].mean()
    five = canonical_mean_shape(5)
    assert five[0, 0] < five[1, 0] and five[3, 0] < five[4, 0]


class PhotoSource:
    """Two real photos as the train split (faces to find and crop), nothing else."""

    class_names = ["a"]

    def split_info(self, split: str) -> SplitInfo:
        return SplitInfo(labels=np.zeros(2 if split == "train" else 0, np.int64))

    def load(self, split: str, index: int) -> RawSample:
        image = skimage.data.astronaut() if index == 0 else np.full((64, 64, 3), 90, np.uint8)
        return RawSample(image=image, label=0)

    def fingerprint(self) -> str:
        return "photos"


def test_photo_dataset_is_cropped_as_the_landmarks_were(tmp_path: Path) -> None:
    dm = FERDataModule(PhotoSource(), image_size=32, channels=3, batch_size=2,
                       use_landmarks=True, landmark_encoding="overlay",
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
    assert reports["train"]["detected"] + reports["train"]["missed"] == 16
    assert reports["train"]["rate"] > 0.5  # drawn faces: dlib finds most of them


@pytest.mark.parametrize("backend, target, points", [
    ("dlib", "DlibExtractor", 68), ("mediapipe", "MediapipeExtractor", 68),
    ("mtcnn", "MtcnnExtractor", 5)])
def test_backend_configs_compose_into_pipelines(make_cfg, tmp_path: Path, backend: str,
                                                target: str, points: int) -> None:
    from omegaconf import OmegaConf

    from fer_lightning.data.landmarks.cache import build_pipeline

    cfg = make_cfg(f"landmarks={backend}", "landmarks.precropped=false")
    config = OmegaConf.to_container(cfg.landmarks, resolve=True)
    assert config["cache_dir"].endswith("landmark_cache") and config["on_missing"] == "mean_shape"
    pipeline = build_pipeline(config)
    assert type(pipeline.extractor).__name__ == target and pipeline.num_points == points
    assert pipeline.cropper is not None and pipeline.settings["crop"]["margin"] == 0.25
    assert build_pipeline({**config, "precropped": True}).cropper is None
