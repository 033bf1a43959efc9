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

from scipy.sparse import csr_matrix
from scipy.special import ndtr

from anomaly.config import RULE_TYPES, CpcRatioRule, CplRatioRule, RuleBase, SpendRatioRule, ThresholdRule, VariationConfig
from anomaly.detect.baseline import Baseline
from anomaly.detect.changes import ChangeDays, recent_factor
from anomaly.detect.panel import Panel, recent, shift, window_sum
from anomaly.detect.stats import dispersion, fisher, lower_tail

NONE, WARNING, CRITICAL = 0, 1, 2
WANDER_DAYS = 7  # the time scale of the persistent variation (learned from trailing weeks)
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
    changes: ChangeDays | None = None  # budget, bidding and status changes per (day, campaign)
    lead_share: np.ndarray | None = None  # the part of each day's final leads reported yet (completeness)
    volume_elasticity: float = 0.0  # cost per click ∝ (clicks / usual clicks) ** this, above the usual volume


@dataclass(frozen=True)
class RuleResult:
    metric: str
    observed: np.ndarray
    baseline: np.ndarray
    level: np.ndarray  # int8: NONE / WARNING / CRITICAL


class _Tail:
    """A tail probability (``lower_tail``, or Fisher's combination of two) over the days × columns
    cells, computed the first time a cell is asked for and kept."""

    def __init__(self, terms, possible: np.ndarray):
        self._terms, self._possible = terms, possible
        self._values: np.ndarray | None = None
        self._done: np.ndarray | None = None

    def get(self, candidates: np.ndarray) -> np.ndarray:
        if self._values is None:
            self._values = np.ones(np.broadcast_shapes(candidates.shape, self._possible.shape))
            self._done = np.zeros(self._values.shape, dtype=bool)
        todo = candidates & self._possible & ~self._done
        if todo.any():
            if isinstance(self._terms[0], tuple):  # two tails, combined
                first, second = (lower_tail(*term, where=todo) for term in self._terms)
                self._values[todo] = fisher(first[todo], second[todo])
            else:
                self._values[todo] = lower_tail(*self._terms, where=todo)[todo]
            self._done |= todo
        return self._values


class _Window:
    """Window sums, the baseline as it stood ``lag`` days before the window began, and the evidence
    that the window's cost per lead is worse than that baseline (computed once per window).

    An account total pools its campaigns' evidence: the leads (and clicks) it should have bought
    are the sum of what each campaign's spend buys at that campaign's own baseline, so a budget
    moved from a cheap campaign to a dear one is no spike of the account; a campaign without a
    baseline of its own counts at the account's. ``excluded`` (days × columns) leaves campaigns out
    of their account's total on those days (those already in an incident of their own)."""

    def __init__(
        self, ctx: Context, days: int, lag: int = 0, excluded: np.ndarray | None = None, columns: np.ndarray | None = None,
        base: "_Window | None" = None,
    ):
        """``base``: a window of the same length and lag whose sums to reuse (only the pooling and
        the evidence are computed again)."""
        if base is None:
            self._sums(ctx, days, lag)
        else:
            self.__dict__.update(base._raw)
        self._evidence(excluded, columns)

    def _sums(self, ctx: Context, days: int, lag: int) -> None:
        p, b = ctx.panel, ctx.baseline
        self._ctx, self._days, self._back = ctx, days, days - 1 + lag
        back = self._back
        self.spend = window_sum(p.spend, days)
        self.leads = window_sum(p.leads, days)
        self.clicks = window_sum(p.clicks, days)
        self.base_cpl = shift(b.cpl, back)
        self.base_cpc = shift(b.cpc, back)
        self.ready = shift(b.ready.astype(float), back) == 1.0
        share = ctx.lead_share
        # leads are expected only in the part of each day reported so far
        self._lead_spend = self.spend if share is None else window_sum(p.spend * share, days)
        self._lead_clicks = self.clicks if share is None else window_sum(p.clicks * share, days)
        with np.errstate(divide="ignore", invalid="ignore"):
            self.expected = self._lead_spend / self.base_cpl
            self._expected_clicks = self.spend / self.base_cpc
            # the usual spend of these weekdays, and how far log spend strays from it over the window
            level = shift(b.spend_level, back)
            if days > 1:  # a step accepted as the new level inside the window: the window is judged against it
                accepted = recent(shift(b.new_spend_level.astype(float), 1) > 0, days - 1)
                level = np.where(accepted, b.spend_level, level)
            weekdays = window_sum(b.spend_factor, days)  # the window's days, in average days
            self.expected_spend = level * weekdays
            counting = 1.0 / (self.expected_spend / self.base_cpc) + shift(b.click_phi, back) / days  # clicks are counts
            self.spend_spread = np.sqrt(shift(b.spend_spread, back) ** 2 / days + np.nan_to_num(counting, nan=0.0, posinf=0.0))
            if ctx.volume_elasticity:
                # diminishing returns: buying more clicks than the baseline did costs more per click (and so per
                # lead); more volume may come that much dearer, as far as its cost per click did rise
                # (more clicks at a lower cost per click are another audience, not a higher bid)
                usual = shift(b.clicks, back) * weekdays  # the volume the baseline was learned at
                volume = np.nan_to_num(self.clicks / usual, nan=1.0, posinf=1.0)
                cpc_up = np.nan_to_num(self.spend / (self.clicks * self.base_cpc), nan=1.0, posinf=1.0)
                dearer = 1.0 / np.clip(np.minimum(volume**ctx.volume_elasticity, cpc_up), 1.0, None)
                self.expected = self.expected * dearer
                self._expected_clicks = self._expected_clicks * dearer
        # a baseline from weeks before the window has had that much longer to wander from it
        wander = 1.0 + lag / WANDER_DAYS
        self._phi_leads = dispersion(shift(b.lead_phi, back), days, shift(b.lead_info, back), wander * shift(b.lead_persist, back))
        self._phi_clicks = dispersion(shift(b.click_phi, back), days, shift(b.click_info, back), wander * shift(b.click_persist, back))
        self._raw = dict(self.__dict__)

    def _evidence(self, excluded: np.ndarray | None, columns: np.ndarray | None) -> None:
        p = self._ctx.panel
        # tail probabilities, the costly part, only for these columns, or (days × columns) cells; the
        # others read as no evidence
        wanted = np.ones(p.shape[1], dtype=bool) if columns is None else columns
        self._wanted = wanted[None, :] if wanted.ndim == 1 else wanted
        with np.errstate(divide="ignore", invalid="ignore"):
            expected_clicks, lead_clicks = self._expected_clicks, self._lead_clicks
            if p.is_total.any():
                expected_clicks = self._pool_totals(p, expected_clicks, excluded)
                if self._ctx.lead_share is not None:
                    lead_clicks = np.where(p.is_total[None, :], self.clicks * (self._lead_spend / self.spend), lead_clicks)
            base_cpl, base_cpc = self.base_cpl, self.base_cpc
            # leads given spend: so few leads must be implausible at the baseline cost per lead
            self.ratio_leads = (np.nan_to_num(self.expected) + 1.0) / (np.nan_to_num(self.leads) + 1.0)
            # clicks given spend, then leads given clicks: cost per click and conversion rate
            base_cvr = base_cpc / base_cpl
            self.ratio_clicks = (
                (np.nan_to_num(expected_clicks) + 1.0) / (np.nan_to_num(self.clicks) + 1.0)
                * (np.nan_to_num(lead_clicks * base_cvr) + 1.0) / (np.nan_to_num(self.leads) + 1.0)
            )
            # cost per click alone: so few clicks for the spend must be implausible at the baseline
            self.cpc_ratio = (np.nan_to_num(expected_clicks) + 1.0) / (np.nan_to_num(self.clicks) + 1.0)
        # Tail probabilities, the costly part, are computed on demand for the cells a rule can fire
        # on, and only where the matching ratio is above 1 (elsewhere they read as no evidence).
        self._leads_tail = _Tail((self.leads, self.expected, self._phi_leads), (self.ratio_leads > 1) & self._wanted)
        self._route_tail = _Tail(
            ((self.clicks, expected_clicks, self._phi_clicks), (self.leads, lead_clicks * base_cvr, self._phi_leads)),
            (self.ratio_clicks > 1) & self._wanted,
        )
        self._cpc_tail = _Tail((self.clicks, expected_clicks, self._phi_clicks), (self.cpc_ratio > 1) & self._wanted)

    def p_leads(self, candidates: np.ndarray) -> np.ndarray:
        """P(so few leads for the spend) at the baseline cost per lead, on ``candidates`` (1 elsewhere)."""
        return self._leads_tail.get(candidates)

    def p_clicks_route(self, candidates: np.ndarray) -> np.ndarray:
        """Fisher's combination of so few clicks for the spend and so few leads for the clicks, on
        ``candidates`` (1 elsewhere)."""
        return self._route_tail.get(candidates)

    def p_cpc(self, at_least: float) -> np.ndarray:
        """P(so few clicks for the spend) at the baseline cost per click, where the cost-per-click
        ratio is at least ``at_least`` (1 where it is at most 1)."""
        return self._cpc_tail.get(self.cpc_ratio >= at_least)

    def _pool_totals(self, p: Panel, expected_clicks: np.ndarray, excluded: np.ndarray | None) -> np.ndarray:
        """Replace each account total's sums and expectations by its campaigns' (those not
        ``excluded``); its baselines become the ones those expectations imply."""
        totals = np.nonzero(p.is_total)[0]
        accounts = p.campaigns["account_id"].to_numpy()
        rows, columns = np.nonzero((accounts[None, :] == accounts[totals][:, None]) & ~p.is_total[None, :])
        member = csr_matrix((np.ones(len(rows)), (rows, columns)), shape=(len(totals), p.shape[1]))  # totals × columns
        account_of = np.full(p.shape[1], 0)
        account_of[columns] = totals[rows]  # each campaign's total column (0 for columns without one: unused)
        pool = lambda values: (member @ values.T).T  # noqa: E731 - each total: the sum over its campaigns
        include = np.ones(p.shape) if excluded is None else (~excluded).astype(float)
        spend = np.nan_to_num(self.spend) * include
        lead_spend = np.nan_to_num(self._lead_spend) * include
        # each campaign's expectation at its own baseline, or at its account's when it has none
        expected = np.where(np.isfinite(self.expected), self.expected, lead_spend / self.base_cpl[:, account_of])
        expected_c = np.where(np.isfinite(expected_clicks), expected_clicks, spend / self.base_cpc[:, account_of])
        observed = ~np.isnan(self.spend[:, totals])
        pooled = {
            "spend": pool(spend),
            "lead_spend": pool(lead_spend),
            "leads": pool(np.nan_to_num(self.leads) * include),
            "clicks": pool(np.nan_to_num(self.clicks) * include),
            "expected": pool(np.nan_to_num(expected * include)),
            "expected_clicks": pool(np.nan_to_num(expected_c * include)),
        }
        self.spend, self.leads, self.clicks, self._lead_spend = self.spend.copy(), self.leads.copy(), self.clicks.copy(), self._lead_spend.copy()
        self.base_cpl, self.base_cpc, self.expected = self.base_cpl.copy(), self.base_cpc.copy(), self.expected.copy()
        expected_clicks = expected_clicks.copy()
        targets = (("spend", self.spend), ("lead_spend", self._lead_spend), ("leads", self.leads), ("clicks", self.clicks), ("expected", self.expected), ("expected_clicks", expected_clicks))
        for name, target in targets:
            target[:, totals] = np.where(observed, pooled[name], np.nan)
        with np.errstate(divide="ignore", invalid="ignore"):
            self.base_cpl[:, totals] = np.where(pooled["expected"] > 0, pooled["lead_spend"] / pooled["expected"], self.base_cpl[:, totals])
            self.base_cpc[:, totals] = np.where(pooled["expected_clicks"] > 0, pooled["spend"] / pooled["expected_clicks"], self.base_cpc[:, totals])
        return expected_clicks

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
        candidates = ratio >= rule.warning
        p = np.fmin(w.p_leads(candidates), w.p_clicks_route(candidates))
    else:
        ratio = w.ratio_leads
        p = w.p_leads(ratio >= rule.warning)
    guard = _volume_guard(rule, w, needs_baseline=True) & _significant(rule, p)
    critical = ratio >= rule.critical if rule.critical is not None else None
    return RuleResult("cpl", _observed_cpl(w), w.base_cpl, _levels(ratio >= rule.warning, critical, guard))


def _lead_shortfall(rule: RuleBase, ctx: Context, w: _Window) -> RuleResult:
    with np.errstate(divide="ignore", invalid="ignore"):
        fraction = w.leads / w.expected
    guard = _volume_guard(rule, w, needs_baseline=True) & _significant(rule, w.p_leads(fraction <= rule.warning))
    critical = fraction <= rule.critical if rule.critical is not None else None
    return RuleResult("leads", w.leads, w.expected, _levels(fraction <= rule.warning, critical, guard))


def _spend_ratio(rule: SpendRatioRule, ctx: Context, w: _Window) -> RuleResult:
    expected = w.expected_spend
    explained = suspect = np.zeros(ctx.panel.shape, dtype=bool)
    if rule.explained_by is not None and ctx.changes is not None:
        within = rule.explained_by.within_days + rule.window_days - 1
        factor = recent_factor(ctx.changes, within)
        suspect = recent_factor(ctx.changes, within, strokes=True) > rule.explained_by.max_budget_factor  # multiplied at a stroke: a typo?
        explained = recent(ctx.changes.of(rule.explained_by.kinds), within) & ~suspect
        expected = expected * np.where(explained, np.maximum(factor, 1.0), 1.0)  # up to the new budget
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = w.spend / expected
        p = np.nan_to_num(1.0 - ndtr(np.log(ratio) / w.spend_spread), nan=1.0)
    worse = ((w.cpc_ratio >= rule.worse_ratio) & (w.p_cpc(rule.worse_ratio) <= rule.worse_p_value)) | (
        (w.ratio_leads >= rule.worse_ratio) & (w.p_leads(w.ratio_leads >= rule.worse_ratio) <= rule.worse_p_value)
    )
    significant = _significant(rule, p) | (suspect & (p <= rule.worse_p_value))
    guard = ~np.isnan(w.spend) & (w.spend >= rule.min_spend) & w.ready & (np.nan_to_num(expected) > 0)
    guard &= significant & (worse | ~explained)
    critical = ratio >= rule.critical if rule.critical is not None else None
    return RuleResult("spend", w.spend, expected, _levels(ratio >= rule.warning, critical, guard))


def _cpc_ratio(rule: CpcRatioRule, ctx: Context, w: _Window) -> RuleResult:
    with np.errstate(divide="ignore", invalid="ignore"):
        observed = np.where(w.clicks > 0, w.spend / w.clicks, np.where(w.spend > 0, np.inf, np.nan))
    not_cheaper = w.ratio_leads >= 1.0  # the leads do not say the money buys better
    guard = _volume_guard(rule, w, needs_baseline=True) & _significant(rule, w.p_cpc(rule.warning)) & not_cheaper
    critical = w.cpc_ratio >= rule.critical if rule.critical is not None else None
    return RuleResult("cpc", observed, w.base_cpc, _levels(w.cpc_ratio >= rule.warning, critical, guard))


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
    "cpc_ratio": _cpc_ratio,
    "isolation_forest": _isolation_forest,
}
assert EVALUATORS.keys() == RULE_TYPES.keys(), "every rule type needs an evaluator"


def evaluate_rule(
    rule: RuleBase, ctx: Context, windows: dict[tuple[int, int], _Window] | None = None, excluded: np.ndarray | None = None,
    columns: np.ndarray | None = None, bases: dict[tuple[int, int], _Window] | None = None,
) -> RuleResult:
    """The rule's result on every (day, campaign), with scope, ownership-change settings and the
    forest gate applied. ``excluded`` leaves campaigns out of their account totals (``_Window``);
    with ``columns`` (columns, or days × columns cells), only those results are meant (the others
    may read as no finding);
    ``windows`` caches windows between rules evaluated with the same ``excluded`` and ``columns``;
    ``bases`` holds windows whose sums those reuse."""
    windows = {} if windows is None else windows
    key = (rule.window_days, rule.baseline_lag_days)
    if key not in windows:
        windows[key] = _Window(ctx, *key, excluded=excluded, columns=columns, base=(bases or {}).get(key))
    w = windows[key]
    evaluator = EVALUATORS[rule.type]
    result = evaluator(rule, ctx, w)
    # the settings after a change in the history first, then those after a handoff on top: a new
    # party's own bidding changes do not make the watch on it quieter
    for after in rule.after_changes if ctx.changes is not None else ():
        other = evaluator(rule.with_overrides(after), ctx, w)
        within = recent(ctx.changes.of(after.kinds), after.within_days + rule.window_days - 1)  # while the window holds such days
        result = RuleResult(result.metric, result.observed, result.baseline, np.where(within, other.level, result.level).astype(np.int8))
    if rule.after_ownership_change is not None:
        strict = evaluator(rule.with_overrides(), ctx, w)
        handed_over = ctx.days_since_change < rule.after_ownership_change.within_days
        result = RuleResult(result.metric, result.observed, result.baseline, np.where(handed_over, strict.level, result.level).astype(np.int8))

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
