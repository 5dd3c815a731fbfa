"""Which config keys define a treatment and which are bookkeeping.

Runs of one grid differ in their output folders, timestamps, logger settings and the like;
those keys are never an ablation axis, neither in ``report`` nor in W&B run labels.
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
    "data.num_workers", "landmarks.num_workers", "landmarks.chunk_size",
    "trainer.enable_progress_bar", "trainer.enable_model_summary", "trainer.log_every_n_steps",
)

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
