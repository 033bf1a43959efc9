"""The analyst API: what the service stored and decided, as pandas DataFrames.

```python
from anomaly.analysis import Project

project = Project.open()                     # $ANOMALY_CONFIG, ./config.yaml, else the project's own
project.metrics(account="4821937710")        # campaign-days: spend, leads, cpl, cpc, ctr, cvr, managing party
project.daily(account="4821937710")          # ... with the baseline each day was judged against, and its scores
project.incidents(status="open")             # as the service recorded them
project.ownership(); project.changes()       # who managed what since when; who changed what
tuned = project.tune_rules({"cpl-spike-1d": {"warning": 3.0}})
before, after = project.backtest(), project.backtest(rules=tuned)
compare_backtests(before, after)             # alerts per week and incidents caught, side by side
```

Everything here reads; nothing writes to the store. Detection runs on the stored metrics exactly as
the service runs it (the same rules, baselines and ownership), so a baseline shown here is the one
the service compared that day with. Dates are ``datetime64`` columns; money is in each account's
currency; a cost per lead with no leads is NaN.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from pydantic import ValidationError

from anomaly.alerts.render import BASELINE_BAND
from anomaly.config import Config, RuleBase, RulesFile, _problems_from_validation, default_config_path, load_config, load_rules
from anomaly.errors import AnomalyError, ConfigError, InputError, Problem
from anomaly.ownership import domain_map, ownership_periods, party_matrix, party_of_change, with_inferred
from anomaly.platforms import payload_platform
from anomaly.store import Store

DateLike = str | dt.date | pd.Timestamp | None

HANDOVER_COLUMNS = [
    "id", "account_id", "account_name", "campaign_id", "campaign_name", "platform", "currency", "start", "from_party", "from_name",
    "to_party", "to_name", "detected_on", "announced", "reference",
]
INCIDENT_COLUMNS = [
    "id", "status", "severity", "family", "rule", "metric", "platform", "account_id", "account_name", "campaign_id", "campaign_name",
    "currency", "onset", "detected_on", "critical_on", "last_active", "resolved_on", "managing_party", "party_name",
    "party_since", "spend", "leads", "cpl", "baseline_cpl", "observed", "baseline", "excess_cost", "excess_by_party",
    "changes", "announced", "acknowledged_at", "acknowledged_by",
]


class NoData(AnomalyError):
    """The store holds nothing to analyse yet."""


def _as_list(value: str | Iterable[str] | None) -> list[str] | None:
    if value is None:
        return None
    return [value] if isinstance(value, str) else [str(v) for v in value]


def _ts(value: DateLike) -> pd.Timestamp | None:
    return None if value is None else pd.Timestamp(value).normalize()


class Project:
    """One configuration and its store, read the way the service reads them.

    Open with ``Project.open(path)``; every method returns a fresh DataFrame. Detection results
    are cached per (as-of day, accounts), so asking for baselines and scores of the same slice runs
    detection once.
    """

    def __init__(self, config: Config, rules: list[RuleBase], store: Store, *, config_path: Path | None = None):
        self.config = config
        self.rules = rules
        self.store = store
        self.config_path = config_path
        self._declared = ownership_periods(config)
        self._detections: dict[tuple, Any] = {}

    @classmethod
    def open(cls, config_path: str | Path | None = None) -> "Project":
        """Load ``config_path`` (default: ``$ANOMALY_CONFIG``, else ``./config.yaml``, else the
        project's embedded default), its rules and its store."""
        path = Path(config_path) if config_path is not None else default_config_path()
        config, rules = load_config(path)
        store = Store(config.store.url.get_secret_value())
        store.migrate()
        return cls(config, rules, store, config_path=path.resolve())

    def __repr__(self) -> str:
        return f"Project({str(self.config_path or '?')!r}, store={self.store.describe()!r})"

    # -- who is who -----------------------------------------------------------------------------

    def party_name(self, party: str | None) -> str:
        """A party key's display name ("Beacon Reach" for ``beacon``)."""
        return self.config.party_name(party)

    def parties(self) -> pd.DataFrame:
        """The configured parties: ``party`` (key), ``name``, ``domains``."""
        return pd.DataFrame(
            [{"party": key, "name": p.name, "domains": list(p.domains)} for key, p in self.config.parties.items()],
            columns=["party", "name", "domains"],
        )

    def ownership(self, *, account: str | Iterable[str] | None = None) -> pd.DataFrame:
        """Who manages what, over time: one row per period, ``start`` inclusive and ``end`` the day
        the next party took over (NaT while it lasts). ``campaign_id`` "" covers the whole account.
        ``source`` says whether config declared it or change history inferred it (declared
        ownership wins for an account it names). Whatever no period covers is managed by
        ``ownership.default_party``."""
        declared = self._declared.assign(source="config")
        inferred = self._periods().iloc[len(self._declared):].assign(source="inferred")  # what the declared periods leave to it
        frame = pd.concat([declared, inferred], ignore_index=True)
        if account is not None:
            frame = frame[frame["account_id"].isin(_as_list(account))]
        frame = frame.assign(party_name=frame["party"].map(self.party_name))
        return frame[["account_id", "campaign_id", "party", "party_name", "start", "end", "source"]].sort_values(
            ["account_id", "campaign_id", "start"], kind="stable"
        ).reset_index(drop=True)

    def platforms(self) -> dict[str, str]:
        """The ad platform of each account the store holds (``google_ads``, ``microsoft_ads``,
        ``meta_ads``; "" where the data does not say), from the source that stored it."""
        from anomaly.pipeline import platforms_of

        return platforms_of(self.config, self.store)

    def _periods(self) -> pd.DataFrame:
        return with_inferred(self._declared, self.store.load_inferred_ownership())

    def managing_party(self, account_id: str, campaign_id: str, dates: Iterable) -> np.ndarray:
        """The party key managing one campaign (``""``: the account as a whole) on each of ``dates``."""
        index = pd.DatetimeIndex(pd.to_datetime(list(dates)))
        party, _ = party_matrix(self._periods(), np.array([account_id]), np.array([campaign_id]), index, self.config.ownership.default_party)
        return party[:, 0]

    # -- data -----------------------------------------------------------------------------------

    def metrics(
        self,
        *,
        account: str | Iterable[str] | None = None,
        campaign: str | Iterable[str] | None = None,
        start: DateLike = None,
        end: DateLike = None,
    ) -> pd.DataFrame:
        """Stored daily metrics, one row per campaign-day (hourly rows summed), with the derived
        ``cpl`` (spend per lead), ``cpc``, ``ctr`` and ``cvr`` (leads per click), NaN where the
        denominator is zero, and the ``managing_party`` (key) and ``party_name`` of each day."""
        frame = self.store.load_metrics(_date(start), _date(end))
        if account is not None:
            frame = frame[frame["account_id"].isin(_as_list(account))]
        if campaign is not None:
            frame = frame[frame["campaign_id"].isin(_as_list(campaign))]
        frame = frame.drop(columns="hour").reset_index(drop=True)
        with np.errstate(divide="ignore", invalid="ignore"):
            frame["cpl"] = _ratio(frame["spend"], frame["leads"])
            frame["cpc"] = _ratio(frame["spend"], frame["clicks"])
            frame["ctr"] = _ratio(frame["clicks"], frame["impressions"])
            frame["cvr"] = _ratio(frame["leads"], frame["clicks"])
        frame["managing_party"] = self._party_column(frame)
        frame["party_name"] = frame["managing_party"].map(self.party_name)
        return frame

    def _party_column(self, frame: pd.DataFrame) -> np.ndarray:
        if frame.empty:
            return np.array([], dtype=object)
        keys = frame[["account_id", "campaign_id"]].drop_duplicates().reset_index(drop=True)
        dates = pd.date_range(frame["date"].min(), frame["date"].max(), freq="D")
        party, _ = party_matrix(self._periods(), keys["account_id"].to_numpy(), keys["campaign_id"].to_numpy(), dates, self.config.ownership.default_party)
        column = pd.MultiIndex.from_frame(keys).get_indexer(pd.MultiIndex.from_frame(frame[["account_id", "campaign_id"]]))
        return party[dates.get_indexer(frame["date"]), column]

    def changes(self, *, account: str | Iterable[str] | None = None, start: DateLike = None, end: DateLike = None) -> pd.DataFrame:
        """The change history (``end`` inclusive), each change with the ``party`` behind it (by the
        user's email domain, or a Meta actor's id or name; ``automated`` for rules, scripts,
        recommendations and Meta's own events; ``unattributed`` for an unknown author) and that
        party's ``party_name``."""
        first = _ts(start).to_pydatetime() if start is not None else None
        stop = (_ts(end) + pd.Timedelta(days=1)).to_pydatetime() if end is not None else None
        frame = self.store.load_changes(first, stop)
        if account is not None:
            frame = frame[frame["account_id"].isin(_as_list(account))]
        domains = domain_map(self.config)
        parties = [party_of_change(e, c, domains) for e, c in zip(frame["user_email"], frame["client_type"])]
        return frame.assign(party=parties, party_name=[self.party_name(p) for p in parties]).reset_index(drop=True)

    # -- detection ------------------------------------------------------------------------------

    def detection(self, *, account: str | Iterable[str] | None = None, as_of: DateLike = None, rules: list[RuleBase] | None = None):
        """The detector's full result (``anomaly.detect.Detection``) on the stored metrics up to
        ``as_of`` (default: the last day with data), for some accounts or all. Cached."""
        from anomaly.detect import detect

        accounts = tuple(sorted(_as_list(account))) if account is not None else None
        key = (accounts, _ts(as_of), id(rules) if rules is not None else None)
        if key not in self._detections:
            metrics = self.store.load_metrics(end=_date(as_of))
            if accounts is not None:
                metrics = metrics[metrics["account_id"].isin(accounts)]
            if metrics.empty:
                raise NoData(f"the store at {self.store.describe()} holds no metrics{_for(accounts)}; run `anomaly run` (or `anomaly demo`) first")
            last = metrics["date"].max() + pd.Timedelta(days=1)
            self._detections[key] = detect(
                metrics, self._periods(), rules if rules is not None else self.rules, self.config.detection,
                _ts(as_of), default_party=self.config.ownership.default_party, changes=self.store.load_changes(end=last.to_pydatetime()),
                completeness=self.store.lead_completeness(self.config.detection.reporting_lag_days, as_of=(metrics["date"].max()).date()),
            )
        return self._detections[key]

    def daily(self, *, account: str | Iterable[str] | None = None, campaign: str | Iterable[str] | None = None, as_of: DateLike = None) -> pd.DataFrame:
        """One row per campaign-day the detector saw, account totals included (``campaign_id``
        "", "all campaigns"), with the day's metrics, the baseline it was judged against, its
        scores and the managing party:

        - ``baseline_cpl``, ``band_low``/``band_high`` (±30%, the band the alert chart draws),
          ``baseline_cpc``; ``expected_leads`` (what the day's spend buys at ``baseline_cpl``);
          ``expected_spend`` (the campaign's usual spend for that weekday);
        - ``baseline_ready`` (enough history to judge), ``left_out`` (the day was too bad to
          join the baseline), ``held`` (the baseline is held after a change of managing party);
        - ``forest_score`` (0–1, higher is more unusual; NaN with the forest off or no model yet),
          ``severity`` ("warning"/"critical" of the worst rule that fired, else "") and ``rules``
          (the names of the rules that fired);
        - ``managing_party``, ``party_name``.
        """
        det = self.detection(account=account, as_of=as_of)
        panel, base = det.panel, det.baseline
        days, cols = np.nonzero(panel.observed)
        info = panel.campaigns
        with np.errstate(divide="ignore", invalid="ignore"):
            spend, leads, clicks = panel.spend[days, cols], panel.leads[days, cols], panel.clicks[days, cols]
            cpl = base.cpl[days, cols]
            frame = pd.DataFrame(
                {
                    "date": panel.dates[days],
                    "account_id": info["account_id"].to_numpy()[cols],
                    "account_name": info["account_name"].to_numpy()[cols],
                    "campaign_id": info["campaign_id"].to_numpy()[cols],
                    "campaign_name": info["campaign_name"].to_numpy()[cols],
                    "currency": info["currency"].to_numpy()[cols],
                    "spend": spend,
                    "impressions": panel.impressions[days, cols],
                    "clicks": clicks,
                    "leads": leads,
                    "cpl": np.where(leads > 0, spend / leads, np.nan),
                    "baseline_cpl": cpl,
                    "band_low": cpl * (1 - BASELINE_BAND),
                    "band_high": cpl * (1 + BASELINE_BAND),
                    "baseline_cpc": base.cpc[days, cols],
                    "expected_leads": spend / cpl,
                    "expected_spend": base.spend[days, cols] * base.spend_factor[days, cols],
                    "baseline_ready": base.ready[days, cols],
                    "left_out": base.hot[days, cols],
                    "held": base.held[days, cols],
                    "forest_score": det.score[days, cols],
                    "managing_party": det.party[days, cols],
                }
            )
        frame["party_name"] = frame["managing_party"].map(self.party_name)
        fired = det.findings.assign(_rank=det.findings["severity"].map({"warning": 1, "critical": 2}))
        if not fired.empty:
            worst = fired.groupby(["date", "account_id", "campaign_id"]).agg(
                _rank=("_rank", "max"), rules=("rule", lambda names: ", ".join(sorted(set(names))))
            ).reset_index()
            frame = frame.merge(worst, on=["date", "account_id", "campaign_id"], how="left")
        else:
            frame = frame.assign(_rank=np.nan, rules=np.nan)
        frame["severity"] = frame.pop("_rank").map({1: "warning", 2: "critical"}).fillna("")
        frame["rules"] = frame.pop("rules").fillna("")
        frame[["impressions", "clicks"]] = frame[["impressions", "clicks"]].astype("int64")
        if campaign is not None:
            frame = frame[frame["campaign_id"].isin(_as_list(campaign))]
        return frame.sort_values(["account_id", "campaign_id", "date"], kind="stable").reset_index(drop=True)

    def baselines(self, **where) -> pd.DataFrame:
        """``daily()``'s baseline columns: what each campaign-day was compared with."""
        columns = ["date", "account_id", "campaign_id", "baseline_cpl", "band_low", "band_high", "baseline_cpc",
                   "expected_leads", "expected_spend", "baseline_ready", "left_out", "held"]
        return self.daily(**where)[columns]

    def scores(self, **where) -> pd.DataFrame:
        """``daily()``'s verdict columns: the isolation-forest score and the rules that fired."""
        return self.daily(**where)[["date", "account_id", "campaign_id", "forest_score", "severity", "rules"]]

    def findings(self, *, account: str | Iterable[str] | None = None, as_of: DateLike = None) -> pd.DataFrame:
        """Every rule firing: ``date``, ``account_id``, ``campaign_id``, ``family``, ``rule``,
        ``severity``, ``metric``, ``observed`` and the ``baseline`` it was compared with."""
        return self.detection(account=account, as_of=as_of).findings.drop(columns="score")

    # -- incidents ------------------------------------------------------------------------------

    def handovers(self) -> pd.DataFrame:
        """Every recorded change of managing party, oldest first: ``id``, ``account_id``,
        ``account_name``, ``campaign_id`` ("" for the whole account), ``campaign_name``, ``platform``, ``currency``,
        ``start`` (the new party's first day), ``from_party``, ``to_party`` (keys) and their names,
        ``detected_on`` (the data day that first showed it), ``announced`` (False: found in history),
        and ``reference``: the figures of the days before it, frozen when it was recorded (per
        campaign and in total: cost per lead, per click, conversion rate, spend and leads a day)."""
        rows = []
        for row in self.store.load_handovers():
            p = row["details"].get("payload", row["details"])
            rows.append(
                {
                    "id": row["id"],
                    "account_id": row["account_id"],
                    "account_name": p.get("account_name", row["account_id"]),
                    "campaign_id": row["campaign_id"],
                    "campaign_name": p.get("campaign_name") or "",
                    "platform": payload_platform({**p, "account_id": row["account_id"]}),
                    "currency": p.get("currency", "USD"),
                    "start": pd.Timestamp(row["start"]),
                    "from_party": row["from_party"],
                    "from_name": self.party_name(row["from_party"]),
                    "to_party": row["to_party"],
                    "to_name": self.party_name(row["to_party"]),
                    "detected_on": pd.Timestamp(row["detected_on"]),
                    "announced": bool(row["notified"]),
                    "reference": p.get("reference"),
                }
            )
        return pd.DataFrame(rows, columns=HANDOVER_COLUMNS)

    def incidents(
        self,
        *,
        status: str | None = None,
        party: str | Iterable[str] | None = None,
        account: str | Iterable[str] | None = None,
        start: DateLike = None,
        end: DateLike = None,
    ) -> pd.DataFrame:
        """The incidents the service recorded, one row each, oldest detection first.

        Filters: ``status`` (open, resolved), ``party`` (the managing party at onset, by key),
        ``account`` (id), and ``start``/``end``: incidents active at some time in that span (onset
        on or before ``end``, and still open or resolved on or after ``start``). ``announced`` is
        False for an incident found in history on a first run, recorded but never alerted.
        """
        rows = self.store.load_incidents(status=status)
        frame = pd.DataFrame([self._incident_record(row) for row in rows], columns=INCIDENT_COLUMNS)
        for column in ("onset", "detected_on", "critical_on", "last_active", "resolved_on", "party_since", "acknowledged_at"):
            frame[column] = pd.to_datetime(frame[column])
        if party is not None:
            frame = frame[frame["managing_party"].isin(_as_list(party))]
        if account is not None:
            frame = frame[frame["account_id"].isin(_as_list(account))]
        if end is not None:
            frame = frame[frame["onset"] <= _ts(end)]
        if start is not None:
            frame = frame[frame["resolved_on"].isna() | (frame["resolved_on"] >= _ts(start))]
        return frame.reset_index(drop=True)

    def _incident_record(self, row: Mapping[str, Any]) -> dict[str, Any]:
        p = row["details"]["payload"]
        return {
            "id": row["id"],
            "status": row["status"],
            "severity": row["severity"],
            "family": row["family"],
            "rule": row["rule"],
            "metric": row["metric"],
            "platform": payload_platform({**p, "account_id": row["account_id"]}),
            "account_id": row["account_id"],
            "account_name": p["account_name"],
            "campaign_id": row["campaign_id"],
            "campaign_name": p["campaign_name"],
            "currency": p["currency"],
            "onset": row["onset"],
            "detected_on": row["detected_on"],
            "critical_on": p.get("critical_on"),
            "last_active": row["last_active"],
            "resolved_on": row["resolved_on"],
            "managing_party": row["managing_party"],
            "party_name": self.party_name(row["managing_party"]),
            "party_since": row["party_since"],
            "spend": p["spend"],
            "leads": p["leads"],
            "cpl": p.get("cpl"),
            "baseline_cpl": p.get("baseline_cpl"),
            "observed": row["observed"],
            "baseline": row["baseline"],
            "excess_cost": row["excess_cost"],
            "excess_by_party": dict(p.get("excess_by_party", {})),
            "changes": len(p.get("changes", [])),
            "announced": bool(row["notified"]),
            "acknowledged_at": row["acknowledged_at"],
            "acknowledged_by": row["acknowledged_by"],
        }

    def incident(self, incident_id: int) -> dict[str, Any]:
        """One incident as stored: its columns and ``details`` (the alert's payload, where its
        notifications went). Raises ``InputError`` for an unknown id."""
        row = self.store.load_incident(int(incident_id))
        if row is None:
            raise InputError([Problem("incident", str(incident_id), "no such incident; `anomaly incidents` lists them")])
        return row

    def notifications(self, incident_id: int | None = None) -> pd.DataFrame:
        """The alert outbox (of one incident, when given): ``event`` (opened, updated, resolved,
        reminder), ``sink``, ``status`` (pending, sent, silenced, obsolete), ``created_at``,
        ``sent_at`` (UTC), ``attempts``, ``last_error``, and where Slack put it (``channel``, ``ts``)."""
        frame = pd.DataFrame(self.store.notifications(incident_id))
        columns = ["id", "incident_id", "event", "sink", "status", "created_at", "sent_at", "attempts", "last_error", "channel", "ts", "group_key"]
        return frame.reindex(columns=columns)

    def excess_by_day(self, incident_id: int) -> pd.DataFrame:
        """The incident's excess cost day by day, from onset to its last day: ``spend``,
        ``leads``, ``cpl``, ``baseline_cpl`` (the cost per lead before onset, the reference),
        ``excess`` (``spend − leads × baseline_cpl``; negative on a day that did better), and the
        ``managing_party`` of that day. Its parties' totals, each floored at zero, are the
        incident's excess cost by party."""
        row = self.incident(incident_id)
        payload = row["details"]["payload"]
        onset = payload["onset"]
        days = [d for d in payload.get("series", []) if d[0] >= onset]
        reference = payload.get("baseline_cpl") or 0.0
        frame = pd.DataFrame(days, columns=["date", "spend", "leads", "_baseline_before"]).drop(columns="_baseline_before")
        frame["date"] = pd.to_datetime(frame["date"])
        frame["cpl"] = _ratio(frame["spend"], frame["leads"])
        frame["baseline_cpl"] = reference
        frame["excess"] = frame["spend"] - frame["leads"] * reference
        frame["managing_party"] = self.managing_party(row["account_id"], row["campaign_id"], frame["date"]) if len(frame) else []
        frame["party_name"] = frame["managing_party"].map(self.party_name)
        return frame

    # -- rules and backtests --------------------------------------------------------------------

    def load_rules(self, folder: str | Path) -> list[RuleBase]:
        """The rules of another folder (checked like ``anomaly check`` does)."""
        return load_rules(Path(folder), self.config.parties)

    def tune_rules(self, changes: Mapping[str, Mapping[str, Any]], rules: list[RuleBase] | None = None) -> list[RuleBase]:
        """The rules (default: the configured ones) with some settings changed, each rule
        checked again as ``anomaly check`` would: ``{"cpl-spike-1d": {"warning": 3.0}}``. A nested
        setting merges (``{"after_ownership_change": {"warning": 2.0}}`` keeps its other keys);
        ``{"enabled": False}`` switches a rule off. Raises ``ConfigError`` naming the rule and setting."""
        rules = list(self.rules if rules is None else rules)
        known = {r.name for r in rules}
        problems = [
            Problem("tune_rules", name, f"no rule is named {name!r} (defined: {', '.join(sorted(known))})") for name in changes if name not in known
        ]
        tuned = []
        for rule in rules:
            if rule.name not in changes:
                tuned.append(rule)
                continue
            data = _merge(rule.model_dump(exclude_none=True), dict(changes[rule.name]))
            try:
                tuned.append(RulesFile.model_validate({"rules": [data]}).rules[0])
            except ValidationError as exc:
                problems.extend(
                    Problem("tune_rules", f"{rule.name}{p.where.removeprefix('rules[0]')}", p.message)
                    for p in _problems_from_validation(exc, "tune_rules", RulesFile)
                )
        if problems:
            raise ConfigError(problems)
        return tuned

    def backtest(self, start: DateLike = None, end: DateLike = None, *, rules: list[RuleBase] | None = None) -> pd.DataFrame:
        """``anomaly backtest`` as a DataFrame: the alerts that would have been sent from
        ``start`` to ``end`` (default: all stored history), one per incident on its detection day,
        with the backtest JSON contract's fields (``onset``, ``detected_on``, ``resolved_on`` as
        dates; ``excess_cost`` over the incident's life up to ``end``; ``campaign_id`` "" for an
        account-level alert, as everywhere in this API)."""
        from anomaly.pipeline import backtest

        metrics = self.store.load_metrics(end=_date(end))
        if metrics.empty:
            raise NoData(f"the store at {self.store.describe()} holds no metrics; run `anomaly run` (or `anomaly demo`) first")
        first, last = metrics["date"].min().date(), metrics["date"].max().date()
        start_day, end_day = _date(start) or first, _date(end) or last
        found = backtest(
            self.config, rules if rules is not None else self.rules, self._periods(), metrics, self.store.load_changes(), start_day, end_day,
            platforms=self.platforms(),
        )
        frame = pd.DataFrame([i.backtest_record() for i in found], columns=BACKTEST_COLUMNS)
        frame["campaign_id"] = frame["campaign_id"].fillna("")  # as everywhere in this API (the JSON contract says null)
        for column in ("onset", "detected_on", "resolved_on", "party_since"):
            frame[column] = pd.to_datetime(frame[column])
        frame.attrs.update(start=pd.Timestamp(start_day), end=pd.Timestamp(end_day))
        return frame


BACKTEST_COLUMNS = [
    "account_id", "campaign_id", "rule", "severity", "onset", "detected_on", "metric", "observed", "baseline", "managing_party",
    "excess_cost", "party_since", "family", "account_name", "campaign_name", "currency", "max_severity", "resolved_on", "excess_by_party",
    "mechanism", "excess_by_mechanism", "platform",
]

def _merge(base: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in changes.items():
        out[key] = _merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def _ratio(numerator: pd.Series, denominator: pd.Series) -> pd.Series:
    return (numerator / denominator.where(denominator > 0)).astype(float)


def _date(value: DateLike) -> dt.date | None:
    return None if value is None else pd.Timestamp(value).date()


def _for(accounts: tuple[str, ...] | None) -> str:
    return f" for account {', '.join(accounts)}" if accounts else ""


# ---------------------------------------------------------------------------------------------
# Comparing two backtests


@dataclass(frozen=True)
class BacktestComparison:
    """Two backtests of the same history side by side.

    ``summary``: one row each for ``before`` and ``after``: alerts, alerts per week, incidents
    caught, median days from onset to detection, and the excess cost of what was caught.
    ``incidents``: every incident either caught, matched across the two (same family, account
    and campaign, overlapping in time), with each side's detection day, opening rule, severity and
    excess cost. ``weekly``: alerts per week, one column per side. ``by_rule``: the alerts each rule
    opened on each side (``before``, ``after``) and per week, with whether the rule is the ``same``
    on both sides, ``changed``, ``new`` or ``removed`` when the rule lists were given. ``weeks``:
    the length of the replay in weeks.
    """

    summary: pd.DataFrame
    incidents: pd.DataFrame
    weekly: pd.DataFrame
    by_rule: pd.DataFrame = field(default_factory=pd.DataFrame)
    weeks: float = 1.0

    @property
    def lost(self) -> pd.DataFrame:
        """Incidents ``before`` caught and ``after`` does not."""
        return self.incidents[self.incidents["caught_before"] & ~self.incidents["caught_after"]]

    @property
    def gained(self) -> pd.DataFrame:
        """Incidents only ``after`` catches (new alerts: real problems, or noise)."""
        return self.incidents[~self.incidents["caught_before"] & self.incidents["caught_after"]]


def compare_backtests(
    before: pd.DataFrame, after: pd.DataFrame, *, rules_before: list[RuleBase] | None = None, rules_after: list[RuleBase] | None = None
) -> BacktestComparison:
    """Compare two ``Project.backtest`` results over the same span (see ``BacktestComparison``);
    given the two rule lists, ``by_rule`` lists every rule of either and says which changed."""
    start = min(before.attrs.get("start", pd.NaT), after.attrs.get("start", pd.NaT))
    end = max(before.attrs.get("end", pd.NaT), after.attrs.get("end", pd.NaT))
    if pd.isna(start) or pd.isna(end):
        found = pd.concat([before["detected_on"], after["detected_on"]])
        start, end = found.min(), found.max()
    weeks = max(((end - start).days + 1) / 7, 1 / 7) if not pd.isna(start) else 1.0
    incidents = _match(before, after, end)

    def side(frame: pd.DataFrame, caught: pd.Series) -> dict[str, Any]:
        delay = (frame["detected_on"] - frame["onset"]).dt.days
        return {
            "alerts": len(frame),
            "alerts_per_week": round(len(frame) / weeks, 2),
            "incidents_caught": int(caught.sum()),
            "median_days_to_detect": float(delay.median()) if len(frame) else np.nan,
            "excess_caught": float(frame["excess_cost"].sum()),
        }

    summary = pd.DataFrame(
        [side(before, incidents["caught_before"]), side(after, incidents["caught_after"])], index=pd.Index(["before", "after"], name="rules")
    )
    week_index = pd.date_range(pd.Timestamp(start) - pd.Timedelta(days=pd.Timestamp(start).weekday()), end, freq="W-MON") if not pd.isna(start) else []
    weekly = pd.DataFrame(
        {name: frame.groupby(frame["detected_on"].dt.to_period("W-SUN").dt.start_time).size().reindex(week_index, fill_value=0) for name, frame in (("before", before), ("after", after))},
        index=pd.DatetimeIndex(week_index, name="week"),
    )
    return BacktestComparison(summary, incidents, weekly, _by_rule(before, after, weeks, rules_before, rules_after), weeks)


def _by_rule(
    before: pd.DataFrame, after: pd.DataFrame, weeks: float, rules_before: list[RuleBase] | None, rules_after: list[RuleBase] | None
) -> pd.DataFrame:
    """Alerts by the rule that opened them, on each side; with the rule lists, every rule of either."""
    defined_before = {r.name: r for r in rules_before or []}
    defined_after = {r.name: r for r in rules_after or []}
    names = list(dict.fromkeys([*defined_before, *defined_after, *before["rule"], *after["rule"]]))
    frame = pd.DataFrame(
        {
            "before": before["rule"].value_counts().reindex(names, fill_value=0).astype(int),
            "after": after["rule"].value_counts().reindex(names, fill_value=0).astype(int),
        },
        index=pd.Index(names, name="rule"),
    )
    frame["before_per_week"] = (frame["before"] / weeks).round(2)
    frame["after_per_week"] = (frame["after"] / weeks).round(2)
    if rules_before is not None and rules_after is not None:
        frame["status"] = [
            "new" if name not in defined_before else "removed" if name not in defined_after
            else "same" if defined_before[name] == defined_after[name] else "changed"
            for name in names
        ]
    return frame


def _match(before: pd.DataFrame, after: pd.DataFrame, end: pd.Timestamp) -> pd.DataFrame:
    """One row per incident of either side; two incidents of one campaign and family that overlap
    in time are the same incident."""
    key = ["family", "account_id", "campaign_id"]
    rows = []
    used: set[int] = set()
    for _, b in before.iterrows():
        b_end = b["resolved_on"] if not pd.isna(b["resolved_on"]) else end
        match = None
        for j, a in after.iterrows():
            if j in used or any(a[k] != b[k] for k in key):
                continue
            a_end = a["resolved_on"] if not pd.isna(a["resolved_on"]) else end
            if a["onset"] <= b_end and b["onset"] <= a_end:
                match = (j, a)
                break
        if match is not None:
            used.add(match[0])
        rows.append(_matched_row(b, match[1] if match else None))
    for j, a in after.iterrows():
        if j not in used:
            rows.append(_matched_row(None, a))
    columns = ["family", "account_id", "account_name", "campaign_id", "campaign_name", "onset", "managing_party",
               "detected_before", "detected_after", "caught_before", "caught_after", "excess_cost",
               "currency", "rule_before", "rule_after", "severity_before", "severity_after", "excess_before", "excess_after"]
    frame = pd.DataFrame(rows, columns=columns)
    frame["caught_before"] = frame["caught_before"].astype(bool)
    frame["caught_after"] = frame["caught_after"].astype(bool)
    return frame.sort_values(["onset", "account_id", "campaign_id"], kind="stable").reset_index(drop=True)


def _matched_row(before: pd.Series | None, after: pd.Series | None) -> dict[str, Any]:
    first = before if before is not None else after
    return {
        "family": first["family"],
        "account_id": first["account_id"],
        "account_name": first["account_name"],
        "campaign_id": first["campaign_id"],
        "campaign_name": first["campaign_name"],
        "onset": min(x["onset"] for x in (before, after) if x is not None),
        "managing_party": first["managing_party"],
        "detected_before": before["detected_on"] if before is not None else pd.NaT,
        "detected_after": after["detected_on"] if after is not None else pd.NaT,
        "caught_before": before is not None,
        "caught_after": after is not None,
        "excess_cost": max(x["excess_cost"] for x in (before, after) if x is not None),
        "currency": first["currency"],
        **{f"{name}_{side}": (x[name] if x is not None else None) for side, x in (("before", before), ("after", after)) for name in ("rule", "severity")},
        "excess_before": before["excess_cost"] if before is not None else np.nan,
        "excess_after": after["excess_cost"] if after is not None else np.nan,
    }
