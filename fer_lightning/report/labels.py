"""W&B run labels from the ablation axes: moved to :mod:`fer_lightning.labels` (the config's
``${run_label:...}`` resolver needs them below the report); these names stay importable."""

from fer_lightning.labels import axis_overrides, run_label, sweep_label  # noqa: F401
