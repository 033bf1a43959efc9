"""Isolation-forest scoring of campaign-days, normalised by each campaign's own baseline.

Every feature is one-sided: it measures only how much *worse* than its baseline a campaign did
(cost per lead up, spend up, cost per click up, conversion rate down) and is 0 when it did as well
or better. A cheaper lead therefore looks exactly like a normal day, and the score never alarms on
an improvement. Because features are relative to each campaign's baseline, one model serves the
whole portfolio.

Scores are calibrated to 0..1: the fraction of the training campaign-days that were less anomalous.
**Higher means more anomalous.** The model is refitted on the first day of each month on the
``training_days`` before it, so the score of day D never depends on data from D or later.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator
from sklearn.ensemble import IsolationForest
from sklearn.utils.validation import check_is_fitted

from anomaly.config import ForestConfig
from anomaly.detect.baseline import Baseline
from anomaly.detect.panel import Panel, shift, window_sum

FEATURES = ("cpl_1d", "cpl_3d", "spend_1d", "cpc_1d", "cvr_1d")


class PortfolioForest(BaseEstimator):
    """An ``IsolationForest`` over baseline-relative features, with a calibrated score.

    Follows scikit-learn conventions: ``__init__`` stores parameters, ``fit`` returns ``self``,
    learned state ends in ``_``, ``score`` is guarded by ``check_is_fitted``.
    """

    def __init__(self, *, n_estimators: int = 100, max_samples: int = 256, max_calibration_rows: int = 20_000, random_state: int | None = 0):
        self.n_estimators = n_estimators
        self.max_samples = max_samples
        self.max_calibration_rows = max_calibration_rows
        self.random_state = random_state

    def fit(self, X: np.ndarray) -> "PortfolioForest":
        X = np.asarray(X, dtype=float)
        if X.ndim != 2 or X.shape[0] < 2:
            raise ValueError(f"PortfolioForest.fit needs a 2-D array with at least 2 rows, got shape {X.shape}")
        if X.shape[0] > self.max_calibration_rows:
            # the trees only ever see max_samples rows each; a fixed subsample calibrates as well
            rng = np.random.default_rng(self.random_state)
            X = X[np.sort(rng.choice(X.shape[0], self.max_calibration_rows, replace=False))]
        self.forest_ = IsolationForest(
            n_estimators=self.n_estimators,
            max_samples=min(self.max_samples, X.shape[0]),
            random_state=self.random_state,
        ).fit(X)
        # IsolationForest.score_samples: the lower, the more abnormal. Negate so higher = worse.
        self.training_scores_ = np.sort(-self.forest_.score_samples(X))
        return self

    def score(self, X: np.ndarray) -> np.ndarray:
        """Calibrated anomaly score in [0, 1]; higher = more anomalous than more of the training data."""
        check_is_fitted(self, "forest_")
        X = np.asarray(X, dtype=float)
        if X.shape[0] == 0:
            return np.zeros(0)
        raw = -self.forest_.score_samples(X)
        return np.searchsorted(self.training_scores_, raw, side="left") / len(self.training_scores_)


def features(panel: Panel, baseline: Baseline) -> tuple[np.ndarray, np.ndarray]:
    """Feature cube (days, campaigns, len(FEATURES)) and the mask of cells that can be scored."""
    with np.errstate(divide="ignore", invalid="ignore"):
        spend, leads, clicks = panel.spend, panel.leads, panel.clicks
        expected_1d = spend / baseline.cpl
        spend_3d, leads_3d = window_sum(spend, 3), window_sum(leads, 3)
        expected_3d = spend_3d / shift(baseline.cpl, 2)
        base_cpc = (baseline.spend + 1.0) / (baseline.clicks + 1.0)
        base_cvr = baseline.leads / np.maximum(baseline.clicks, 1e-9)
        cube = np.stack(
            [
                np.log((expected_1d + 1.0) / (leads + 1.0)),
                np.log((expected_3d + 1.0) / (leads_3d + 1.0)),
                np.log((spend + 1.0) / (baseline.spend + 1.0)),
                np.log(((spend + 1.0) / (clicks + 1.0)) / base_cpc),
                np.log((clicks * base_cvr + 1.0) / (leads + 1.0)),
            ],
            axis=-1,
        )
    cube = np.clip(np.nan_to_num(cube, nan=0.0, posinf=0.0, neginf=0.0), 0.0, None)
    valid = baseline.ready & panel.observed & (np.nan_to_num(spend) > 0)
    return cube, valid


def causal_scores(panel: Panel, baseline: Baseline, params: ForestConfig, start: pd.Timestamp | None = None) -> np.ndarray:
    """Score every scorable cell from ``start`` on with the model of its month (NaN: no verdict).

    The model for a month is fitted on the valid cells of the ``training_days`` before the month's
    first day; a month with fewer than ``min_training_rows`` of them gets no scores.
    """
    scores = np.full(panel.shape, np.nan)
    if not params.enabled or panel.shape[0] == 0:
        return scores
    cube, valid = features(panel, baseline)
    months = panel.dates.to_period("M")
    first_month = (pd.Timestamp(start) if start is not None else panel.dates[0]).to_period("M")
    for month in months.unique():
        if month < first_month:
            continue
        month_start = month.to_timestamp()
        train_rows = (panel.dates >= month_start - pd.Timedelta(days=params.training_days)) & (panel.dates < month_start)
        train_mask = valid & train_rows[:, None]
        if train_mask.sum() < params.min_training_rows:
            continue
        model = PortfolioForest(
            n_estimators=params.n_estimators, max_samples=params.max_samples, random_state=params.random_state
        ).fit(cube[train_mask])
        score_mask = valid & (months == month)[:, None]
        scores[score_mask] = model.score(cube[score_mask])
    return scores
