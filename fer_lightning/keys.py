"""Named sets of config keys, the one place each is typed.

- :data:`BOOKKEEPING`: where or how a run is logged, saved or resumed, or how fast it
  loads data. Runs of one grid differ in them; they are never an ablation axis, neither
  in ``report`` nor in W&B run labels, and a resume ignores them.
- :data:`RUNTIME`: how long and on which hardware a run trains. They may change when a
  run is continued (``trainer.max_epochs`` to extend it), yet they are treatments in a
  report (an epochs ablation).
- :data:`RESUME_IGNORED`, derived: what may differ between a run and the run it
  continues (``fer_lightning.resume``): the bookkeeping keys except
  :data:`RESUME_CHECKED`, plus the runtime keys. tests/test_keys.py pins the relation.
"""

from __future__ import annotations

#: The replicate key: a cell's runs differ in it, it is never an axis.
SEED = "seed"

#: Keys (and everything below them) that say where or how a run is logged, saved or
#: resumed, or how fast it loads data: never a treatment.
BOOKKEEPING = (
    "hydra", "paths", "logger", "task_name", "tags", "ckpt_path", "train", "test",
    "optimized_metric", "hint_without_data", "hparams_search", "verbose",
    "callbacks.progress_bar", "callbacks.model_summary", "callbacks.confusion_matrix",
    "callbacks.last_checkpoint", "callbacks.evaluation_epoch", "callbacks.epoch_summary",
    "callbacks.cpu_time_projection",
    "data.num_workers", "data.cache_dir", "data.on_device", "data.decode_cache",
    "landmarks.num_workers", "landmarks.chunk_size", "trainer.enable_progress_bar",
    "trainer.enable_model_summary", "trainer.log_every_n_steps",
)

#: Keys that may differ when a run is continued but that a report compares runs on.
RUNTIME = (
    "trainer.max_epochs", "trainer.min_epochs", "trainer.max_steps", "trainer.min_steps",
    "trainer.max_time", "trainer.accelerator", "trainer.devices", "trainer.num_nodes",
    "trainer.strategy", "trainer.sync_batchnorm", "trainer.use_distributed_sampler",
    "trainer.plugins", "trainer.limit_val_batches", "trainer.limit_test_batches",
    "trainer.check_val_every_n_epoch",
)

#: Bookkeeping keys a resume still compares: ``ckpt_path=last`` looks among the runs of
#: one task; a run folder of another task is another experiment.
RESUME_CHECKED = ("task_name",)

#: Keys (and key prefixes) that may differ between a run and the run it continues.
RESUME_IGNORED = tuple(key for key in BOOKKEEPING if key not in RESUME_CHECKED) + RUNTIME

#: Keys of ``data`` the net was built for (its input size, channels and normalisation).
INPUT_DATA_KEYS = ("image_size", "channels", "mean", "std")
#: Keys of ``landmarks`` that say how the net's landmark encoding is drawn.
ENCODING_KEYS = ("overlay_style", "overlay_groups", "heatmap_style", "heatmap_sigma",
                 "draw_before_augment")
#: What a test-only run (``train=false``) must share with the checkpoint's run: the network
#: and its input (``input_spec.InputSpec``). Data, loss and optimiser may differ (testing
#: on another dataset; the class names are checked separately against the checkpoint's).
NET_KEYS = ("model", "head", "landmarks.enabled",
            *(f"data.{key}" for key in INPUT_DATA_KEYS),
            *(f"landmarks.{key}" for key in ENCODING_KEYS))

#: Last components of keys that hold a folder of the run or a cache (paths differ per run).
BOOKKEEPING_LEAVES = ("dirpath", "output_dir", "save_dir", "cache_dir", "log_dir", "root_dir",
                      "default_root_dir", "data_dir")


def strip_override_prefix(key: str) -> str:
    """``+a.b`` / ``++a.b`` / ``~a.b`` -> ``a.b`` (how an override adds or deletes a key)."""
    return key.lstrip("+~")


def is_bookkeeping(key: str, extra: tuple[str, ...] = ()) -> bool:
    """True for a dotted key (or a group name) that never defines a treatment; ``extra``
    adds prefixes the user asked to ignore (``report --ignore``)."""
    key = strip_override_prefix(key)
    if key.startswith("hydra/"):  # hydra/launcher, hydra/sweeper, ...
        return True
    for prefix in (*BOOKKEEPING, *extra):
        if key == prefix or key.startswith(prefix + "."):
            return True
    return key.rsplit(".", 1)[-1] in BOOKKEEPING_LEAVES
