"""``python -m fer_lightning.report PATH [PATH ...]``: from a grid of run folders to a
verdict per ablation axis (cells over seeds, paired effects with confidence intervals,
per-class deltas, plots). See docs/reporting.md.

Kept import-light: ``labels`` is imported by the config module at every training start.
"""
