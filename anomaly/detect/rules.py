"""Evaluate the YAML rules over a whole panel at once.

Each rule type has one evaluator keyed by its YAML ``type`` (the same keys as
``anomaly.config.RULE_TYPES``). An evaluator returns, for every (day, campaign), the observed value,
the baseline it is compared with, and the severity level it reaches (0 none, 1 warning,
2 critical); guards (volume, baseline readiness, significance) are applied by the evaluator, scope
and the forest gate by ``evaluate_rule``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from anomaly.config import RULE_TYPES, CplRatioRule, RuleBase, ThresholdRule, VariationConfig
from anomaly.detect.baseline import Baseline
from anomaly.detect.panel import Panel, shift, window_sum
from anomaly.detect.stats import dispersion, fisher, lower_tail

NONE, WARNING, CRITICAL = 0, 1, 2
SEVERITY_NAMES = {WARNING: "warning", CRITICAL: "critical"}


@dataclass(frozen=True)
class Context:
    """What every evaluator may read: the panel, its baseline, the forest score, ownership."""

    panel: Panel
    baseline: Baseline
    score: np.ndarray
    party: np.ndarray  # managing party per (day, campaign)
    days_since_change: np.ndarray  # days since the managing party changed (inf: never)
    variation: VariationConfig = VariationConfig()


@dataclass(frozen=True)
class RuleResult:
    metric: str
    observed: np.ndarray
    baseline: np.ndarray
    level: np.ndarray  # int8: NONE / WARNING / CRITICAL


class _Window:
    """Window sums, the baseline as it stood ``lag`` days before the window began, and the evidence
    that the window's cost per lead is worse than that baseline (computed once per window)."""

    def __init__(self, ctx: Context, days: int, lag: int = 0):
        p, b = ctx.panel, ctx.baseline
        self._ctx, self._days, self._back = ctx, days, days - 1 + lag
        self.spend = window_sum(p.spend, days)
        self.leads = window_sum(p.leads, days)
        self.clicks = window_sum(p.clicks, days)
        back = self._back
        self.base_cpl = shift(b.cpl, back)
        base_cpc = shift(b.cpc, back)
        self.ready = shift(b.ready.astype(float), back) == 1.0
        lead_info, click_info = shift(b.lead_info, back), shift(b.click_info, back)
        with np.errstate(divide="ignore", invalid="ignore"):
            self.expected = self.spend / self.base_cpl
            self.expected_spend = shift(b.spend, back) * window_sum(b.spend_factor, days)
            # Tail probabilities are computed only where the matching ratio is above 1: every rule
            # that reads them also needs a ratio above 1 (or a shortfall below 1) to fire.
            # leads given spend: so few leads must be implausible at the baseline cost per lead
            self.ratio_leads = (np.nan_to_num(self.expected) + 1.0) / (np.nan_to_num(self.leads) + 1.0)
            phi_leads = dispersion(ctx.variation.leads, days, lead_info)
            self.p_leads = lower_tail(self.leads, self.expected, phi_leads, where=self.ratio_leads > 1)
            # clicks given spend, then leads given clicks: cost per click and conversion rate
            expected_clicks = self.spend / base_cpc
            base_cvr = base_cpc / self.base_cpl
            self.ratio_clicks = (
                (np.nan_to_num(expected_clicks) + 1.0) / (np.nan_to_num(self.clicks) + 1.0)
                * (np.nan_to_num(self.clicks * base_cvr) + 1.0) / (np.nan_to_num(self.leads) + 1.0)
            )
            worse = self.ratio_clicks > 1
            p_clicks = lower_tail(self.clicks, expected_clicks, dispersion(ctx.variation.clicks, days, click_info), where=worse)
            p_conversion = lower_tail(self.leads, self.clicks * base_cvr, phi_leads, where=worse)
            self.p_clicks_route = np.where(worse, fisher(p_clicks, p_conversion), 1.0)

    # only threshold rules read these: built on first use, not for every window

    @cached_property
    def impressions(self) -> np.ndarray:
        return window_sum(self._ctx.panel.impressions, self._days)

    @cached_property
    def base(self) -> dict[str, np.ndarray]:
        """The baseline's totals over a window as long as this one."""
        b, back, days = self._ctx.baseline, self._back, self._days
        totals = {name: shift(getattr(b, name), back) * days for name in ("spend", "leads", "clicks", "impressions")}
        return {"cpl": self.base_cpl, **totals}


def _levels(breach_warning: np.ndarray, breach_critical: np.ndarray | None, guard: np.ndarray) -> np.ndarray:
    level = np.where(guard & breach_warning, WARNING, NONE).astype(np.int8)
    if breach_critical is not None:
        level[guard & breach_critical] = CRITICAL
    return level


def _volume_guard(rule: RuleBase, w: _Window, *, needs_baseline: bool) -> np.ndarray:
    guard = ~np.isnan(w.spend) & (w.spend >= rule.min_spend)
    if needs_baseline or rule.min_expected_leads > 0:
        guard &= w.ready & (np.nan_to_num(w.expected) >= rule.min_expected_leads)
    return guard


def _significant(rule: RuleBase, p: np.ndarray) -> np.ndarray:
    return np.ones(p.shape, dtype=bool) if rule.max_p_value is None else p <= rule.max_p_value


def _observed_cpl(w: _Window) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(w.leads > 0, w.spend / w.leads, np.where(w.spend > 0, np.inf, np.nan))


def _cpl_ratio(rule: CplRatioRule, ctx: Context, w: _Window) -> RuleResult:
    if rule.use_clicks:
        ratio = np.fmax(w.ratio_leads, w.ratio_clicks)
        p = np.fmin(w.p_leads, w.p_clicks_route)
    else:
        ratio, p = w.ratio_leads, w.p_leads
    guard = _volume_guard(rule, w, needs_baseline=True) & _significant(rule, p)
    critical = ratio >= rule.critical if rule.critical is not None else None
    return RuleResult("cpl", _observed_cpl(w), w.base_cpl, _levels(ratio >= rule.warning, critical, guard))


def _lead_shortfall(rule: RuleBase, ctx: Context, w: _Window) -> RuleResult:
    with np.errstate(divide="ignore", invalid="ignore"):
        fraction = w.leads / w.expected
    guard = _volume_guard(rule, w, needs_baseline=True) & _significant(rule, w.p_leads)
    critical = fraction <= rule.critical if rule.critical is not None else None
    return RuleResult("leads", w.leads, w.expected, _levels(fraction <= rule.warning, critical, guard))


def _spend_ratio(rule: RuleBase, ctx: Context, w: _Window) -> RuleResult:
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = w.spend / w.expected_spend
    guard = ~np.isnan(w.spend) & (w.spend >= rule.min_spend) & w.ready & (np.nan_to_num(w.expected_spend) > 0)
    critical = ratio >= rule.critical if rule.critical is not None else None
    return RuleResult("spend", w.spend, w.expected_spend, _levels(ratio >= rule.warning, critical, guard))


def _threshold(rule: ThresholdRule, ctx: Context, w: _Window) -> RuleResult:
    with np.errstate(divide="ignore", invalid="ignore"):
        values = {
            "cpl": np.where(w.leads > 0, w.spend / w.leads, np.where(w.spend > 0, np.inf, np.nan)),
            "cpc": np.where(w.clicks > 0, w.spend / w.clicks, np.nan),
            "ctr": np.where(w.impressions > 0, w.clicks / w.impressions, np.nan),
            "cvr": np.where(w.clicks > 0, w.leads / w.clicks, np.nan),
            "spend": w.spend,
            "leads": w.leads,
            "clicks": w.clicks,
            "impressions": w.impressions,
        }
        base = {
            "cpc": w.base["spend"] / w.base["clicks"],
            "ctr": w.base["clicks"] / w.base["impressions"],
            "cvr": w.base["leads"] / w.base["clicks"],
        }
    observed = values[rule.metric]
    baseline = w.base.get(rule.metric, base.get(rule.metric))
    if rule.direction == "above":
        warn, crit = observed >= rule.warning, (observed >= rule.critical if rule.critical is not None else None)
    else:
        warn, crit = observed <= rule.warning, (observed <= rule.critical if rule.critical is not None else None)
    guard = _volume_guard(rule, w, needs_baseline=False) & ~np.isnan(observed)
    return RuleResult(rule.metric, observed, baseline, _levels(warn, crit, guard))


def _isolation_forest(rule: RuleBase, ctx: Context, w: _Window) -> RuleResult:
    score = window_max(ctx.score, rule.window_days)
    observed = _observed_cpl(w)
    with np.errstate(invalid="ignore"):
        worse = observed > w.base_cpl
    guard = _volume_guard(rule, w, needs_baseline=True) & worse & ~np.isnan(score)
    critical = score >= rule.critical if rule.critical is not None else None
    return RuleResult("cpl", observed, w.base_cpl, _levels(score >= rule.warning, critical, guard))


def window_max(values: np.ndarray, days: int) -> np.ndarray:
    out = values.copy()
    for back in range(1, days):
        out = np.fmax(out, shift(values, back))
    return out


EVALUATORS: dict[str, Callable[..., RuleResult]] = {
    "cpl_ratio": _cpl_ratio,
    "lead_shortfall": _lead_shortfall,
    "threshold": _threshold,
    "spend_ratio": _spend_ratio,
    "isolation_forest": _isolation_forest,
}
assert EVALUATORS.keys() == RULE_TYPES.keys(), "every rule type needs an evaluator"


def evaluate_rule(rule: RuleBase, ctx: Context, windows: dict[tuple[int, int], _Window] | None = None) -> RuleResult:
    """The rule's result on every (day, campaign), with scope, ownership-change settings and the
    forest gate applied."""
    windows = {} if windows is None else windows
    key = (rule.window_days, rule.baseline_lag_days)
    if key not in windows:
        windows[key] = _Window(ctx, *key)
    w = windows[key]
    evaluator = EVALUATORS[rule.type]
    result = evaluator(rule, ctx, w)
    if rule.after_ownership_change is not None:
        strict = evaluator(rule.with_overrides(), ctx, w)
        recent = ctx.days_since_change < rule.after_ownership_change.within_days
        result = RuleResult(result.metric, result.observed, result.baseline, np.where(recent, strict.level, result.level).astype(np.int8))

    level = result.level
    in_scope = _scope_mask(rule, ctx)
    if in_scope is not None:
        level = np.where(in_scope, level, NONE).astype(np.int8)
    gate = rule.forest
    if gate.mode != "ignore":
        scored = ~np.isnan(ctx.score)
        high = scored & (ctx.score >= gate.min_score)
        if gate.mode == "require":  # where no model exists yet, the rule alone decides
            level = np.where(scored & ~high, NONE, level).astype(np.int8)
        else:
            level = np.where(high & (level == WARNING), CRITICAL, level).astype(np.int8)
    return RuleResult(result.metric, result.observed, result.baseline, level)


def _scope_mask(rule: RuleBase, ctx: Context) -> np.ndarray | None:
    scope = rule.scope
    if not (scope.accounts or scope.campaigns or scope.parties):
        return None
    campaigns = ctx.panel.campaigns
    columns = np.ones(len(campaigns), dtype=bool)
    if scope.accounts:
        columns &= campaigns["account_id"].isin(scope.accounts).to_numpy()
    if scope.campaigns:
        columns &= campaigns["campaign_id"].isin(scope.campaigns).to_numpy()
    mask = np.broadcast_to(columns, ctx.panel.shape)
    if scope.parties:
        mask = mask & np.isin(ctx.party, scope.parties)
    return mask
