"""A campaign's usual daily spend, how much it strays from day to day, and when it has moved for good.

The level is an exponentially weighted mean of the day's spend over its weekday factor, so a
Monday counts as the Monday it is. Each day is judged against the level in log terms with the
campaign's own spread (learned the same way, robustly: a day counts at most nine times its
expected share). A day that jumps clearly away from the level (``JUMP_Z`` spreads and at least
``JUMP_RATIO``) above the level is kept out of both, so a runaway does not become the usual;
days below it are part of the usual (a monthly cap throttling a budget, a slow week), so the return
from them is no jump. Days at least ``JUMP_RATIO`` above the level make a *run*; after ``new_level_days`` days of a run whose
mean is clearly off the level (``JUMP_Z`` spreads of that many days' mean) and whose cost per click
and cost per lead stayed at baseline (at most a third of its days hot: one noisy day does not keep
a planned step out for good), the run's level is the new level: a budget raised on purpose is
accepted within days, not weeks. Days without spend (paused, not yet launched) change
nothing, so a campaign that resumes is judged against what it spent before.
"""

from __future__ import annotations

import numpy as np

from anomaly.detect.variation import shrunk_ratio

JUMP_Z = 2.58  # a day's spend this many spreads from the level is not an ordinary day
JUMP_RATIO = 1.3  # ... and at least this far in ratio
CLIP = 9.0


class SpendLevel:
    def __init__(self, n_columns: int, half_life_days: float, prior_spread: float, prior_days: float, new_level_days: int, account_codes: np.ndarray, own: np.ndarray):
        self.decay = 0.5 ** (1.0 / half_life_days)
        self.spread_decay = 0.5 ** (1.0 / max(half_life_days * 4, 1.0))
        self.total = np.zeros(n_columns)
        self.weight = np.zeros(n_columns)
        self.square = np.zeros(n_columns)  # weighted sum of squared log deviations
        self.square_weight = np.zeros(n_columns)
        self.prior_var, self.prior_days = prior_spread**2, prior_days
        self.new_level_days = new_level_days
        self.codes, self.own = account_codes, own
        self.n_accounts = int(account_codes.max()) + 1 if account_codes.size else 0
        self.run = np.zeros(n_columns, dtype=np.int64)  # days in a row well above the level
        self.run_total = np.zeros(n_columns)
        self.run_hot = np.zeros(n_columns, dtype=np.int64)  # days of the run whose cost per click or per lead was significantly worse

    def level(self) -> np.ndarray:
        """The usual spend of an average day (NaN before any)."""
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(self.weight > 0, self.total / self.weight, np.nan)

    def spread(self) -> np.ndarray:
        """The day-to-day spread of log spend, shrunk toward the account's and the prior."""
        return np.sqrt(shrunk_ratio(self.square, self.square_weight, self.codes, self.own, self.n_accounts, self.prior_var, self.prior_days))

    def update(self, spend: np.ndarray, factor: np.ndarray, hot: np.ndarray) -> np.ndarray:
        """Take in one day (``factor``: its weekday's share of an average day; ``hot``: its cost per
        lead or per click significantly worse). Returns where a step became the new level today."""
        usual, spread = self.level(), self.spread()
        with np.errstate(divide="ignore", invalid="ignore"):
            normal = spend / factor
            deviation = np.log(normal / usual)
        spent = np.isfinite(normal) & (normal > 0)
        first = spent & ~(self.weight > 0)
        known = spent & (self.weight > 0) & np.isfinite(deviation)
        # only jumps up are kept out and may become a new level: a run of low days (a monthly cap
        # throttling a budget, a slow week) is part of the usual, so the return from it is no jump
        beyond = known & (deviation >= np.log(JUMP_RATIO))
        jump = beyond & (deviation >= JUMP_Z * spread)
        direction = beyond.astype(np.int64)
        same = beyond & (np.sign(self.run) == direction)
        log_normal = np.log(np.where(spent, normal, 1.0))
        self.run = np.where(beyond, np.where(same, self.run + direction, direction), np.where(known, 0, self.run)).astype(np.int64)
        self.run_total = np.where(beyond, np.where(same, self.run_total, 0.0) + log_normal, np.where(known, 0.0, self.run_total))
        self.run_hot = np.where(beyond, np.where(same, self.run_hot, 0) + hot, np.where(known, 0, self.run_hot))

        # a run long enough, whose mean is clearly off the level and whose money bought as usual
        days = np.abs(self.run)
        with np.errstate(divide="ignore", invalid="ignore"):
            shift = self.run_total / np.maximum(days, 1) - np.log(usual)
        settled = beyond & (days >= self.new_level_days) & (3 * self.run_hot <= days) & (shift >= JUMP_Z * spread / np.sqrt(np.maximum(days, 1)))
        if settled.any():
            self.total[settled] = np.exp(self.run_total[settled] / days[settled]) * self.weight[settled]
            self.run[settled], self.run_total[settled], self.run_hot[settled] = 0, 0.0, 0

        ordinary = (known & ~jump) | first
        if ordinary.any():
            self.total[ordinary] = self.decay * self.total[ordinary] + normal[ordinary]
            self.weight[ordinary] = self.decay * self.weight[ordinary] + 1.0
        learn = known & ~jump
        if learn.any():
            var = spread[learn] ** 2
            self.square[learn] = self.spread_decay * self.square[learn] + np.minimum(deviation[learn] ** 2, CLIP * var)
            self.square_weight[learn] = self.spread_decay * self.square_weight[learn] + 1.0
        return settled
