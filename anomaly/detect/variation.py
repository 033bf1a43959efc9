"""Each campaign's own day-to-day variation, learned from its history.

A day's clicks given its spend (and leads given spend) are counts whose spread is wider than
Poisson's: a campaign's cost per click moves with the auction, some far more than others. With
``X`` the count and ``μ`` its expectation at baseline, the negative binomial's variance is
``μ + φ·μ²``; ``(X − μ)² − μ`` is an unbiased estimate of ``φ·μ²`` on one day. The learner keeps an
exponentially weighted, inverse-variance weighted mean of it per column (a day with a handful of
expected counts says little about ``φ``, a day with hundreds says much), clipped at nine times its
expected size so a single wild day cannot make a campaign look noisy for months.

A campaign with little history is shrunk toward its account's pooled estimate, and the account's
toward the configured prior, by ``prior_days`` days' worth of full information: a new campaign
starts at its account's variation, not at a fixed figure, and drifts to its own as days come in.

Days are not independent: a campaign's rates wander, so a week's total strays from the baseline
more than seven independent days would. The same estimate on trailing weeks gives ``φ₇``; with
``φ_w = a / w + b`` (a part that averages out over ``w`` days and a part that does not), the day's
and the week's estimates give both parts, and a window of any length its own ``φ``
(``Variation.phi``).
"""

from __future__ import annotations

import numpy as np

CLIP = 9.0


def shrunk_ratio(num: np.ndarray, den: np.ndarray, codes: np.ndarray, own: np.ndarray, n_accounts: int, prior: float, weight: float) -> np.ndarray:
    """Each column's ``num / den``, with ``weight`` of ``den`` at its account's pooled ratio (its
    own columns together), and the account's at ``prior``; an account total (not ``own``) is its
    own account and shrinks to ``prior`` directly."""
    if n_accounts:
        pooled_num = np.bincount(codes[own], num[own], minlength=n_accounts)
        pooled_den = np.bincount(codes[own], den[own], minlength=n_accounts)
        account = ((pooled_num + weight * prior) / (pooled_den + weight))[codes]
    else:
        account = np.full(len(num), prior)
    toward = np.where(own, account, prior)
    return (num + weight * toward) / (den + weight)


class VariationLearner:
    """Causal estimates of the excess dispersion ``φ`` of one count, per column.

    ``per_day`` is how much one observation counts: 1 for single days, 1/7 for overlapping trailing
    weeks (seven of them share each day)."""

    def __init__(
        self, prior_phi: float, prior_days: float, half_life_days: float, account_codes: np.ndarray, own: np.ndarray,
        floor_phi: float = 0.0, per_day: float = 1.0,
    ):
        self.prior_phi = max(prior_phi, 1e-6)
        self.per_day = per_day
        self.prior_weight = prior_days / self.prior_phi**2  # a day of large counts weighs 1 / φ²
        self.decay = 0.5 ** (1.0 / half_life_days)
        self.codes, self.own = account_codes, own
        self.n_accounts = int(account_codes.max()) + 1 if account_codes.size else 0
        self.floor_phi = floor_phi
        self.num = np.zeros(len(account_codes))
        self.den = np.zeros(len(account_codes))

    def phi(self) -> np.ndarray:
        """The current ``φ`` of every column, shrunk toward its account's and the prior."""
        phi = shrunk_ratio(self.num, self.den, self.codes, self.own, self.n_accounts, self.prior_phi, self.prior_weight)
        return np.maximum(phi, self.floor_phi)

    def update(self, where: np.ndarray, observed: np.ndarray, expected: np.ndarray) -> None:
        """Take in one day: ``observed`` counts against their ``expected`` values where ``where``."""
        with np.errstate(invalid="ignore"):
            valid = where & np.isfinite(expected) & (expected > 0) & np.isfinite(observed)
        if not valid.any():
            return
        mu, x = expected[valid], observed[valid]
        phi = self.phi()[valid]
        excess = np.clip((x - mu) ** 2 - mu, -mu, CLIP * (mu + phi * mu**2))
        scale = (1.0 + self.prior_phi * mu) ** 2 / self.per_day
        self.num[valid] = self.decay * self.num[valid] + excess / scale
        self.den[valid] = self.decay * self.den[valid] + mu**2 / scale


WEEK = 7


class Variation:
    """A day's and a week's learners for one count; ``split()`` gives the two parts of ``φ``."""

    def __init__(self, prior_cv: float, drift_cv: float, prior_days: float, half_life_days: float, account_codes, own, floor_cv: float):
        daily = max(prior_cv, floor_cv) ** 2
        self.day = VariationLearner(daily, prior_days, half_life_days, account_codes, own, floor_cv**2)
        self.week = VariationLearner(daily / WEEK + drift_cv**2, prior_days, half_life_days, account_codes, own, floor_cv**2 / WEEK, per_day=1.0 / WEEK)

    def split(self) -> tuple[np.ndarray, np.ndarray]:
        """(a, b): ``φ_w = a / w + b`` for a window of ``w`` days."""
        phi_1, phi_7 = self.day.phi(), self.week.phi()
        persistent = np.clip((WEEK * phi_7 - phi_1) / (WEEK - 1), 0.0, phi_1)
        return phi_1 - persistent, persistent
