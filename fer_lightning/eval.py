"""`python -m fer_lightning.eval ckpt_path=PATH [overrides]`: metrics of a trained checkpoint.

The checkpoint's stored run config is the base: with no override, eval tests the net on
the split it was tested on in training, through the same datamodule, input pipeline and
Lightning test loop, so with ``tta=none`` it reproduces the run's ``results.json``.
Overrides change only what they name:

- keys (``data.root=/data/RAF-DB``, ``data.batch_size=256``) are set on the stored config;
- a group option (``data=rafdb``, ``landmarks=dlib``) replaces that whole group, except the
  keys the net was built for (``data.image_size``, ``channels``, ``mean``, ``std``; the
  landmark encoding options), which stay the checkpoint's unless set explicitly;
- ``trainer``, ``callbacks``, ``logger`` and ``paths`` are eval's own (``conf/eval.yaml``).

To validate key overrides against the right groups, the checkpoint's group options are
composed first: ``main`` inserts them into the command line before Hydra parses it.
Outputs (``logs/eval/runs/<time>/``): ``results.json`` (the training layout plus ``split``,
``tta`` and the label mapping), ``confusion_<split>.png`` and the printed table.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import DictConfig, OmegaConf, open_dict

from fer_lightning.cli import answers_help, run_command
from fer_lightning.config import check_config, compose_config
from fer_lightning.data.sources.base import SplitUnavailableError
from fer_lightning.errors import ConfigError
from fer_lightning.handles import resolve_checkpoint, synthetic_warning, trained_on_synthetic
from fer_lightning.keys import ENCODING_KEYS, INPUT_DATA_KEYS
from fer_lightning.lazy import exports_of, lazy_exports

if TYPE_CHECKING:
    import lightning as L

# torch, Lightning and the checkpoint reader are imported where a checkpoint is read, so
# that ``--help`` answers before them; the transform is importable from here as before.
__getattr__ = lazy_exports(__name__, exports_of("fer_lightning.inference.tta",
                                                "EvaluationTransform"))

log = logging.getLogger(__name__)

#: Groups whose option in the checkpoint is composed before the user's overrides.
CHECKPOINT_GROUPS = ("data", "landmarks", "model", "head", "loss")
#: Keys of eval.yaml that configure the evaluation itself, never the run config.
EVAL_KEYS = ("ckpt_path", "split", "tta", "tta_crop", "remap", "task_name")
#: Parts of the config that always come from eval.yaml, not from the checkpoint.
OWN_NODES = ("trainer", "callbacks", "logger", "paths", "hydra")
SPLITS = ("val", "test")


# -- the command line ------------------------------------------------------------------


def checkpoint_overrides(checkpoint: Mapping[str, Any], user_overrides: Sequence[str]
                         ) -> list[str]:
    """``group=option`` of the checkpoint's run for each group of CHECKPOINT_GROUPS the
    user does not set, so user key overrides meet those groups. The run's experiment is
    not composed: the stored config already holds what it set, and its keys (task name,
    sizes of the synthetic splits) would leak into a dataset the user switches to."""
    import fer_lightning.checkpoint as ckpt

    set_by_user = {override.key_or_group.lstrip("+~")
                   for override in OverridesParser.create().parse_overrides(list(user_overrides))}
    choices = checkpoint[ckpt.METADATA_KEY].get("choices") or {}
    return [f"{group}={choices[group]}" for group in CHECKPOINT_GROUPS
            if group in choices and group not in set_by_user]


def ckpt_path_argument(arguments: Sequence[str]) -> str | None:
    """The value of ``ckpt_path=`` on a command line, if given once and not swept."""
    values = [argument.split("=", 1)[1] for argument in arguments
              if argument.startswith("ckpt_path=")]
    return values[0] if len(values) == 1 and "," not in values[0] else None


def log_dir_argument(arguments: Sequence[str]) -> Path:
    """Where ``best`` / ``last`` look for runs: ``paths.log_dir=`` or
    ``paths.root_dir=``/logs of the command line, else ``./logs`` (paths/default.yaml)."""
    given = {argument.split("=", 1)[0]: argument.split("=", 1)[1] for argument in arguments
             if argument.startswith(("paths.log_dir=", "paths.root_dir="))}
    if "paths.log_dir" in given:
        return Path(given["paths.log_dir"])
    return Path(given.get("paths.root_dir", ".")) / "logs"


def resolve_ckpt_argument(arguments: Sequence[str],
                          suffixes: tuple[str, ...] = (".ckpt",)) -> list[str]:
    """The command line with ``ckpt_path=<handle>`` (a run folder, best, last; see
    fer_lightning.handles) replaced by the checkpoint file it means."""
    handle = ckpt_path_argument(arguments)
    if handle is None:
        return list(arguments)
    path = resolve_checkpoint(handle, log_dir_argument(arguments), suffixes)
    if str(path) != handle:
        log.info("ckpt_path=%s: %s", handle, path)
    return [f"ckpt_path={path}" if argument == f"ckpt_path={handle}" else argument
            for argument in arguments]


def user_overrides(task_overrides: Sequence[str], checkpoint: Mapping[str, Any]) -> list[str]:
    """The overrides the user typed: the task overrides minus those ``main`` inserted."""
    inserted = set(checkpoint_overrides(checkpoint, []))
    return [override for override in task_overrides if override not in inserted]


# -- the evaluation config -------------------------------------------------------------


def evaluation_config(cfg: DictConfig, checkpoint: Mapping[str, Any],
                      overrides: Sequence[str]) -> DictConfig:
    """The stored run config with the user's ``overrides`` applied from the composed
    eval config ``cfg`` (module docstring), resolved."""
    import fer_lightning.checkpoint as ckpt

    stored = ckpt.stored_config(checkpoint)
    final = OmegaConf.create(OmegaConf.to_container(stored))
    choices = HydraConfig.get().runtime.choices if HydraConfig.initialized() else {}
    parsed = OverridesParser.create().parse_overrides(list(overrides))
    keys = [override.key_or_group for override in parsed]
    with open_dict(final):
        for node in OWN_NODES:
            if node in cfg:
                final[node] = cfg[node]
        for override, key in zip(parsed, keys, strict=True):
            top = key.split(".")[0].split("/")[0]
            if top in EVAL_KEYS or top in OWN_NODES:
                continue
            if key == "experiment":
                raise ConfigError("eval takes the checkpoint's experiment; override single "
                                  "keys (data.root=..., data=...) instead of +experiment")
            if key in ("model", "head"):
                raise ConfigError(f"eval cannot change the net ({key}=): the checkpoint's "
                                  f"weights are for model={stored.model.get('name')} "
                                  f"head={stored.head.get('name')}")
            if key in choices and "." not in key:
                final[key] = cfg[key]
                _keep_trained_inputs(final, stored, cfg, key, keys)
            elif override.is_delete():
                _delete(final, key)
            else:
                OmegaConf.update(final, key, OmegaConf.select(cfg, key), force_add=True)
        _follow_data_root(final, stored, keys)
        for key in ("task_name", "seed"):
            final[key] = cfg[key]
    OmegaConf.resolve(final)
    _check_landmarks_kept(final, stored)
    return final


def _keep_trained_inputs(final: DictConfig, stored: DictConfig, cfg: DictConfig, group: str,
                         keys: Sequence[str]) -> None:
    """After ``group`` was replaced: restore what the net was built for, unless set by key."""
    kept = {"data": INPUT_DATA_KEYS, "landmarks": ENCODING_KEYS}.get(group, ())
    for name in kept:
        if f"{group}.{name}" not in keys and name in stored[group]:
            final[group][name] = stored[group][name]
    if group == "data" and "landmarks" not in keys and "landmarks.precropped" not in keys \
            and "precropped" in final.landmarks:
        # Whether images are photos follows the new dataset (the group's interpolation).
        final.landmarks.precropped = OmegaConf.select(cfg, "landmarks.precropped")


def _follow_data_root(final: DictConfig, stored: DictConfig, keys: Sequence[str]) -> None:
    """``data.root=`` alone moves ``data.source.root`` too when the stored run had it
    interpolated from ``data.root`` (stored configs are resolved, so the link is gone)."""
    source = stored.data.get("source") or {}
    if "data.root" in keys and "data.source.root" not in keys and "data" not in keys \
            and source.get("root") == stored.data.get("root"):
        final.data.source.root = final.data.root


def _delete(config: DictConfig, key: str) -> None:
    parent, _, name = key.rpartition(".")
    node = OmegaConf.select(config, parent) if parent else config
    if node is not None and name in node:
        del node[name]


def _check_landmarks_kept(final: DictConfig, stored: DictConfig) -> None:
    if bool(final.landmarks.enabled) != bool(stored.landmarks.enabled):
        state = "with" if stored.landmarks.enabled else "without"
        raise ConfigError(f"the checkpoint's net was trained {state} landmarks "
                          f"(landmarks={stored.landmarks.name}); eval can swap the landmark "
                          f"backend (landmarks=dlib|mediapipe|mtcnn|groundtruth) but not switch "
                          f"landmarks {'off' if stored.landmarks.enabled else 'on'}")


# -- running ---------------------------------------------------------------------------


def evaluate(cfg: DictConfig, overrides: Sequence[str] | None = None) -> dict[str, Any]:
    """Evaluate ``cfg.ckpt_path`` as configured by the composed eval config ``cfg`` and
    the user's ``overrides`` (default: Hydra's task overrides); returns the results also
    written to ``results.json``."""
    import lightning as L

    import fer_lightning.checkpoint as ckpt
    from fer_lightning.build import build_datamodule_or_hint, build_trainer
    from fer_lightning.inference.tta import EvaluationTransform, TestTimeAugmentedNet
    from fer_lightning.results import print_results, write_json

    split = str(cfg.split)
    if split not in SPLITS:
        raise ConfigError(f"split must be one of {list(SPLITS)}, got {split!r}")
    views = num_views_or_error(str(cfg.tta))
    checkpoint = ckpt.load_checkpoint(cfg.ckpt_path)
    if overrides is None:
        overrides = user_overrides(HydraConfig.get().overrides.task, checkpoint)
    run = evaluation_config(cfg, checkpoint, overrides)
    check_config(run)
    output_dir = Path(run.paths.output_dir)
    class_names = ckpt.class_names(checkpoint)

    datamodule = build_datamodule_or_hint(run)
    if split not in datamodule.available_splits:
        raise ConfigError(f"split={split}: {datamodule.unavailable_splits[split]}")
    remap = cfg.remap if isinstance(cfg.remap, bool) else OmegaConf.to_container(cfg.remap)
    mapping = ckpt.label_mapping(class_names, datamodule.class_names, remap)
    datamodule.batch_transform = EvaluationTransform(datamodule.batch_transform, mapping,
                                                     len(class_names), str(cfg.tta),
                                                     float(cfg.tta_crop))
    module = trained_module(run, checkpoint, class_names)
    num_parameters = sum(p.numel() for p in module.net.parameters())
    if views > 1:
        module.net = TestTimeAugmentedNet(module.net, views)

    L.seed_everything(run.seed, workers=True)
    trainer = build_trainer(run.trainer, run.callbacks, logger=False)
    loop = trainer.validate if split == "val" else trainer.test
    try:
        loop(module, datamodule=datamodule, verbose=False)
    except SplitUnavailableError as error:
        raise ConfigError(f"split={split}: {error}") from None
    results = {
        "task_name": run.task_name, "output_dir": str(output_dir),
        "checkpoint": str(cfg.ckpt_path), "class_names": class_names,
        "num_parameters": num_parameters, "split": split, "tta": str(cfg.tta),
        "dataset": {"source": run.data.source.get("_target_"), "root": run.data.get("root"),
                    "class_names": datamodule.class_names},
        "label_mapping": mapping,
        split: module.results[split],
    }
    if trained_on_synthetic(ckpt.metadata(checkpoint, cfg.ckpt_path).get("config"),
                            ckpt.metadata(checkpoint, cfg.ckpt_path).get("choices")):
        results["warnings"] = [synthetic_warning(cfg.ckpt_path)]
    write_json(output_dir / "results.json", results)
    print_results(results)
    for warning in results.get("warnings", []):
        log.warning(warning)
    return results


def num_views_or_error(mode: str) -> int:
    """Views of a TTA mode; an unknown mode is a ConfigError."""
    from fer_lightning.inference.tta import num_views

    try:
        return num_views(mode)
    except ValueError as error:
        raise ConfigError(str(error)) from None


def trained_module(run: DictConfig, checkpoint: Mapping[str, Any], class_names: list[str]
                   ) -> L.LightningModule:
    """The run's LightningModule with the checkpoint's weights (net built on the meta
    device, then given the checkpoint's tensors; the loss's class weights, a buffer, too)."""
    import torch

    import fer_lightning.checkpoint as ckpt
    from fer_lightning.build import build_loss, build_module, build_net

    with torch.device("meta"):
        net = build_net(run, len(class_names))
    # The loss's class weights come from the checkpoint; neutral counts only build it.
    loss = build_loss(run.loss, [1] * len(class_names))
    module = build_module(run, net, loss, class_names)
    ckpt.load_state(module, checkpoint["state_dict"], "the model")
    return module.eval()


@hydra.main(version_base="1.3", config_path="conf", config_name="eval")
def _hydra_main(cfg: DictConfig) -> None:
    run_command(lambda: evaluate(cfg))


def with_checkpoint_choices(arguments: Sequence[str]) -> list[str]:
    """A command line (overrides and Hydra flags) with the checkpoint's group options
    inserted before the user's first override (Hydra wants the overrides in one run)."""
    import fer_lightning.checkpoint as ckpt

    arguments = resolve_ckpt_argument(arguments)
    path = ckpt_path_argument(arguments)
    if path is None:
        return arguments
    inserted = checkpoint_overrides(ckpt.load_checkpoint(path), arguments)
    first = next(i for i, argument in enumerate(arguments)
                 if "=" in argument and not argument.startswith("-"))
    return [*arguments[:first], *inserted, *arguments[first:]]


def compose_eval_config(overrides: Sequence[str], output_dir: str | Path) -> DictConfig:
    """``conf/eval.yaml`` composed as ``python -m fer_lightning.eval <overrides>`` composes
    it, outside the CLI (tests, notebooks); ``evaluate(cfg)`` runs it."""
    return compose_config(with_checkpoint_choices(overrides), output_dir, config_name="eval")


@answers_help("eval")
def main() -> None:
    """``python -m fer_lightning.eval``: insert the checkpoint's group options into the
    command line (module docstring), then run the Hydra app."""
    sys.argv[1:] = run_command(lambda: with_checkpoint_choices(sys.argv[1:]))
    _hydra_main()


if __name__ == "__main__":
    main()
