"""Statistics of the report, all from scipy.stats (docs/reporting.md, "Statistics").

- Cell: mean, sample standard deviation and a Student-t 95 % interval of the mean over
  seeds (none for a single seed), clipped to the metric's range [0, 1].
- Effect: paired differences b - a (runs matched on every other axis and on seed); the
  95 % interval is the paired t interval (``ttest_rel(...).confidence_interval``) for any
  number of pairs. From 10 pairs on a BCa bootstrap interval of the mean difference is
  given beside it as a check that does not assume normal differences. Both are clipped to
  the range of a difference of two proportions, [-1, 1]. p-values: paired t and Wilcoxon
  signed-rank.
- Power: how many pairs a paired two-sided t-test at alpha 0.05 needs to detect a given
  difference with 80 % power at the observed standard deviation of the differences
  (noncentral t, ``scipy.stats.nct``).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy import stats

CONFIDENCE = 0.95
ALPHA = 0.05
POWER = 0.80
#: From this many pairs on a bootstrap interval is reported beside the t interval.
BOOTSTRAP_MIN_PAIRS = 10
BOOTSTRAP_RESAMPLES = 9999
MAX_PAIRS = 1_000_000
#: The range of a metric (every metric of the report is a proportion) and of a difference
#: of two: intervals are clipped to them. The true value lies inside, so clipping never
#: changes whether an interval covers it (the coverage stays 95 %).
PROPORTION = (0.0, 1.0)
DIFFERENCE = (-1.0, 1.0)


def _float(value: Any) -> float | None:
    return None if value is None or not math.isfinite(value) else float(value)


def clip(low: float, high: float, bounds: tuple[float, float]) -> tuple[float, float]:
    """The interval [low, high] intersected with ``bounds``."""
    return max(low, bounds[0]), min(high, bounds[1])


def summarize(values: Sequence[float], bounds: tuple[float, float] = PROPORTION
              ) -> dict[str, float | None]:
    """``mean``, ``std`` (ddof 1) and the t interval ``ci_low`` / ``ci_high`` of the mean,
    clipped to ``bounds``; std and interval are None for a single value."""
    data = np.asarray(values, dtype=float)
    mean = float(data.mean())
    if len(data) < 2:
        return {"mean": mean, "std": None, "ci_low": None, "ci_high": None}
    std = float(data.std(ddof=1))
    if std == 0:
        return {"mean": mean, "std": 0.0, "ci_low": mean, "ci_high": mean}
    low, high = stats.t.interval(CONFIDENCE, len(data) - 1, loc=mean,
                                 scale=std / math.sqrt(len(data)))
    low, high = clip(float(low), float(high), bounds)
    return {"mean": mean, "std": std, "ci_low": low, "ci_high": high}


def paired_power(n_pairs: int, sd: float, difference: float) -> float:
    """Power of a two-sided paired t-test at ``ALPHA`` with ``n_pairs`` pairs to detect a
    mean difference ``difference`` when differences have standard deviation ``sd``."""
    df = n_pairs - 1
    critical = stats.t.ppf(1 - ALPHA / 2, df)
    noncentrality = difference / (sd / math.sqrt(n_pairs))
    return float(stats.nct.sf(critical, df, noncentrality)
                 + stats.nct.cdf(-critical, df, noncentrality))


def pairs_needed(sd: float | None, difference: float) -> int | None:
    """Fewest pairs that reach ``POWER`` for ``difference`` (None when sd is unknown or
    beyond ``MAX_PAIRS``); power grows with n, so a doubling then bisection search."""
    if sd is None or difference <= 0:
        return None
    if sd == 0:
        return 2
    high = 2
    while paired_power(high, sd, difference) < POWER:
        high *= 2
        if high > MAX_PAIRS:
            return None
    low = max(2, high // 2)
    while low < high:
        middle = (low + high) // 2
        if paired_power(middle, sd, difference) >= POWER:
            high = middle
        else:
            low = middle + 1
    return high


def _bootstrap_interval(diffs: np.ndarray, bounds: tuple[float, float]) -> list[float] | None:
    if len(diffs) < BOOTSTRAP_MIN_PAIRS or np.ptp(diffs) == 0:
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # BCa warns on near-degenerate resamples
        result = stats.bootstrap((diffs,), np.mean, confidence_level=CONFIDENCE,
                                 n_resamples=BOOTSTRAP_RESAMPLES, method="BCa",
                                 rng=np.random.default_rng(0))
    low, high = result.confidence_interval
    if not (math.isfinite(low) and math.isfinite(high)):
        return None
    return list(clip(float(low), float(high), bounds))


def _wilcoxon_p(diffs: np.ndarray) -> float | None:
    if not np.any(diffs != 0):
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # small-sample and ties notes
        return _float(stats.wilcoxon(diffs).pvalue)


def paired_effect(a: Sequence[float], b: Sequence[float], difference: float | None = None,
                  bounds: tuple[float, float] = DIFFERENCE) -> dict[str, Any]:
    """Paired difference b - a: ``n_pairs``, ``diff_mean``, ``sd``, t interval
    ``ci_low`` / ``ci_high`` (None for one pair; both intervals clipped to ``bounds``),
    ``bootstrap_ci`` (from 10 pairs),
    ``p_ttest``, ``p_wilcoxon``, ``wins`` / ``ties`` (pairs where b is above / equal to a)
    and ``pairs_needed`` to detect ``difference`` at this spread. Without ``difference``
    only the mean and the t interval are computed (per-class and conditional effects)."""
    a_values, b_values = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    diffs = b_values - a_values
    n = len(diffs)
    mean = float(diffs.mean())
    effect: dict[str, Any] = {
        "n_pairs": n, "diff_mean": mean, "sd": None, "ci_low": None, "ci_high": None,
        "bootstrap_ci": None, "p_ttest": None, "p_wilcoxon": None,
        "wins": int((diffs > 0).sum()), "ties": int((diffs == 0).sum()), "pairs_needed": None,
    }
    if n < 2:
        return effect
    sd = float(diffs.std(ddof=1))
    effect["sd"] = sd
    if sd == 0:
        effect["ci_low"] = effect["ci_high"] = mean
    else:
        test = stats.ttest_rel(b_values, a_values)
        low, high = clip(*map(float, test.confidence_interval(CONFIDENCE)), bounds)
        effect.update(ci_low=low, ci_high=high, p_ttest=_float(test.pvalue))
    if difference is None:
        return effect
    effect["pairs_needed"] = pairs_needed(sd, difference)
    if sd > 0:
        effect.update(p_wilcoxon=_wilcoxon_p(diffs),
                      bootstrap_ci=_bootstrap_interval(diffs, bounds))
    return effect
