"""Detection: a pure, causal function of frames.

``detect(metrics, ownership, rules, params, as_of)`` reads no files, no clock and no network. The
decision for day D uses only data up to D, so one vectorised pass over history gives exactly what
a live run on each of those days would have decided; a backtest is that pass.

The result holds every rule firing (``findings``) and the *episodes* they form per
(rule family, account, campaign): an episode opens on the first day a rule of the family fires
(``detected_on``), reaches back to the day the deterioration began (``onset``: the start of the run
of hot days that leads up to detection), stays open while days are hot or rules fire, and resolves
after ``resolve_after_days`` quiet days.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from anomaly.config import DetectionConfig, RuleBase
from anomaly.detect.baseline import Baseline, compute_baseline
from anomaly.detect.forest import causal_scores
from anomaly.detect.panel import Panel, build_panel
from anomaly.detect.rules import SEVERITY_NAMES, Context, evaluate_rule
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


def detect(
    metrics: pd.DataFrame,
    ownership: pd.DataFrame,
    rules: list[RuleBase],
    params: DetectionConfig,
    as_of: pd.Timestamp | str | None = None,
    *,
    start: pd.Timestamp | str | None = None,
    default_party: str | None = None,
) -> Detection:
    """Run every enabled rule on daily canonical ``metrics`` up to ``as_of`` (default: the last day).

    ``start`` only limits which months the forest scores (earlier days still feed baselines and
    training); episodes are computed over all days. ``ownership`` holds periods as in
    ``anomaly.schema.OWNERSHIP_COLUMNS``.
    """
    panel = build_panel(metrics, pd.Timestamp(as_of) if as_of is not None else None)
    baseline = compute_baseline(panel, params.baseline)
    score = causal_scores(panel, baseline, params.forest, pd.Timestamp(start) if start is not None else None)
    party_from_day_before, since_from_day_before = _ownership(panel, ownership, default_party)
    party, since = party_from_day_before[1:], since_from_day_before[1:]
    ctx = Context(panel, baseline, score, party, _days_since_change(party_from_day_before))

    windows: dict = {}
    findings, per_rule = [], []
    for order, rule in enumerate(r for r in rules if r.enabled):
        result = evaluate_rule(rule, ctx, windows)
        per_rule.append((rule, result))
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
    episodes = _episodes(panel, baseline, per_rule, all_findings, params.incidents.resolve_after_days)
    public = all_findings[FINDING_COLUMNS].sort_values(["date", "account_id", "campaign_id", "rule"], kind="stable").reset_index(drop=True)
    return Detection(panel, baseline, score, party, since, public, episodes)


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


def _episodes(panel: Panel, baseline: Baseline, per_rule, findings: pd.DataFrame, resolve_after: int) -> pd.DataFrame:
    if findings.empty:
        return pd.DataFrame(columns=EPISODE_COLUMNS)
    n_days, n_campaigns = panel.shape
    hot_run_start = _run_starts(baseline.hot)
    rows = []
    for family in sorted(findings["family"].unique()):
        rules = [(rule, result) for rule, result in per_rule if rule.rule_family == family]
        level = np.max(np.stack([result.level for _, result in rules]), axis=0)
        fired = level > 0
        # the cost-per-lead family stays open while days are hot; others while their rules fire
        hot = baseline.hot if family == "cost_per_lead" else np.zeros_like(fired)
        family_findings = findings[findings["family"] == family]
        active = np.zeros(n_campaigns, dtype=bool)
        quiet = np.zeros(n_campaigns, dtype=np.int64)
        onset = np.zeros(n_campaigns, dtype=np.int64)
        detected = np.zeros(n_campaigns, dtype=np.int64)
        last = np.zeros(n_campaigns, dtype=np.int64)
        spans = []
        for d in range(n_days):
            new = fired[d] & ~active
            if new.any():
                onset[new] = np.where(hot[d, new], hot_run_start[d, new], d)
                detected[new] = d
                active |= new
            busy = active & (fired[d] | hot[d])
            quiet[busy] = 0
            last[busy] = d
            idle = active & ~busy
            quiet[idle] += 1
            done = idle & (quiet >= resolve_after)
            for c in np.nonzero(done)[0]:
                spans.append((c, onset[c], detected[c], last[c], d))
            active &= ~done
            quiet[done] = 0
        for c in np.nonzero(active)[0]:
            spans.append((c, onset[c], detected[c], last[c], None))
        by_column = {c: g for c, g in family_findings.groupby("_column")}
        for c, on, det, lst, resolved in spans:
            f = by_column[c]
            inside = f[(f["_day"] >= det) & (f["_day"] <= lst)]
            opening = inside[inside["_day"] == det].sort_values(["_level", "_order"], ascending=[False, True]).iloc[0]
            critical_days = inside.loc[inside["_level"] >= 2, "_day"]
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
                }
            )
    episodes = pd.DataFrame(rows, columns=EPISODE_COLUMNS)
    return episodes.sort_values(["detected_on", "account_id", "campaign_id", "family"], kind="stable").reset_index(drop=True)


def _run_starts(hot: np.ndarray) -> np.ndarray:
    """For each (day, campaign), the first day of the run of consecutive hot days ending there."""
    n_days = hot.shape[0]
    day = np.arange(n_days)[:, None]
    breaks = np.where(~hot, day + 1, 0)  # a cold day d means a run can start at d + 1 at the earliest
    return np.maximum.accumulate(breaks, axis=0) if n_days else breaks
