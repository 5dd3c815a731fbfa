"""fer_lightning: facial-expression recognition experiments with Lightning + Hydra."""

__version__ = "0.1.0"
