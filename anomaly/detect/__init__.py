"""Detection: a pure, causal function of frames.

``detect(metrics, ownership, rules, params, as_of)`` reads no files, no clock and no network. The
decision for day D uses only data up to D, so one vectorised pass over history gives exactly what
a live run on each of those days would have decided; a backtest is that pass.

The result holds every rule firing (``findings``) and the *episodes* they form per
(rule family, account, campaign): an episode opens on the first day a rule of the family fires
(``detected_on``; a window still holding days of the column's previous episode does not open
another) and reaches back to the day the deterioration began (``onset``). For cost per
lead, the onset is the most likely changepoint: the day from which the leads and clicks fit a
worse rate better than the baseline's, searched up to four weeks back. The episode stays open while
its rules fire or the cost per lead stays elevated against the baseline it was detected on, and
resolves after ``resolve_after_days`` quiet days.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from anomaly.config import DetectionConfig, RuleBase
from anomaly.detect.baseline import Baseline, compute_baseline
from anomaly.detect.changes import change_days, recent_factor
from anomaly.detect.completeness import lead_share
from anomaly.detect.forest import causal_scores
from anomaly.detect.panel import Panel, build_panel, recent, window_sum
from anomaly.detect.rules import SEVERITY_NAMES, Context, RuleResult, evaluate_rule
from anomaly.detect.stats import dispersion, lower_tail
from anomaly.ownership import UNKNOWN, party_matrix

FINDING_COLUMNS = ["date", "account_id", "campaign_id", "family", "rule", "severity", "metric", "observed", "baseline", "score"]
EPISODE_COLUMNS = [
    "family",
    "account_id",
    "campaign_id",
    "column",
    "onset",
    "detected_on",
    "last_active",
    "resolved_on",
    "rule",
    "opening_severity",
    "severity",
    "critical_on",
    "metric",
    "observed",
    "baseline",
    "settled_spend",
    "settled_cpl",
    "handed_over",  # closed at a change of managing party, the problem still open (a new episode follows)
]


@dataclass(frozen=True)
class Detection:
    panel: Panel
    baseline: Baseline
    score: np.ndarray
    party: np.ndarray
    party_since: np.ndarray
    findings: pd.DataFrame
    episodes: pd.DataFrame
    lead_share: np.ndarray | None = None  # the part of each day's final leads reported yet


def detect(
    metrics: pd.DataFrame,
    ownership: pd.DataFrame,
    rules: list[RuleBase],
    params: DetectionConfig,
    as_of: pd.Timestamp | str | None = None,
    *,
    start: pd.Timestamp | str | None = None,
    default_party: str | None = None,
    changes: pd.DataFrame | None = None,
    completeness: pd.DataFrame | None = None,
) -> Detection:
    """Run every enabled rule on daily canonical ``metrics`` up to ``as_of`` (default: the last day).

    ``start`` only limits which months the forest scores (earlier days still feed baselines and
    training); episodes are computed over all days. ``ownership`` holds periods as in
    ``anomaly.schema.OWNERSHIP_COLUMNS``; ``changes`` the change history
    (``anomaly.schema.CHANGE_COLUMNS``), whose budget, bidding and status changes rules may take
    into account (``anomaly.detect.changes``); ``completeness`` the share of each account's final
    leads reported so many days after the day, learned from restatements
    (``anomaly.detect.completeness``; read from the data itself when not given).
    """
    panel = build_panel(metrics, pd.Timestamp(as_of) if as_of is not None else None, account_totals=params.account_level)
    party_from_day_before, since_from_day_before = _ownership(panel, ownership, default_party)
    party, since = party_from_day_before[1:], since_from_day_before[1:]
    days_since_change = _days_since_change(party_from_day_before)
    change = change_days(panel, changes)
    suspect = recent_factor(change, SUSPECT_WITHIN_DAYS, strokes=True) > SUSPECT_BUDGET_FACTOR
    baseline = compute_baseline(panel, params.baseline, params.variation, days_since_change, suspect)
    score = causal_scores(panel, baseline, params.forest, pd.Timestamp(start) if start is not None else None)
    share = lead_share(panel, baseline.cpl, params.reporting_lag_days, completeness)
    ctx = Context(panel, baseline, score, party, days_since_change, params.variation, change, share, params.baseline.volume_elasticity)

    windows: dict = {}
    enabled = [r for r in rules if r.enabled]
    per_rule = [(rule, evaluate_rule(rule, ctx, windows)) for rule in enabled]
    pooled = POOLED if params.pool_accounts else set()
    if pooled:
        per_rule = _pool_accounts(ctx, per_rule, windows)
    per_rule = _defer_to_campaigns(panel, per_rule, pooled)
    findings = []
    for order, (rule, result) in enumerate(per_rule):
        days, cols = np.nonzero(result.level)
        if days.size:
            findings.append(
                pd.DataFrame(
                    {
                        "date": panel.dates[days],
                        "account_id": panel.campaigns["account_id"].to_numpy()[cols],
                        "campaign_id": panel.campaigns["campaign_id"].to_numpy()[cols],
                        "family": rule.rule_family,
                        "rule": rule.name,
                        "severity": [SEVERITY_NAMES[level] for level in result.level[days, cols]],
                        "metric": result.metric,
                        "observed": result.observed[days, cols],
                        "baseline": result.baseline[days, cols],
                        "score": score[days, cols],
                        "_column": cols,
                        "_day": days,
                        "_level": result.level[days, cols],
                        "_order": order,
                    }
                )
            )
    all_findings = pd.concat(findings, ignore_index=True) if findings else _no_findings()
    episodes = _episodes(panel, baseline, per_rule, all_findings, params, days_since_change)
    public = all_findings[FINDING_COLUMNS].sort_values(["date", "account_id", "campaign_id", "rule"], kind="stable").reset_index(drop=True)
    return Detection(panel, baseline, score, party, since, public, episodes, share)


#: A budget multiplied more than this at once in the last ``SUSPECT_WITHIN_DAYS`` days may be a
#: typo: the spend it lets through is not accepted as the campaign's new level while it is recent.
SUSPECT_BUDGET_FACTOR = 3.0
SUSPECT_WITHIN_DAYS = 7
#: A family whose findings give way, on a campaign, to another family's: a spend jump that also
#: wrecks the cost per lead is one incident (cost per lead), not two.
YIELDS_TO = {"spend": "cost_per_lead"}
EXPLAINS_DAYS = 7
#: Families whose account totals pool the evidence of the campaigns not already in an incident.
POOLED = {"cost_per_lead"}


def _pool_accounts(ctx: Context, per_rule: list, windows: dict) -> list:
    """Account totals of the ``POOLED`` families, judged on the campaigns that have not fired in
    the family that day or the ``EXPLAINS_DAYS`` before: a campaign in an incident of its own
    does not hide, or make, its account's; what is left of the account is tested as one. Several
    campaigns that each lose a few leads, too few to prove anything alone, are one account-level
    incident."""
    panel = ctx.panel
    if not per_rule or not panel.is_total.any():
        return per_rule
    out = list(per_rule)
    for family in POOLED:
        members = [i for i, (rule, _) in enumerate(per_rule) if rule.rule_family == family]
        if not members:
            continue
        fired = np.max(np.stack([per_rule[i][1].level for i in members]), axis=0) > 0
        excluded = recent(fired, EXPLAINS_DAYS + 1) & ~panel.is_total[None, :]
        if not excluded.any():
            continue
        repooled: dict = {}
        # only the totals' days that leave a campaign out can differ from what was found already
        accounts = panel.campaigns["account_id"].to_numpy()
        totals = np.nonzero(panel.is_total)[0]
        affected = np.zeros(panel.shape, dtype=bool)
        for t in totals:
            affected[:, t] = excluded[:, accounts == accounts[t]].any(axis=1)
        for i in members:
            rule, result = per_rule[i]
            pooled = evaluate_rule(rule, ctx, repooled, excluded, columns=affected, bases=windows)
            level = np.where(affected, pooled.level, result.level).astype(np.int8)
            observed = np.where(affected, pooled.observed, result.observed)
            baseline = np.where(affected, pooled.baseline, result.baseline)
            out[i] = (rule, RuleResult(result.metric, observed, baseline, level))
    return out


def _defer_to_campaigns(panel: Panel, per_rule: list, pooled: set[str]) -> list:
    """Drop findings that another finding already explains, so one problem makes one incident.

    An account total of a family that does not pool (``pooled``) gives way to its campaigns: it
    fires only when none of the account's campaigns fired in the same family that day or the week
    before (a problem spread thinly over many campaigns). A family in ``YIELDS_TO`` gives way on a
    campaign to the family it names.
    """
    if not per_rule:
        return per_rule
    families = {rule.rule_family for rule, _ in per_rule}
    fired = {f: np.max(np.stack([r.level for rule, r in per_rule if rule.rule_family == f]), axis=0) > 0 for f in families}
    lately = {f: recent(v, EXPLAINS_DAYS + 1) for f, v in fired.items()}
    is_total = panel.is_total
    account_of = panel.campaigns["account_id"].to_numpy()
    totals = np.nonzero(is_total)[0]
    explained = {}
    for family in families:
        mask = np.zeros(panel.shape, dtype=bool)
        if totals.size and family not in pooled:
            for t in totals:
                members = np.nonzero((account_of == account_of[t]) & ~is_total)[0]
                mask[:, t] = lately[family][:, members].any(axis=1)
        if family in YIELDS_TO and YIELDS_TO[family] in lately:
            mask |= lately[YIELDS_TO[family]]
        explained[family] = mask
    return [
        (rule, RuleResult(result.metric, result.observed, result.baseline, np.where(explained[rule.rule_family], 0, result.level).astype(np.int8)))
        for rule, result in per_rule
    ]


def _no_findings() -> pd.DataFrame:
    columns = {
        "date": "datetime64[ns]", "account_id": str, "campaign_id": str, "family": str, "rule": str, "severity": str,
        "metric": str, "observed": float, "baseline": float, "score": float,
        "_column": "int64", "_day": "int64", "_level": "int8", "_order": "int64",
    }
    return pd.DataFrame({name: pd.Series(dtype=dtype) for name, dtype in columns.items()})


def _ownership(panel: Panel, ownership: pd.DataFrame, default_party: str | None):
    if panel.shape[0] == 0:
        shape = (1, panel.shape[1])
        return np.full(shape, UNKNOWN, dtype=object), np.full(shape, np.datetime64("NaT"), dtype="datetime64[ns]")
    # one extra day in front, so a handoff on the panel's first day still counts as a change
    dates = pd.date_range(panel.dates[0] - pd.Timedelta(days=1), panel.dates[-1], freq="D")
    party, since = party_matrix(
        ownership, panel.campaigns["account_id"].to_numpy(), panel.campaigns["campaign_id"].to_numpy(), dates, default_party
    )
    return party, since


def _days_since_change(party_with_lead_day: np.ndarray) -> np.ndarray:
    """Days since the managing party last changed; inf where it never did."""
    previous, current = party_with_lead_day[:-1], party_with_lead_day[1:]
    changed = (previous != current) & (previous != UNKNOWN) & (current != UNKNOWN)
    n_days = current.shape[0]
    day = np.arange(n_days, dtype=float)[:, None]
    last_change = np.where(changed, day, -np.inf)
    last_change = np.maximum.accumulate(last_change, axis=0) if n_days else last_change
    return day - last_change


ONSET_SEARCH_DAYS = 28


def _episodes(panel: Panel, baseline: Baseline, per_rule, findings: pd.DataFrame, params: DetectionConfig, days_since_change: np.ndarray) -> pd.DataFrame:
    if findings.empty:
        return pd.DataFrame(columns=EPISODE_COLUMNS)
    n_days, n_campaigns = panel.shape
    resolve_after = params.incidents.resolve_after_days
    spend, leads = np.nan_to_num(panel.spend), np.nan_to_num(panel.leads)
    spend7, leads7 = window_sum(spend, 7), window_sum(leads, 7)
    with np.errstate(invalid="ignore"):
        spend_elevated = spend >= SPEND_ELEVATED_RATIO * baseline.spend_level * baseline.spend_factor
    rows = []
    for family in sorted(findings["family"].unique()):
        rules = [(rule, result) for rule, result in per_rule if rule.rule_family == family]
        levels = np.stack([result.level for _, result in rules])  # rules × days × columns
        fired = levels.max(axis=0) > 0
        reach = np.array([rule.window_days - 1 for rule, _ in rules])[:, None]  # days a window reaches back
        ended = np.full(n_campaigns, -1)  # the last bad day of the column's previous episode
        cost_per_lead = family == "cost_per_lead"
        family_findings = findings[findings["family"] == family]
        active = np.zeros(n_campaigns, dtype=bool)
        quiet = np.zeros(n_campaigns, dtype=np.int64)
        detected = np.zeros(n_campaigns, dtype=np.int64)
        first_seen = np.zeros(n_campaigns, dtype=np.int64)
        critical_seen = np.zeros(n_campaigns, dtype=bool)
        last = np.zeros(n_campaigns, dtype=np.int64)
        reference = np.full(n_campaigns, np.nan)  # the cost per lead the episode is judged against
        spans = []
        for d in range(n_days):
            # a warning that a new managing party took over, and that its own days then make critical
            # (a window wholly after the handover), is two problems: the episode closes at the
            # handover, handed over with the problem still open, and the new party's days are an
            # episode of their own. A problem that merely goes on stays one episode, its excess split
            # by the party of each day.
            handover = d - days_since_change[d]  # the first day under the current party (-inf: none)
            handed = active & ~critical_seen & (handover > first_seen) & (d > detected) & params.incidents.split_at_handover
            if handed.any():
                since = np.where(handed, handover, np.inf)
                split = handed & ((levels[:, d] >= 2) & (d - reach >= since[None, :])).any(axis=0)
                for c in np.nonzero(split)[0]:
                    h = int(handover[c])
                    end = max(detected[c], min(last[c], h - 1))
                    spans.append((c, detected[c], end, max(h, detected[c] + 1), True))
                    ended[c] = end
                active &= ~split
                quiet[split] = 0
            # a window that still holds days of the previous episode re-reads it: that opens nothing
            fresh = ((levels[:, d] > 0) & (d - reach > ended[None, :])).any(axis=0)
            new = fresh & ~active
            if new.any():
                detected[new] = d
                # the first day the detecting windows read
                first_seen[new] = d - np.where(levels[:, d] > 0, reach, 0).max(axis=0)[new]
                critical_seen[new] = False
                reference[new] = baseline.cpl[d, new]
                active |= new
            if cost_per_lead:
                # the baseline as it stands: held while the incident's days are left out of it, it
                # moves only once they have gone on long enough to be its new level
                # (``max_excluded_days``), and then the incident ends
                reference = np.where(active & np.isfinite(baseline.cpl[d]), baseline.cpl[d], reference)
            busy = active & fired[d]
            critical_seen |= active & (levels[:, d] >= 2).any(axis=0)
            bad_day = busy.copy()
            if family == "spend":  # a runaway goes on, and its days count, while a day spends far above the usual level
                elevated = active & spend_elevated[d]
                busy |= elevated
                bad_day = elevated | new
            if cost_per_lead:
                elevated = active & (baseline.hot[d] | _still_elevated(spend7[d], leads7[d], reference, baseline.lead_info[d], baseline.lead_phi[d], baseline.lead_persist[d], params))
                with np.errstate(divide="ignore", invalid="ignore"):
                    worse = (leads[d] + 0.5) * params.baseline.elevated_ratio <= np.nan_to_num(spend[d] / reference) + 0.5
                busy |= elevated
                bad_day |= elevated & worse
            quiet[busy] = 0
            last[bad_day] = d  # the last day that was itself bad, not one the trailing week drags along
            idle = active & ~busy
            quiet[idle] += 1
            done = idle & (quiet >= resolve_after)
            for c in np.nonzero(done)[0]:
                spans.append((c, detected[c], last[c], d, False))
            ended[done] = last[done]
            active &= ~done
            quiet[done] = 0
        for c in np.nonzero(active)[0]:
            spans.append((c, detected[c], last[c], None, False))
        by_column = {c: g for c, g in family_findings.groupby("_column")}
        previous_end: dict[int, int] = {}
        for c, det, lst, resolved, handed_over in sorted(spans, key=lambda span: (span[0], span[1])):
            f = by_column[c]
            inside = f[(f["_day"] >= det) & (f["_day"] <= lst)]
            opening = inside[inside["_day"] == det].sort_values(["_level", "_order"], ascending=[False, True]).iloc[0]
            critical_days = inside.loc[inside["_level"] >= 2, "_day"]
            floor = max(previous_end.get(c, -1) + 1, det - ONSET_SEARCH_DAYS + 1, 0)
            handoff = det - days_since_change[det, c]  # the last change of managing party (-inf: none)
            on = _changepoint(panel, baseline, c, det, floor, params, handoff) if cost_per_lead else det
            previous_end[c] = lst if resolved is not None else n_days
            rows.append(
                {
                    "family": family,
                    "account_id": panel.campaigns["account_id"].iat[c],
                    "campaign_id": panel.campaigns["campaign_id"].iat[c],
                    "column": int(c),
                    "onset": panel.dates[on],
                    "detected_on": panel.dates[det],
                    "last_active": panel.dates[lst],
                    "resolved_on": panel.dates[resolved] if resolved is not None else pd.NaT,
                    "rule": opening["rule"],
                    "opening_severity": opening["severity"],
                    "severity": "critical" if len(critical_days) else "warning",
                    "critical_on": panel.dates[critical_days.min()] if len(critical_days) else pd.NaT,
                    "metric": opening["metric"],
                    "observed": float(opening["observed"]),
                    "baseline": float(opening["baseline"]),
                    "settled_spend": _settled_spend(baseline, c, det, resolved) if family == "spend" and not handed_over else np.nan,
                    "settled_cpl": _settled_cpl(baseline, c, det, resolved, params) if cost_per_lead and not handed_over else np.nan,
                    "handed_over": handed_over,
                }
            )
    episodes = pd.DataFrame(rows, columns=EPISODE_COLUMNS)
    return episodes.sort_values(["detected_on", "account_id", "campaign_id", "family"], kind="stable").reset_index(drop=True)


def _settled_spend(baseline: Baseline, c: int, detected: int, resolved: int | None) -> float:
    """The usual spend of an average day that a spend episode's step was accepted as (NaN when it
    resolved otherwise, or is still open)."""
    if resolved is None:
        return np.nan
    days = np.nonzero(baseline.new_spend_level[detected : resolved + 1, c])[0]
    if not days.size:
        return np.nan
    after = min(detected + int(days[-1]) + 1, baseline.spend_level.shape[0] - 1)
    return float(baseline.spend_level[after, c])


def _settled_cpl(baseline: Baseline, c: int, detected: int, resolved: int | None, params: DetectionConfig) -> float:
    """The baseline cost per lead a cost-per-lead episode resolved at, where that is its new level
    (``elevated_ratio`` × the one it was detected against, or more); NaN otherwise."""
    if resolved is None:
        return np.nan
    before, after = baseline.cpl[detected, c], baseline.cpl[resolved, c]
    return float(after) if np.isfinite(before) and np.isfinite(after) and after >= params.baseline.elevated_ratio * before else np.nan


def _still_elevated(spend7, leads7, reference, lead_info, lead_phi, lead_persist, params: DetectionConfig) -> np.ndarray:
    """The last seven days' leads still clearly short of what they cost at the detection baseline."""
    with np.errstate(divide="ignore", invalid="ignore"):
        expected = spend7 / reference
    short = (leads7 + 1.0) * params.baseline.elevated_ratio <= expected + 1.0
    p = lower_tail(leads7, expected, dispersion(lead_phi, 7, lead_info, lead_persist))
    return short & (p <= STILL_ELEVATED_P)


STILL_ELEVATED_P = 0.2
#: A spend episode stays open while a day spends at least this × the usual for its weekday (the
#: level keeps a runaway's days out, and moves only when a step is accepted as the new level).
SPEND_ELEVATED_RATIO = 2.0


HANDOFF_PRIOR = float(np.log(10.0))


def _changepoint(panel: Panel, baseline: Baseline, c: int, detected: int, floor: int, params: DetectionConfig, handoff: float) -> int:
    """The most likely first day of a worse rate, from ``floor`` to ``detected``.

    For each candidate start s, the log-likelihood ratio of "clicks per spend and leads per click
    fell from s on" against "they stayed at the baseline", summed over s..detected (quasi-Poisson:
    scaled down by the day-to-day variation). The baseline is the one the detection compared with.
    The day a new party took over is a changepoint known in advance: it starts ten times likelier
    than any other day (``HANDOFF_PRIOR``), so a day or two of noise does not move the onset, and
    the incident's party, across it.
    """
    if floor >= detected:
        return detected
    days = slice(floor, detected + 1)
    ref_cpl, ref_cpc = baseline.cpl[detected, c], baseline.cpc[detected, c]
    spend = np.nan_to_num(panel.spend[days, c])
    leads = np.nan_to_num(panel.leads[days, c])
    clicks = np.nan_to_num(panel.clicks[days, c])
    if not np.isfinite(ref_cpl) or ref_cpl <= 0:
        return detected
    # suffix sums: the segment from each candidate start to the detection day
    suffix = lambda values: np.cumsum(values[::-1])[::-1]  # noqa: E731
    lead_cv = np.sqrt(baseline.lead_phi[detected, c] + baseline.lead_persist[detected, c])
    click_cv = np.sqrt(baseline.click_phi[detected, c] + baseline.click_persist[detected, c])
    total = _drop_llr(suffix(leads), suffix(spend / ref_cpl), lead_cv)
    if np.isfinite(ref_cpc) and ref_cpc > 0:
        cvr = ref_cpc / ref_cpl
        total = _drop_llr(suffix(clicks), suffix(spend / ref_cpc), click_cv) + _drop_llr(
            suffix(leads), suffix(clicks * cvr), lead_cv
        )
    if not np.any(total > 0):
        return detected
    if np.isfinite(handoff) and floor <= handoff <= detected:
        total[int(handoff) - floor] += HANDOFF_PRIOR
    return floor + int(np.argmax(total))


def _drop_llr(observed: np.ndarray, expected: np.ndarray, variation: float) -> np.ndarray:
    """Poisson log-likelihood ratio for a rate below expectation (0 where it is not below)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        llr = np.where(observed > 0, observed * np.log(observed / expected), 0.0) - (observed - expected)
    length = np.arange(len(observed), 0, -1)
    scale = 1.0 + variation**2 * expected / length
    return np.where((observed < expected) & (expected > 0), llr / scale, 0.0)
