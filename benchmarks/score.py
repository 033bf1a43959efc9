"""Score a detector's alerts against a synthetic portfolio's known incidents.

An alert is one row of ``account_id, campaign_id ("" = account-level), family, onset, detected_on,
managing_party, excess_cost``. It *detects* an incident when it is detected from the incident's
onset to ``grace_days`` after its last day and is on one of the incident's campaigns (the truth's
optional ``campaigns`` column lists them when an incident hits several), or is account-level on an
incident that hits several campaigns, or for an account-wide incident is anywhere in its account.
An account-level alert in the span of one of the account's single-campaign incidents is
*explained*: not false, but not a detection either. Every other alert is false. Only alerts
detected from ``eval_start`` (after the baselines' warm-up) to ``end`` count.

With ``visible`` (the oracle's verdict per incident, ``oracle_found``), every recall is also given
as a share of what the data can show at all.

Delays are in days from onset to the first detecting alert. The excess-cost error compares the
detector's estimate with the cost the incident really caused, ``|estimate − true| / true``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from anomaly.detect.stats import lower_tail
from benchmarks.synth import SPIKE_FACTORS

ALERT_COLUMNS = ["account_id", "campaign_id", "family", "onset", "detected_on", "managing_party", "excess_cost"]
OPTIONAL_ALERT_COLUMNS = ["rule"]
CLASSES = ("spike", "tracking_loss", "creep", "spend_runaway")
BIG_SPIKE_FACTOR = 3.0  # "large spikes": at least this factor ...
BIG_SPIKE_MIN_LEADS = 1.0  # ... in campaigns with at least this many leads a day


@dataclass(frozen=True)
class Scores:
    """The quality of one detector's alerts on one portfolio; ``incidents`` has one row per incident."""

    alerts: int
    true_alerts: int
    false_alerts: int
    precision: float
    recall: float
    f1: float
    false_per_1k_campaign_days: float
    recall_by_class: dict[str, float]
    recall_by_spike_factor: dict[float, float]
    recall_big_spikes: float
    median_delay_big_spikes: float
    median_delay: float
    p90_delay: float
    creep_before_double: float
    party_accuracy: float
    median_excess_error: float
    incidents: pd.DataFrame = field(repr=False)
    visible_recall: dict[str, float] = field(default_factory=dict)
    alerts_scored: pd.DataFrame = field(default=None, repr=False)

    def row(self) -> dict[str, float]:
        """Every headline number, flat, for a table."""
        return {
            "alerts": self.alerts,
            "true_alerts": self.true_alerts,
            "false_alerts": self.false_alerts,
            "precision": self.precision,
            "recall": self.recall,
            "f1": self.f1,
            "false_per_1k": self.false_per_1k_campaign_days,
            "recall_big_spikes": self.recall_big_spikes,
            "median_delay_big_spikes": self.median_delay_big_spikes,
            "median_delay": self.median_delay,
            "p90_delay": self.p90_delay,
            "creep_before_double": self.creep_before_double,
            "party_accuracy": self.party_accuracy,
            "median_excess_error": self.median_excess_error,
            **{f"recall_{cls}": value for cls, value in self.recall_by_class.items()},
            **{f"recall_spike_{factor:g}x": value for factor, value in self.recall_by_spike_factor.items()},
            **{f"visible_{name}": value for name, value in self.visible_recall.items()},
        }


def score(
    alerts: pd.DataFrame,
    truth: pd.DataFrame,
    *,
    campaign_days: int,
    eval_start: pd.Timestamp | str,
    end: pd.Timestamp | str,
    grace_days: int = 3,
    visible: pd.Series | None = None,
) -> Scores:
    """Match ``alerts`` to the ``truth`` incidents (see the module docstring) and summarise.

    ``campaign_days`` is the number of (campaign, day) cells from ``eval_start`` to ``end``: the
    denominator of the false-alert rate.
    """
    alerts = _prepared(alerts, pd.Timestamp(eval_start), pd.Timestamp(end))
    pairs = _pairs(alerts, truth, grace_days)
    detecting = pairs[pairs["detects"]]
    not_false = pairs.loc[pairs["detects"] | pairs["explains"], "alert"].unique()
    incidents = _per_incident(truth, detecting)
    n_alerts, n_true = len(alerts), len(not_false)
    detected = incidents[incidents["detected"]]
    precision = n_true / n_alerts if n_alerts else np.nan
    recall = _mean(incidents["detected"])
    big = incidents[(incidents["cls"] == "spike") & (incidents["magnitude"] >= BIG_SPIKE_FACTOR) & (incidents["base_leads_per_day"] >= BIG_SPIKE_MIN_LEADS)]
    creeps = incidents[incidents["cls"] == "creep"]
    spikes = incidents[incidents["cls"] == "spike"]
    with_excess = detected[detected["true_excess"] > 0]
    alerts = alerts.assign(false=~alerts["alert"].isin(not_false))
    return Scores(
        alerts=n_alerts,
        true_alerts=n_true,
        false_alerts=n_alerts - n_true,
        precision=precision,
        recall=recall,
        f1=_f1(precision, recall),
        false_per_1k_campaign_days=1000 * (n_alerts - n_true) / campaign_days if campaign_days else np.nan,
        recall_by_class={cls: _mean(incidents.loc[incidents["cls"] == cls, "detected"]) for cls in CLASSES},
        recall_by_spike_factor={f: _mean(spikes.loc[np.isclose(spikes["magnitude"], f), "detected"]) for f in SPIKE_FACTORS},
        recall_big_spikes=_mean(big["detected"]),
        median_delay_big_spikes=_median(big.loc[big["detected"], "delay_days"]),
        median_delay=_median(detected["delay_days"]),
        p90_delay=float(np.percentile(detected["delay_days"], 90)) if len(detected) else np.nan,
        creep_before_double=_mean(creeps["before_double"]),
        party_accuracy=_mean(detected["party_correct"]),
        median_excess_error=_median(with_excess["excess_error"]),
        incidents=incidents,
        visible_recall=_visible_recall(incidents, visible) if visible is not None else {},
        alerts_scored=alerts,
    )


def _visible_recall(incidents: pd.DataFrame, visible: pd.Series) -> dict[str, float]:
    """Recall among the incidents the oracle can see: overall, by class, and for big spikes."""
    seen = incidents[incidents["incident_id"].map(visible).fillna(False).astype(bool)]
    big = seen[(seen["cls"] == "spike") & (seen["magnitude"] >= BIG_SPIKE_FACTOR) & (seen["base_leads_per_day"] >= BIG_SPIKE_MIN_LEADS)]
    return {
        "recall": _mean(seen["detected"]),
        "recall_big_spikes": _mean(big["detected"]),
        **{f"recall_{cls}": _mean(seen.loc[seen["cls"] == cls, "detected"]) for cls in CLASSES},
    }


def _prepared(alerts: pd.DataFrame, eval_start: pd.Timestamp, end: pd.Timestamp) -> pd.DataFrame:
    out = alerts[ALERT_COLUMNS + [c for c in OPTIONAL_ALERT_COLUMNS if c in alerts]].copy()
    out["campaign_id"] = out["campaign_id"].fillna("").astype(str)
    out["account_id"] = out["account_id"].astype(str)
    out["onset"] = pd.to_datetime(out["onset"])
    out["detected_on"] = pd.to_datetime(out["detected_on"])
    out = out[(out["detected_on"] >= eval_start) & (out["detected_on"] <= end)]
    return out.sort_values(["detected_on", "campaign_id"], kind="stable").reset_index(drop=True).rename_axis("alert").reset_index()


def _pairs(alerts: pd.DataFrame, truth: pd.DataFrame, grace_days: int) -> pd.DataFrame:
    """Every (alert, incident) of one account whose detection day falls in the incident's span;
    ``detects`` and ``explains`` say what the alert does for the incident."""
    incidents = truth[["incident_id", "account_id", "campaign_id", "scope", "onset", "end"]].rename(
        columns={"campaign_id": "incident_campaign", "onset": "incident_onset"}
    )
    incidents["hit"] = affected_campaigns(truth)
    pairs = alerts.merge(incidents, on="account_id")
    in_span = (pairs["detected_on"] >= pairs["incident_onset"]) & (pairs["detected_on"] <= pairs["end"] + pd.Timedelta(days=grace_days))
    pairs = pairs[in_span].copy()
    account_wide = pairs["scope"] == "account"
    several = pairs["hit"].map(len) > 1
    on_hit = pd.Series([c in hit for c, hit in zip(pairs["campaign_id"], pairs["hit"])], index=pairs.index, dtype=bool)
    account_level = pairs["campaign_id"] == ""
    pairs["detects"] = account_wide | on_hit | (account_level & several)
    pairs["explains"] = ~pairs["detects"] & account_level
    return pairs


def affected_campaigns(truth: pd.DataFrame) -> pd.Series:
    """The campaigns each incident hits: the ``campaigns`` column where the truth has one, else its
    campaign (none listed for an account-wide incident: it hits every campaign)."""
    if "campaigns" in truth:
        listed = truth["campaigns"].map(lambda c: tuple(c) if isinstance(c, (tuple, list, np.ndarray)) else ())
        fallback = truth["campaign_id"].map(lambda c: (c,) if c else ())
        return listed.where(listed.map(len) > 0, fallback)
    return truth["campaign_id"].map(lambda c: (c,) if c else ())


def _per_incident(truth: pd.DataFrame, detecting: pd.DataFrame) -> pd.DataFrame:
    """The truth with, per incident: detected, first detection day, delay, the party the first
    detecting alert named, the excess-cost estimate and its relative error."""
    ordered = detecting.sort_values(["detected_on", "alert"], kind="stable").groupby("incident_id")
    first = ordered.agg(first_detected_on=("detected_on", "first"), detected_party=("managing_party", "first"))
    estimate = pd.Series({i: _excess_estimate(group) for i, group in detecting.groupby("incident_id")}, name="excess_estimate", dtype=float)
    out = truth.join(first, on="incident_id").join(estimate, on="incident_id")
    out["detected"] = out["incident_id"].isin(first.index)
    out["delay_days"] = (out["first_detected_on"] - out["onset"]).dt.days
    out["party_correct"] = out["detected_party"] == out["party"]
    # a creep that never doubles inside the panel is caught "before doubling" whenever it is caught
    out["before_double"] = out["detected"] & (out["doubles_on"].isna() | (out["first_detected_on"] < out["doubles_on"]))
    out["excess_error"] = (out["excess_estimate"] - out["true_excess"]).abs() / out["true_excess"].where(out["true_excess"] > 0)
    return out


def _excess_estimate(alerts: pd.DataFrame) -> float:
    """The detector's excess cost for one incident from its detecting alerts: the largest sum over
    alerts of one (family, campaign). For an account-wide incident, account-level alerts if there
    are any, else the family whose alerts across the account's campaigns sum the most."""
    if (alerts["scope"] == "account").all():
        account_level = alerts[alerts["campaign_id"] == ""]
        if len(account_level):
            return float(account_level.groupby("family")["excess_cost"].sum().max())
        return float(alerts.groupby("family")["excess_cost"].sum().max())
    return float(alerts.groupby(["family", "campaign_id"])["excess_cost"].sum().max())


def _f1(precision: float, recall: float) -> float:
    if np.isnan(precision) or np.isnan(recall) or precision + recall == 0:
        return np.nan if np.isnan(precision) or np.isnan(recall) else 0.0
    return 2 * precision * recall / (precision + recall)


def _mean(values: pd.Series) -> float:
    return float(values.astype(float).mean()) if len(values) else np.nan


def _median(values: pd.Series) -> float:
    return float(values.median()) if len(values) else np.nan


ORACLE_P_VALUE = 1e-4
ORACLE_HISTORY_DAYS = 56


def oracle_found(truth: pd.DataFrame, metrics: pd.DataFrame) -> tuple[pd.Series, pd.Series]:
    """Which incidents an oracle sees (by ``incident_id``), and which creeps it sees before they double.

    The oracle knows each incident's true span and normal rates, and counts an incident as found
    when its data over that span are implausible at the normal rates (p < ``ORACLE_P_VALUE``):
    leads given spend, or clicks given spend with leads given clicks (Fisher's combination). The
    normal leads come from the truth (spend − excess is what the leads cost at the normal price),
    the normal clicks from the spike's mechanism and size. The counts are negative binomial: on
    top of counting noise, rates move from day to day, by as much as they did on the same
    campaigns' incident-free days of the ``ORACLE_HISTORY_DAYS`` before onset (a moment estimate
    of the excess variance, ``_day_to_day``); days average that out over a span, so a long span
    shows less than its count suggests only through the counts themselves. A spend runaway is found
    when its spend is implausible against the same history's day-to-day spread of log spend. A
    creep counts as found before doubling when its leads up to the day before ``doubles_on``
    already are.
    """
    from scipy.stats import chi2, norm

    found, early = {}, {}
    hit = affected_campaigns(truth)
    quiet = _incident_free(truth, metrics)
    z_needed = float(norm.isf(ORACLE_P_VALUE))
    for t, campaigns in zip(truth.itertuples(index=False), hit):
        mine = metrics["account_id"] == t.account_id
        if campaigns:
            mine &= metrics["campaign_id"].isin(campaigns)
        span = metrics[mine & metrics["date"].between(t.onset, t.end)].sort_values("date")
        history = metrics[mine & quiet & metrics["date"].between(t.onset - pd.Timedelta(days=ORACLE_HISTORY_DAYS), t.onset - pd.Timedelta(days=1))]
        spend, leads, clicks = (float(span[c].sum()) for c in ("spend", "leads", "clicks"))
        if t.cls == "spend_runaway":
            found[t.incident_id] = _spend_implausible(span, history, z_needed)
            continue
        normal_cost = spend - t.true_excess
        days = (t.end - t.onset).days + 1
        normal_leads = spend * leads / normal_cost if leads > 0 and normal_cost > 0 else t.base_leads_per_day * days
        lead_var = _day_to_day(history, "leads")
        p = _lower_tail(leads, normal_leads, lead_var, span["spend"])
        cost_per_click = {"cpc": t.magnitude, "both": t.magnitude**0.5}.get(t.mechanism, 1.0) if t.cls == "spike" else 1.0
        if cost_per_click > 1 and clicks > 0:
            normal_clicks = clicks * cost_per_click
            p_clicks = _lower_tail(clicks, normal_clicks, _day_to_day(history, "clicks"), span["spend"])
            p_conversion = _lower_tail(leads, clicks * normal_leads / normal_clicks, lead_var, span["clicks"])
            statistic = -2 * (np.log(max(p_clicks, 1e-300)) + np.log(max(p_conversion, 1e-300)))
            p = min(p, chi2.sf(statistic, 4))
        found[t.incident_id] = p < ORACLE_P_VALUE
        if t.cls == "creep":
            before = span[span["date"] < t.doubles_on] if pd.notna(t.doubles_on) else span
            growth = (1 + t.magnitude) ** np.arange(len(before))
            due = before["leads"].to_numpy() * growth
            early[t.incident_id] = _lower_tail(before["leads"].sum(), due.sum(), lead_var, pd.Series(due)) < ORACLE_P_VALUE
    return pd.Series(found, dtype=bool), pd.Series(early, dtype=bool)


def _incident_free(truth: pd.DataFrame, metrics: pd.DataFrame) -> pd.Series:
    """Rows of ``metrics`` outside every incident's span on the campaigns it hits."""
    inside = pd.Series(False, index=metrics.index)
    for t, campaigns in zip(truth.itertuples(index=False), affected_campaigns(truth)):
        rows = (metrics["account_id"] == t.account_id) & metrics["date"].between(t.onset, t.end)
        if campaigns:
            rows &= metrics["campaign_id"].isin(campaigns)
        inside |= rows
    return ~inside


def _day_to_day(history: pd.DataFrame, count: str) -> float:
    """The excess variance ``v`` of a count given spend on normal days (variance ``e + v·e²`` for a
    day expecting ``e``), each campaign at its own cost per count: the moment estimate
    ``Σ((x − e)² − e) / Σe²``, 0 when the history shows none (or is empty)."""
    if history.empty:
        return 0.0
    by = history.groupby("campaign_id")
    cost = by["spend"].transform("sum") / by[count].transform("sum")
    expected = (history["spend"] / cost).where(np.isfinite(cost), np.nan)
    ok = expected.notna()
    x, e = history.loc[ok, count], expected[ok]
    denominator = float((e**2).sum())
    return max(float(((x - e) ** 2 - e).sum()) / denominator, 0.0) if denominator > 0 else 0.0


def _lower_tail(observed: float, mean: float, variance: float, weights: pd.Series) -> float:
    """P(so few) for a span's total count with ``mean``: its days' expectations in proportion to
    ``weights``, each varying by ``variance`` (``_day_to_day``), independently from day to day."""
    w = weights.to_numpy(dtype=float)
    share = w / w.sum() if w.sum() > 0 else np.full(len(w), 1.0 / max(len(w), 1))
    phi = variance * float((share**2).sum())  # Var = mean + variance · Σ e_d² = mean + phi · mean²
    return float(lower_tail(np.array([observed]), np.array([mean]), np.array([max(phi, 1e-12)]))[0])


def _spend_implausible(span: pd.DataFrame, history: pd.DataFrame, z_needed: float) -> bool:
    """The span's daily spend (its campaigns together) far above the history's: the mean log spend
    of its days more than ``z_needed`` standard errors above the history's (found when there is
    too little history to tell)."""
    before = history.groupby("date")["spend"].sum()
    before = before[before > 0]
    if len(before) < 7:
        return True
    during = span.groupby("date")["spend"].sum()
    during = np.log(during[during > 0].to_numpy())
    if not len(during):
        return False
    logs = np.log(before.to_numpy())
    spread = float(logs.std(ddof=1))
    if spread == 0:
        return bool(during.mean() > logs.mean())
    return bool((during.mean() - logs.mean()) / (spread / np.sqrt(len(during))) > z_needed)


def oracle_row(truth: pd.DataFrame, metrics: pd.DataFrame) -> dict[str, float]:
    """The recall of an oracle (``oracle_found``): what the data can show at all, a ceiling for any detector."""
    found, early = oracle_found(truth, metrics)
    hit = truth["incident_id"].map(found).astype(bool)
    big = (truth["cls"] == "spike") & (truth["magnitude"] >= BIG_SPIKE_FACTOR) & (truth["base_leads_per_day"] >= BIG_SPIKE_MIN_LEADS)
    spikes = truth["cls"] == "spike"
    row = {
        "recall": _mean(hit),
        "recall_big_spikes": _mean(hit[big]),
        "creep_before_double": _mean(truth.loc[truth["cls"] == "creep", "incident_id"].map(early).astype(float)),
        **{f"recall_{cls}": _mean(hit[truth["cls"] == cls]) for cls in CLASSES},
        **{f"recall_spike_{f:g}x": _mean(hit[spikes & (truth["magnitude"] == f)]) for f in sorted(truth.loc[spikes, "magnitude"].unique())},
    }
    return row
