"""Which config keys are bookkeeping: moved to :mod:`fer_lightning.keys` (shared with
``resume``); these names stay importable from here."""

from fer_lightning.keys import (  # noqa: F401
    BOOKKEEPING,
    BOOKKEEPING_LEAVES,
    SEED,
    is_bookkeeping,
    strip_override_prefix,
)
