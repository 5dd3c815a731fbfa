"""Applying a trained net: the trained-model runner (PyTorch or ONNX) with its run's input
pipeline (``runner``), the ``Predictor`` API (``predictor``), media I/O (``media``),
ONNX export, metadata and parity (``onnx_export``) and test-time augmentation (``tta``).

Above ``build`` (which rebuilds the trained net from a checkpoint), below the commands
(``predict``, ``export``, ``eval``), which decide what to run and when to export.
"""

from fer_lightning.lazy import exports_of, lazy_exports

__all__ = ["ENCODING_INPUT", "GROUNDTRUTH_STANDIN", "ONNX_METADATA_KEY", "OnnxRunner",
           "TorchRunner", "TrainedModel", "compose_group", "input_pipelines",
           "landmarks_config"]
# Imported when first asked for: ``inference.media`` (images, folders, video) stays light
# for the commands' ``--help`` and argument checks.
__getattr__ = lazy_exports(__name__, exports_of("fer_lightning.inference.runner", *__all__))
