"""Test-time augmentation moved to :mod:`fer_lightning.inference.tta`; this name stays
importable."""

from fer_lightning.inference.tta import (  # noqa: F401
    PER_SAMPLE_KEYS,
    TTA_MODES,
    TestTimeAugmentation,
    TestTimeAugmentedNet,
    average_views,
    crop_and_resize,
    crop_offsets,
    num_views,
    views,
)
