"""Tail probabilities for counts that vary more than Poisson counts do.

A day's leads (or clicks) given its spend are counts with mean ``spend / baseline cost``. On top of
counting noise, a campaign's cost per lead moves from day to day (auctions, audiences) and the
baseline itself is estimated from a finite number of past leads. Both widen the distribution: we
use a negative binomial with variance ``mean + phi × mean²``, where ``phi`` adds the day-to-day
variation (divided by the window length, as independent days average out), the part of it that
does not average out, and the baseline's own uncertainty (one over the effective number of past
counts it rests on).
"""

from __future__ import annotations

import numpy as np
from scipy.special import betainc
from scipy.stats import chi2


def dispersion(phi_day, window_days: int, baseline_counts: np.ndarray, persistent=0.0) -> np.ndarray:
    """``phi`` for a window of ``window_days`` against a baseline resting on ``baseline_counts``:
    the day-to-day part ``phi_day`` averages out over the window, the ``persistent`` part (a
    campaign's rates wandering from its baseline) does not."""
    with np.errstate(divide="ignore"):
        return phi_day / window_days + persistent + 1.0 / np.maximum(baseline_counts, 1e-9)


def lower_tail(observed: np.ndarray, mean: np.ndarray, phi: np.ndarray, where: np.ndarray | None = None) -> np.ndarray:
    """P(X ≤ observed) for X negative binomial with ``mean`` and variance ``mean + phi·mean²``.

    A fractional count (platforms split a conversion's credit between campaigns) is taken as it
    is: the incomplete beta function below is smooth in ``observed``, so 0.67 of a lead reads
    between none and one, not as none. NaN inputs give 1 (no evidence), and so does a mean of 0.
    With ``where``, only those cells are
    computed and the others are 1: the incomplete beta function is the costly part of detection,
    and a caller knows where no decision can depend on it.
    """
    observed, mean, phi = np.broadcast_arrays(observed, mean, phi)
    observed = np.nan_to_num(observed, nan=-1.0, posinf=-1.0)
    mean = np.nan_to_num(mean, nan=0.0, posinf=0.0)
    phi = np.maximum(np.nan_to_num(phi, nan=1e9, posinf=1e9), 1e-12)
    todo = (mean > 0) & (observed >= 0)
    if where is not None:
        todo &= where
    out = np.ones(observed.shape)
    n = 1.0 / phi[todo]
    # P(X ≤ k) = I_p(n, k + 1), the regularised incomplete beta function, with p = n / (n + mean)
    out[todo] = betainc(n, observed[todo] + 1.0, n / (n + mean[todo]))
    return out


def fisher(*p_values: np.ndarray) -> np.ndarray:
    """Fisher's combination of independent p-values: one p-value for all the evidence together."""
    statistic = -2.0 * sum(np.log(np.clip(p, 1e-300, 1.0)) for p in p_values)
    return chi2.sf(statistic, 2 * len(p_values))
