"""Landmark backends on real photos that ship inside packages (docs/landmarks.md).

skimage's astronaut (512 x 512, plus a mission patch that dlib's HOG detector also calls
a face), matplotlib's grace_hopper.jpg (512 x 600) and skimage's LFW subset (25 x 25,
first 100 faces, last 100 not). Every backend is checked for anatomy (eyes above the
mouth, iBUG left/right order, points on the detected face), for agreement with the
others, on a pre-cropped 48 x 48 face and on a face-less grey image.
"""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
from pathlib import Path

import matplotlib.cbook
import numpy as np
import pytest
import skimage.data
from PIL import Image

from fer_lightning.data.landmarks import base
from fer_lightning.data.landmarks.config import QualityFilter
from fer_lightning.data.landmarks.dlib_backend import DlibExtractor
from fer_lightning.data.landmarks.face_crop import (
    FaceCropper,
    HaarDetector,
    HogDetector,
    apply_crop,
    crop_box,
    points_to_image,
    select_face,
)
from fer_lightning.data.landmarks.mediapipe_backend import (
    PROTOBUF_NOISE,
    MediapipeExtractor,
    import_mediapipe,
)
from fer_lightning.data.landmarks.mediapipe_map import MP_TO_IBUG, mesh_to_68
from fer_lightning.data.landmarks.mtcnn_backend import MtcnnExtractor
from fer_lightning.data.landmarks.pipeline import LandmarkPipeline
from fer_lightning.data.landmarks.quality import quality_passes
from fer_lightning.data.landmarks.schema import canonical_mean_shape

PHOTOS = ("astronaut", "grace_hopper")


def load_photo(name: str) -> np.ndarray:
    if name == "astronaut":
        return skimage.data.astronaut()
    path = matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)
    return np.asarray(Image.open(path).convert("RGB"))


@pytest.fixture(scope="module")
def extractors() -> dict[str, object]:
    """One instance per backend for the whole module (models load once)."""
    return {"dlib": DlibExtractor(), "mediapipe": MediapipeExtractor(), "mtcnn": MtcnnExtractor()}


@pytest.fixture(scope="module")
def on_photos(extractors: dict) -> dict[tuple[str, str], dict]:
    """Each backend through the photo path (HOG detect, crop, landmarks) on each photo,
    with the points mapped back to pixels of the full photo."""
    results = {}
    cropper = FaceCropper("hog", margin=0.25)
    face_boxes = {name: cropper.detect(load_photo(name)) for name in PHOTOS}
    for name in PHOTOS:
        image = load_photo(name)
        height, width = image.shape[:2]
        for backend, extractor in extractors.items():
            record = LandmarkPipeline(extractor, cropper)(image)
            pixels = points_to_image(record["points"], record["crop_box"], width, height)
            results[name, backend] = {**record, "pixels": pixels * [width, height],
                                      "face": face_boxes[name]}
    return results


def inter_ocular(points: np.ndarray) -> float:
    return float(np.linalg.norm(points[36:42].mean(0) - points[42:48].mean(0)))


def inside(point: np.ndarray, box: np.ndarray) -> bool:
    return bool(box[0] <= point[0] <= box[2] and box[1] <= point[1] <= box[3])


# -- face detection and cropping -------------------------------------------------------


def test_hog_finds_the_patch_too_and_the_largest_face_wins() -> None:
    image = load_photo("astronaut")
    boxes, scores = HogDetector().detect(image)
    assert len(boxes) == 2  # the face and the mission patch
    face = FaceCropper("hog").detect(image)
    assert inside(np.array([224, 126]), face)  # MediaPipe's nose tip on this photo
    assert not inside(np.array([170, 380]), face)  # the patch centre


def test_select_face_by_size_or_confidence() -> None:
    boxes = np.array([[0, 0, 10, 10], [0, 0, 50, 50], [0, 0, 20, 20]], np.float32)
    scores = np.array([0.9, 0.5, 0.99], np.float32)
    assert select_face(boxes, scores, "largest") == 1
    assert select_face(boxes, scores, "confident") == 2
    assert select_face(np.zeros((0, 4)), np.zeros(0)) is None
    with pytest.raises(ValueError, match="face_select"):
        select_face(boxes, scores, "first")


def test_crop_box_is_square_with_margin_and_pads_outside() -> None:
    box = crop_box(np.array([10, 20, 50, 40]), margin=0.25)
    np.testing.assert_array_equal(box, [0, 0, 60, 60])  # side 40 * 1.5 around (30, 30)
    image = np.arange(16, dtype=np.uint8).reshape(4, 4)
    crop = apply_crop(image, np.array([-1, -1, 3, 3]))
    assert crop.shape == (4, 4)
    assert crop[0, 0] == image[0, 0] and crop[1, 1] == image[0, 0] and crop[3, 3] == image[2, 2]


def test_crop_box_margin_in_pixels_is_the_fer_package_crop() -> None:
    """fer: a square Haar box (x, y, w, w) is cut as [x - 10, x + w + 10) on both axes."""
    np.testing.assert_array_equal(crop_box(np.array([177, 66, 272, 161]), 0.0, 10.0),
                                  [167, 56, 282, 171])
    np.testing.assert_array_equal(crop_box(np.array([10, 20, 50, 40]), 0.25, 5.0),
                                  [-5, -5, 65, 65])  # fraction first, then pixels
    with pytest.raises(ValueError, match="margin_px must be >= 0"):
        FaceCropper("haar", margin=0.0, margin_px=-1)


def test_haar_finds_the_astronaut_face_only() -> None:
    """OpenCV's cascade with fer's settings: one box (no mission patch) around the face."""
    image = load_photo("astronaut")
    boxes, scores = HaarDetector().detect(image)
    assert boxes.shape == (1, 4) and scores.shape == (1,) and scores[0] >= 5
    face = boxes[0]
    assert inside(np.array([224, 126]), face)  # MediaPipe's nose tip on this photo
    assert 80 <= face[2] - face[0] <= 120 and face[2] - face[0] == face[3] - face[1]
    hog = FaceCropper("hog").detect(image)
    overlap = (min(face[2], hog[2]) - max(face[0], hog[0])) * \
        (min(face[3], hog[3]) - max(face[1], hog[1]))
    assert overlap > 0.6 * (hog[2] - hog[0]) * (hog[3] - hog[1])  # same face as dlib's
    assert not len(HaarDetector().detect(np.full((200, 200, 3), 128, np.uint8))[0])


def test_haar_rejects_a_scale_factor_that_never_shrinks() -> None:
    with pytest.raises(ValueError, match="scale_factor must be > 1, got 1.0"):
        HaarDetector(scale_factor=1.0)


# -- real photos -----------------------------------------------------------------------


@pytest.mark.parametrize("photo", PHOTOS)
def test_dlib_68_points_land_on_the_face(on_photos: dict, photo: str) -> None:
    result = on_photos[photo, "dlib"]
    points, face = result["pixels"], result["face"]
    assert result["valid"] and result["points"].shape == (68, 2)
    assert inside(points[30], face)  # nose tip inside the detected face box
    centre = points.mean(0)
    assert np.linalg.norm(centre - (face[:2] + face[2:]) / 2) < 0.25 * (face[2] - face[0])
    # Eyes above the nose tip above the mouth (y grows downwards).
    assert points[36:48, 1].mean() < points[30, 1] < points[48:68, 1].mean()
    # iBUG order: the subject's right eye / brow / jaw start (36, 17, 0) are on the image left.
    assert points[36:42, 0].mean() < points[42:48, 0].mean()
    assert points[17:22, 0].mean() < points[22:27, 0].mean()
    assert points[0, 0] < points[16, 0] and points[48, 0] < points[54, 0]


@pytest.mark.parametrize("photo", PHOTOS)
def test_mediapipe_mapped_68_agree_with_dlib(on_photos: dict, photo: str) -> None:
    dlib_points = on_photos[photo, "dlib"]["pixels"]
    result = on_photos[photo, "mediapipe"]
    assert result["valid"] and result["mesh"].shape == (478, 3)
    assert np.isfinite(result["mesh"]).all()
    iod = inter_ocular(dlib_points)
    error = np.linalg.norm(result["pixels"] - dlib_points, axis=1) / iod
    # Measured: mean 0.06 IOD (jaw worst, up to 0.22), inner face 0.04, nose tip 1-2 px.
    assert error.mean() < 0.10
    assert error[17:].mean() < 0.08
    assert error[30] < 0.06


@pytest.mark.parametrize("photo", PHOTOS)
def test_mtcnn_box_and_5_points_in_image_order(on_photos: dict, photo: str) -> None:
    result = on_photos[photo, "mtcnn"]
    points, face = result["pixels"], result["face"]
    assert result["valid"] and result["points"].shape == (5, 2)
    assert result["prob"][0] > 0.9
    assert all(inside(point, face) for point in points)
    left_eye, right_eye, nose, left_mouth, right_mouth = points
    assert left_eye[0] < right_eye[0] and left_mouth[0] < right_mouth[0]
    assert max(left_eye[1], right_eye[1]) < nose[1] < min(left_mouth[1], right_mouth[1])
    dlib_points = on_photos[photo, "dlib"]["pixels"]
    iod = inter_ocular(dlib_points)
    expected = np.stack([dlib_points[36:42].mean(0), dlib_points[42:48].mean(0),
                         dlib_points[30], dlib_points[48], dlib_points[54]])
    assert (np.linalg.norm(points - expected, axis=1) / iod).max() < 0.12


@pytest.mark.parametrize("photo", PHOTOS)
def test_mtcnn_face_box_is_its_own_detection_and_passes_the_quality_filter(
        on_photos: dict, photo: str) -> None:
    """The record's face box is MTCNN's box (in the crop's [0, 1] coordinates), close to
    the HOG detection the crop was cut around; a real face passes the default filter."""
    result = on_photos[photo, "mtcnn"]
    np.testing.assert_array_equal(result["face_box"], result["box"])
    crop = result["crop_box"]
    side = crop[2] - crop[0]
    mtcnn_pixels = result["face_box"] * side + np.tile(crop[:2], 2)
    hog = result["face"]
    assert np.abs(mtcnn_pixels - hog).max() < 0.25 * (hog[2] - hog[0])
    assert not result["filtered"] and result["valid"]
    dlib = on_photos[photo, "dlib"]  # no box of its own: the HOG detection in the crop
    np.testing.assert_allclose(dlib["face_box"] * side + np.tile(crop[:2], 2), hog, atol=1)


# -- pre-cropped faces and non-faces ---------------------------------------------------


@pytest.fixture(scope="module")
def precropped(on_photos: dict) -> tuple[np.ndarray, np.ndarray]:
    """A FER2013-like 48 x 48 grey face cut from the astronaut, and dlib's full-photo
    landmarks expressed in its [0, 1] coordinates."""
    photo = load_photo("astronaut")
    box = crop_box(on_photos["astronaut", "dlib"]["face"], margin=0.15)
    face = np.asarray(Image.fromarray(apply_crop(photo, box)).convert("L").resize((48, 48)))
    reference = (on_photos["astronaut", "dlib"]["pixels"] - box[:2]) / (box[2] - box[0])
    return face, reference


@pytest.mark.parametrize("backend", ["dlib", "mediapipe", "mtcnn"])
def test_precropped_48px_face_goes_through_the_whole_image_path(
        extractors: dict, precropped: tuple, backend: str) -> None:
    face, reference = precropped
    record = LandmarkPipeline(extractors[backend])(face)
    assert record["valid"]
    assert np.isnan(record["crop_box"]).all()  # no crop: the image is the face
    points = record["points"]
    iod = inter_ocular(reference)
    if backend == "mtcnn":
        expected = np.stack([reference[36:42].mean(0), reference[42:48].mean(0), reference[30],
                             reference[48], reference[54]])
        assert (np.linalg.norm(points - expected, axis=1) / iod).max() < 0.2
    else:
        assert (np.linalg.norm(points - reference, axis=1) / iod).mean() < 0.12
        assert np.linalg.norm(points[30] - reference[30]) / iod < 0.12


@pytest.mark.parametrize("backend", ["dlib", "mediapipe", "mtcnn"])
def test_flat_grey_image_is_flagged_invalid(extractors: dict, backend: str) -> None:
    grey = np.full((48, 48), 128, np.uint8)
    extractor = extractors[backend]
    points, extra = extractor.extract(grey)
    assert points is None
    assert set(extra) == set(extractor.extra_shapes) and all(np.isnan(v).all()
                                                             for v in extra.values())
    record = LandmarkPipeline(extractor)(grey)
    assert not record["valid"] and np.isnan(record["points"]).all()
    photo_record = LandmarkPipeline(extractor, FaceCropper("hog"))(np.full((96, 96, 3), 90,
                                                                          np.uint8))
    assert not photo_record["valid"] and np.isnan(photo_record["crop_box"]).all()


def test_dlib_face_check_on_lfw_faces_and_non_faces(extractors: dict) -> None:
    lfw = (skimage.data.lfw_subset() * 255).round().astype(np.uint8)
    faces, others = lfw[:20], lfw[100:120]
    found_faces = sum(extractors["dlib"].extract(f)[0] is not None for f in faces)
    found_others = sum(extractors["dlib"].extract(f)[0] is not None for f in others)
    assert found_faces >= 18 and found_others <= 1


# -- mapping, pickling, errors ---------------------------------------------------------


def test_mediapipe_map_averages_pairs() -> None:
    assert len(MP_TO_IBUG) == 68
    mesh = np.stack([np.arange(478.0), 2 * np.arange(478.0)], axis=1)
    mapped = mesh_to_68(mesh)
    assert mapped[0, 0] == 127 and mapped[30, 0] == 4  # single vertices
    assert mapped[3, 0] == (132 + 58) / 2 and mapped[27, 1] == 2 * (168 + 6) / 2  # pairs
    assert mesh_to_68(mesh[:468]).shape == (68, 2)
    with pytest.raises(ValueError, match="468 or 478"):
        mesh_to_68(mesh[:68])


def test_extractors_pickle_without_their_model(extractors: dict) -> None:
    for extractor in extractors.values():
        clone = pickle.loads(pickle.dumps(extractor))
        assert clone.settings == extractor.settings
        assert getattr(clone, "_model", None) is None


@pytest.mark.parametrize("module, factory, install", [
    ("dlib", DlibExtractor, "pip install dlib-bin face-recognition-models"),
    ("mediapipe", MediapipeExtractor, "pip install --no-deps mediapipe==0.10.21"),
    ("facenet_pytorch", MtcnnExtractor, "pip install --no-deps facenet-pytorch==2.6.0"),
])
def test_missing_backend_names_the_install_command(monkeypatch: pytest.MonkeyPatch, module: str,
                                                   factory: type, install: str) -> None:
    monkeypatch.setitem(sys.modules, module, None)  # `import module` now raises ImportError
    with pytest.raises(base.MissingBackendError) as error:
        factory().extract(np.zeros((48, 48), np.uint8))
    assert install in str(error.value) and "make setup" in str(error.value)


def test_mediapipe_without_legacy_api_or_task_file_explains(monkeypatch: pytest.MonkeyPatch,
                                                            tmp_path) -> None:
    class NoSolutions:  # mediapipe >= 0.10.22: no `solutions`, no bundled models
        pass

    monkeypatch.setattr("fer_lightning.data.landmarks.mediapipe_backend.require",
                        lambda module, backend: NoSolutions())
    with pytest.raises(RuntimeError, match="face_landmarker.task") as error:
        MediapipeExtractor().extract(np.zeros((48, 48), np.uint8))
    assert "landmarks.task_model_path" in str(error.value)
    missing = tmp_path / "face_landmarker.task"
    with pytest.raises(FileNotFoundError, match=str(missing)):
        MediapipeExtractor(task_model_path=str(missing)).extract(np.zeros((48, 48), np.uint8))


def test_bad_image_is_rejected_with_its_shape(extractors: dict) -> None:
    with pytest.raises(ValueError, match=r"uint8 \(H, W\)"):
        extractors["dlib"].extract(np.zeros((48, 48), np.float32))


# -- the quality filter ------------------------------------------------------------------


def five_point_records(count: int = 6) -> dict[str, np.ndarray]:
    """``count`` plausible MTCNN records (the canonical face, its box and probability)."""
    points = np.repeat(canonical_mean_shape(5)[None], count, 0)
    box = np.repeat(np.array([[0.1, 0.05, 0.9, 0.95]], np.float32), count, 0)
    return {"points": points, "face_box": box, "prob": np.full((count, 1), 0.99, np.float32)}


def test_quality_filter_removes_each_kind_of_bad_detection() -> None:
    records = five_point_records()
    records["prob"][1] = 0.5  # unsure detector
    records["points"][2, [0, 1], 1] = 0.9  # eyes below the mouth
    records["points"][3, [0, 1]] = records["points"][3, [1, 0]]  # eyes swapped left/right
    records["face_box"][4] = [0.45, 0.3, 0.55, 0.4]  # a box far smaller than the face
    records["points"][5] = np.nan  # no face found: missed, not filtered
    passes = quality_passes(QualityFilter(), records)
    assert passes.tolist() == [True, False, False, False, False, True]
    no_box = {**records, "face_box": np.full((6, 4), np.nan, np.float32)}
    assert quality_passes(QualityFilter(), no_box).tolist() == [True, False, False, False,
                                                                True, True]
    assert quality_passes(None, records).all()
    loose = QualityFilter(min_prob=None, geometry=False, eye_distance=None, box_margin=None)
    assert quality_passes(loose, records).all()


def test_quality_filter_works_on_68_points() -> None:
    points = canonical_mean_shape(68)[None].repeat(2, 0)
    points[1, 48:68, 1] = 0.1  # mouth above the eyes
    passes = quality_passes(QualityFilter(), {"points": points})
    assert passes.tolist() == [True, False]


def test_pipeline_call_applies_the_quality_filter() -> None:
    class Upside:
        name, num_points, extra_shapes = "upside", 5, {"prob": (1,)}
        settings: dict = {}

        def extract(self, image, face_box=None):
            upside_down = canonical_mean_shape(5) * [1, -1] + [0, 1]
            return upside_down.astype(np.float32), {"prob": np.ones(1, np.float32)}

    image = np.zeros((8, 8), np.uint8)
    record = LandmarkPipeline(Upside(), quality=QualityFilter())(image)
    assert not record["valid"] and record["filtered"]
    assert LandmarkPipeline(Upside(), quality=QualityFilter()).detect(image)["valid"]


# -- MediaPipe's import noise ------------------------------------------------------------


def test_mediapipe_import_noise_is_dropped_and_other_output_kept(monkeypatch, capsys) -> None:
    class Module:
        solutions = None

    def noisy_require(module: str, backend: str) -> Module:
        print(f"AttributeError: {PROTOBUF_NOISE}", file=sys.stderr)
        print("a real warning", file=sys.stderr)
        return Module()

    monkeypatch.setattr("fer_lightning.data.landmarks.mediapipe_backend.require", noisy_require)
    import_mediapipe()
    err = capsys.readouterr().err
    assert PROTOBUF_NOISE not in err and "a real warning" in err


def test_mediapipe_import_prints_no_protobuf_noise() -> None:
    code = ("from fer_lightning.data.landmarks.mediapipe_backend import import_mediapipe; "
            "mp, solutions = import_mediapipe(); assert solutions is not None")
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120, env=env)
    assert done.returncode == 0, done.stderr
    assert "GetPrototype" not in done.stderr
