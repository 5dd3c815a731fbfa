"""Using a trained checkpoint: eval, predict on real photos and video, ONNX export."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from PIL import Image

from fer_lightning import checkpoint as ckpt
from fer_lightning.config import ConfigError, compose_config
from fer_lightning.data.landmarks.face_crop import FaceCropper
from fer_lightning.eval import compose_eval_config, evaluate
from fer_lightning.export import export_onnx
from fer_lightning.handles import REAL_MODEL_HINT
from fer_lightning.predict import Predictor, predict
from fer_lightning.train import train
from fer_lightning.tta import num_views, views
from tests.conftest import TINY
from tests.fixtures_inference import (
    FAMILIES,
    astronaut,
    grace_hopper,
    landscape,
    lfw_faces,
    write_checkpoint,
)
from tests.fixtures_photos import write_imagefolder

FER2013 = ["angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A mini_xception trained for an epoch on tiny synthetic data with ground-truth
    landmarks drawn as an overlay: (run dir, best checkpoint, results)."""
    run = tmp_path_factory.mktemp("trained") / "run"
    results = train(compose_config([*TINY, "landmarks=groundtruth", "model.num_modules=3",
                                    "trainer.max_epochs=1", "logger=none"], run))
    return run, Path(results["checkpoint"]), results


def run_eval(tmp_path: Path, *overrides: str) -> dict:
    """``python -m fer_lightning.eval <overrides>`` in-process, writing under tmp_path/eval."""
    return evaluate(compose_eval_config([*overrides, "callbacks.progress_bar=null"],
                                        tmp_path / "eval"))


def test_checkpoint_holds_the_run_config_and_class_names(trained):
    run, best, results = trained
    metadata = ckpt.load_checkpoint(best)["fer_lightning"]
    assert metadata["format_version"] == ckpt.FORMAT_VERSION
    assert metadata["class_names"] == results["class_names"] == FER2013
    assert metadata["config"] == OmegaConf.to_container(OmegaConf.load(run / "config.yaml"))
    assert metadata["choices"]["landmarks"] == "groundtruth"


def test_eval_reproduces_the_training_results(trained, tmp_path):
    _, best, results = trained
    evaluated = run_eval(tmp_path, f"ckpt_path={best}")
    assert evaluated["test"] == results["test"]  # metrics, per-class acc, confusion matrix
    saved = json.loads((tmp_path / "eval/results.json").read_text())
    assert saved["test"] == results["test"] and saved["tta"] == "none"
    assert (tmp_path / "eval/confusion_test.png").is_file()


def test_eval_takes_a_run_folder_best_and_last_and_flags_synthetic_training(trained,
                                                                           tmp_path):
    run, best, results = trained
    evaluated = run_eval(tmp_path, f"ckpt_path={run}")
    assert evaluated["checkpoint"] == str(best) and evaluated["test"] == results["test"]
    assert evaluated["warnings"] == [
        f"{best} was trained on synthetic faces (data=synthetic): a pipeline demo, not an "
        f"emotion model for photos; {REAL_MODEL_HINT}"]
    saved = json.loads((tmp_path / "eval/results.json").read_text())
    assert saved["warnings"] == evaluated["warnings"]
    newest = run_eval(tmp_path, "ckpt_path=best", f"paths.log_dir={run.parent}")
    assert newest["checkpoint"] == str(best)
    last = run_eval(tmp_path, "ckpt_path=last", f"paths.log_dir={run.parent}")
    assert last["checkpoint"] == str(run / "checkpoints/last.ckpt")
    with pytest.raises(ConfigError, match=r"ckpt_path=best.ckpt: no such file or folder"):
        run_eval(tmp_path, "ckpt_path=best.ckpt")


def test_eval_with_ten_crop_test_time_augmentation(trained, tmp_path):
    evaluated = run_eval(tmp_path, f"ckpt_path={trained[1]}", "tta=ten_crop", "split=val",
                         "data.source.val_size=8")  # a key override on the stored config
    assert sum(map(sum, evaluated["val"]["confusion_matrix"])) == 8
    assert evaluated["tta"] == "ten_crop" and evaluated["split"] == "val"


def test_other_dataset_with_other_class_order_needs_remap(tmp_path, make_cfg):
    best = write_checkpoint(["model=mini_xception", "model.num_modules=2"],
                            tmp_path / "fer2013-order.ckpt")
    # An image folder names its classes by sorted folder names: neutral before sad.
    write_imagefolder(tmp_path / "faces", {name: 3 for name in FER2013}, split="test")
    write_imagefolder(tmp_path / "faces", {name: 3 for name in FER2013}, split="train")
    data = ["data=imagefolder", f"data.root={tmp_path / 'faces'}",
            "data.source.val_fraction=0.34"]
    with pytest.raises(ConfigError, match="classes differ") as error:  # issue #10.6
        train(make_cfg(*data, "train=false", f"ckpt_path={best}", "model.num_modules=2",
                       "trainer=cpu", "logger=none", tiny=False))
    assert str(FER2013) in str(error.value)
    with pytest.raises(ConfigError, match=r"remap=true"):
        run_eval(tmp_path, f"ckpt_path={best}", *data)
    evaluated = run_eval(tmp_path, f"ckpt_path={best}", *data, "remap=true")
    assert evaluated["label_mapping"] == [0, 1, 2, 3, 6, 4, 5]
    confusion = np.array(evaluated["test"]["confusion_matrix"])
    assert confusion.sum(1).tolist() == [3] * 7  # every true class in checkpoint order


def test_eval_cannot_change_the_net(trained, tmp_path):
    _, best, _ = trained
    with pytest.raises(ConfigError, match="trained with landmarks"):
        run_eval(tmp_path, f"ckpt_path={best}", "landmarks=none")
    with pytest.raises(ConfigError, match="cannot change the net"):
        run_eval(tmp_path, f"ckpt_path={best}", "model=mba")


@pytest.fixture(scope="module")
def predictor(trained):
    return Predictor.from_checkpoint(trained[1])


@pytest.fixture(scope="module")
def plain_checkpoint(tmp_path_factory):
    """An untrained mini_xception without landmarks: the command's rows and statuses do
    not depend on training (and it skips loading dlib's model)."""
    return write_checkpoint(["model=mini_xception", "model.num_modules=2"],
                            tmp_path_factory.mktemp("plain") / "plain.ckpt")


def test_predict_finds_one_face_per_portrait_and_none_in_a_landscape(predictor):
    portraits = [astronaut(), grace_hopper(), *lfw_faces(3)]
    results = predictor.predict_many([*portraits, landscape()])
    assert [len(faces) for faces in results] == [1, 1, 1, 1, 1, 0]
    for faces in results[:-1]:
        assert sum(faces[0].probabilities.values()) == pytest.approx(1.0, abs=1e-5)
        assert faces[0].label == max(faces[0].probabilities, key=faces[0].probabilities.get)
        assert faces[0].landmarks_found is not None
    x0, y0, x1, y1 = results[0][0].box  # astronaut at 256 px: nose tip near (112, 63)
    assert x0 < 112 < x1 and y0 < 63 < y1 and (x1 - x0) < 80
    x0, y0, x1, y1 = results[1][0].box  # grace_hopper at 218 x 256: face near (113, 98)
    assert x0 < 113 < x1 and y0 < 98 < y1 and (x1 - x0) < 110
    assert results[0][0].landmarks_found, "dlib must find the astronaut's landmarks"


def test_predict_without_detection_takes_the_whole_image(predictor):
    [face] = Predictor(predictor.model, detect=False).predict(lfw_faces(1)[0])
    assert face.box == (0.0, 0.0, 25.0, 25.0) and face.score is None


def test_several_faces_each_get_a_prediction_largest_first():
    both = np.concatenate([astronaut(160), grace_hopper(187)[:160]], axis=1)
    cropper = FaceCropper("mtcnn", margin=0.05)
    faces = cropper.faces(both)
    assert len(faces) == 2
    areas = [(f.box[2] - f.box[0]) * (f.box[3] - f.box[1]) for f in faces]
    assert areas[0] >= areas[1]
    assert np.array_equal(cropper(both)[1], faces[0].crop_box)
    assert {int(f.box[0] > 160) for f in faces} == {0, 1}  # one face on each half


def predict_config(tmp_path: Path, *overrides: str):
    return compose_config([*overrides, "progress=false"], tmp_path / "out",
                          config_name="predict")


def read_rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def test_predict_command_on_a_folder(plain_checkpoint, tmp_path):
    folder = tmp_path / "photos"
    (folder / "people").mkdir(parents=True)
    Image.fromarray(astronaut(160)).save(folder / "astronaut.png")
    Image.fromarray(grace_hopper(187)).save(folder / "people/grace.jpg")
    Image.fromarray(landscape()[::2, ::2]).save(folder / "coffee.png")
    (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    (folder / "notes.txt").write_text("not an image")
    summary = predict(predict_config(tmp_path, f"ckpt_path={plain_checkpoint}",
                                     f"input={folder}", "annotate=true"))
    rows = {row["file"]: row for row in read_rows(tmp_path / "out/predictions.csv")}
    assert set(rows) == {"astronaut.png", "people/grace.jpg", "coffee.png", "broken.jpg"}
    assert rows["coffee.png"]["status"] == "no_face"
    assert rows["broken.jpg"]["status"].startswith("unreadable")
    for name in ("astronaut.png", "people/grace.jpg"):
        probabilities = [float(rows[name][f"p_{c}"]) for c in FER2013]
        assert rows[name]["status"] == "ok" and rows[name]["label"] in FER2013
        assert sum(probabilities) == pytest.approx(1.0, abs=1e-4)
    assert summary["faces"] == 2 and summary["no_face"] == 1 and summary["unreadable"] == 1
    assert summary["skipped"] == [str(folder / "notes.txt")]
    lines = (tmp_path / "out/predictions.jsonl").read_text().splitlines()
    assert len(lines) == 4 and len(json.loads(lines[0])["box"] or []) in (0, 4)
    assert (tmp_path / "out/annotated/people/grace.jpg").is_file()


def test_predict_and_export_take_a_run_folder_and_last(trained, tmp_path):
    from fer_lightning.export import export

    run, best, _ = trained
    Image.fromarray(astronaut(160)).save(tmp_path / "astronaut.png")
    summary = predict(predict_config(tmp_path, f"ckpt_path={run}",
                                     f"input={tmp_path / 'astronaut.png'}", "detect=false"))
    assert summary["faces"] == 1
    # which engine ran, and that a synthetic-faces checkpoint is a demo: said and written
    assert summary["backend"] == "torch (PyTorch on cpu)"
    assert summary["warnings"] == [f"{best} was trained on synthetic faces (data=synthetic): "
                                   f"a pipeline demo, not an emotion model for photos; "
                                   f"{REAL_MODEL_HINT}"]
    assert json.loads((tmp_path / "out/summary.json").read_text())["warnings"] == \
        summary["warnings"]
    cfg = compose_config(["ckpt_path=last", f"paths.log_dir={run.parent}",
                          f"out={tmp_path / 'last.onnx'}", "detect=false"], tmp_path / "export",
                         config_name="export")
    report = export(cfg)
    assert report.path == tmp_path / "last.onnx" and cfg.ckpt_path == str(
        run / "checkpoints/last.ckpt")
    with pytest.raises(ConfigError, match=r"ckpt_path=best.ckpt: no such file or folder"):
        predict(predict_config(tmp_path, "ckpt_path=best.ckpt", f"input={tmp_path}"))


def write_clip(path: Path, frames: int = 6) -> Path:
    """A short H.264 clip of the astronaut drifting to the right."""
    import av

    base = astronaut(160)
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=5)
        stream.width, stream.height, stream.pix_fmt = 160, 160, "yuv420p"
        for index in range(frames):
            image = np.roll(base, 4 * index, axis=1)
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def test_predict_on_a_video_gives_one_row_per_sampled_frame(plain_checkpoint, tmp_path):
    clip = write_clip(tmp_path / "clip.mp4")
    predict(predict_config(tmp_path, f"ckpt_path={plain_checkpoint}", f"input={clip}",
                           "every=2", "annotate=true"))
    rows = read_rows(tmp_path / "out/predictions.csv")
    assert [row["frame"] for row in rows] == ["0", "2", "4"]
    assert all(row["status"] == "ok" and row["file"] == "clip.mp4" for row in rows)
    assert [float(row["time"]) for row in rows] == pytest.approx([0.0, 0.4, 0.8])
    import av

    with av.open(str(tmp_path / "out/annotated/clip.mp4")) as container:
        assert sum(1 for _ in container.decode(video=0)) == 6


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_onnx_export_matches_pytorch(family, tmp_path):
    checkpoint = write_checkpoint(FAMILIES[family], tmp_path / f"{family}.ckpt")
    report = export_onnx(checkpoint, images=[astronaut(64)], detect=False)
    assert report.max_abs_diff <= 1e-4 and report.max_abs_diff_batch1 <= 1e-4
    assert report.parity_batch == 2  # the photo and its mirror image
    assert report.dynamic_batch == (family != "ms_fpn")
    expected_inputs = ["image", "landmark_map"] if family == "mba" else ["image"]
    assert report.input_names == expected_inputs
    import onnx

    properties = {p.key: p.value for p in onnx.load(str(report.path)).metadata_props}
    assert json.loads(properties["class_names"]) == FER2013
    assert json.loads(properties["fer_lightning"])["config"]["model"]["name"] == \
        family.replace("timm", "resnet10t")


def test_onnx_backend_predicts_like_pytorch(trained, predictor, tmp_path):
    onnx_path = export_onnx(trained[1], tmp_path / "model.onnx", images=[astronaut(160)],
                            detect=False).path
    by_onnx = Predictor.from_checkpoint(onnx_path)  # the .onnx file alone
    assert by_onnx.model.runner.backend == "onnx" and by_onnx.class_names == FER2013
    faces = predictor.faces(astronaut(160))  # detected once, classified by both
    onnx_probabilities, onnx_found = by_onnx.classify(faces)
    torch_probabilities, torch_found = predictor.classify(faces)
    assert onnx_found == torch_found == [True]  # dlib landmarks drawn on both inputs
    assert np.abs(onnx_probabilities - torch_probabilities).max() <= 1e-5


def test_tta_views_move_landmarks_with_the_pixels():
    assert [num_views(mode) for mode in ("none", "flip", "ten_crop")] == [1, 2, 10]
    image = torch.zeros(1, 1, 48, 48)
    image[0, 0, 10, 30] = 1.0  # a bright pixel at x=30, y=10, every landmark on it
    points = torch.tensor([30.5 / 48, 10.5 / 48]).expand(1, 68, 2).clone()
    ten = views(image, points, "ten_crop")
    assert len(ten) == 10 and len({tuple(moved[0, 0].tolist()) for _, moved in ten}) == 10
    for view, moved in ten:  # 44-pixel crops resized to 48: the pixel stays in every one
        y, x = divmod(int(view[0, 0].argmax()), 48)
        assert abs(x + 0.5 - float(moved[0, 0, 0]) * 48) <= 1.0
        assert abs(y + 0.5 - float(moved[0, 0, 1]) * 48) <= 1.0
    mirror, mirrored_points = views(image, points, "flip")[1]
    back, back_points = views(mirror, mirrored_points, "flip")[1]
    assert torch.equal(back, image) and torch.allclose(back_points, points)


def _face(box, score=0.999123456, label="happy"):
    from fer_lightning.predict import FacePrediction

    return FacePrediction(box, score, label, {name: 1 / 7 for name in FER2013} | {label: 0.97})


def test_annotation_labels_a_small_face_inside_the_image():
    from fer_lightning.predict import annotate

    small = np.full((25, 25, 3), 90, np.uint8)  # a 25 px face crop, the whole image its box
    drawn = annotate(small, [_face((0.0, 0.0, 25.0, 25.0))])
    assert max(drawn.shape[:2]) >= 200, "a small image is enlarged for a legible label"
    white = (drawn[..., 1] > 200).sum()  # the text: white on the red label (green 64)
    assert white > 20, "the label text is not drawn"
    label_fill = (drawn == (255, 64, 64)).all(axis=2)[3:-3, 3:-3]  # inside the box outline
    assert label_fill.sum() > 200, "no label box inside the image"


def test_predicted_boxes_lie_inside_the_image_and_scores_are_rounded(tmp_path):
    from fer_lightning.predict import PredictionWriter, image_box

    assert image_box((-3.5, -0.2, 130.0, 90.0), (80, 120)) == (0.0, 0.0, 120.0, 80.0)
    writer = PredictionWriter(tmp_path, FER2013)
    writer.write("a.png", None, None, [_face((1.0, 2.0, 3.0, 4.0))])
    writer.close()
    [row] = read_rows(tmp_path / "predictions.csv")
    assert row["score"] == "0.9991"
    assert json.loads((tmp_path / "predictions.jsonl").read_text())["score"] == 0.9991


def test_eval_table_names_the_checkpoint_split_and_tta(trained, tmp_path, capsys):
    _, best, _ = trained
    run_eval(tmp_path, f"ckpt_path={best}", "tta=flip")
    out = capsys.readouterr().out
    assert f"eval: {best}, test split, tta=flip\n" in out
    assert "evaluate it:" not in out  # the next steps are training's


def test_linear_resize_samples_like_opencv_and_antialias_filters():
    """resize=linear is cv2.resize's default (fer's) within one grey level; antialias
    (the training pipeline's) is not: it averages the pixels a shrink skips."""
    import cv2

    from fer_lightning.inference.predictor import face_tensor

    crop = np.random.default_rng(0).integers(0, 256, (117, 117, 3), dtype=np.uint8)
    opencv = cv2.resize(cv2.cvtColor(crop, cv2.COLOR_RGB2GRAY), (64, 64)).astype(int)
    linear = (face_tensor(crop, 64, 1, "linear")[0].numpy() * 255).round().astype(int)
    antialias = (face_tensor(crop, 64, 1)[0].numpy() * 255).round().astype(int)
    assert linear.shape == (64, 64) and np.abs(linear - opencv).max() <= 1
    assert np.abs(antialias - opencv).mean() > 10
