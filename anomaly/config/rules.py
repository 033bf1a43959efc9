"""Rules (rules/*.yaml): the rule models, the registry of rule types and a rules file."""

from __future__ import annotations

from typing import Annotated, Literal, Union

from pydantic import Field, field_validator, model_validator

from anomaly.config.base import Float, Int, Slug, StrictModel


Severity = Literal["warning", "critical"]
SEVERITIES: tuple[str, ...] = ("warning", "critical")


class Scope(StrictModel):
    """Where a rule applies; an empty list means everywhere. ``parties`` is the managing party on the day."""

    accounts: list[str] = []
    campaigns: list[str] = []
    parties: list[str] = []


class ForestGate(StrictModel):
    """How a rule combines with the isolation-forest score (higher = more anomalous, 0..1).

    ``ignore``: the rule alone decides. ``require``: the rule fires only when the score is at least
    ``min_score`` as well. ``escalate``: a warning becomes critical when the score is at least
    ``min_score``.
    """

    mode: Literal["ignore", "require", "escalate"] = "ignore"
    min_score: Float = Field(0.99, gt=0, lt=1)


class AfterOwnershipChange(StrictModel):
    """Stricter settings for the first ``within_days`` after the managing party changes."""

    within_days: Int = Field(14, ge=1, le=365)
    warning: Float | None = None
    critical: Float | None = None
    min_spend: Float | None = Field(None, ge=0)
    min_expected_leads: Float | None = Field(None, ge=0)
    max_p_value: Float | None = Field(None, gt=0, le=1)


TUNABLES = ("warning", "critical", "min_spend", "min_expected_leads", "max_p_value")

ChangeKind = Literal["budget", "bidding", "status"]


class AfterChange(AfterOwnershipChange):
    """Other settings for the first ``within_days`` after a change of one of ``kinds`` in the
    change history (``budget``, ``bidding``: a strategy or target, ``status``: paused, enabled or
    created), e.g. a quieter rule while smart bidding relearns after a strategy change."""

    kinds: list[ChangeKind] = Field(min_length=1)
    within_days: Int = Field(7, ge=1, le=365)


class RuleBase(StrictModel):
    name: Slug
    description: str = ""
    enabled: bool = True
    family: Slug | None = None
    window_days: Int = Field(1, ge=1, le=28)
    warning: Float
    critical: Float | None = None
    min_spend: Float = Field(0.0, ge=0)
    min_expected_leads: Float = Field(0.0, ge=0)
    max_p_value: Float | None = Field(None, gt=0, le=1)
    baseline_lag_days: Int = Field(0, ge=0, le=90)
    scope: Scope = Scope()
    forest: ForestGate = ForestGate()
    after_ownership_change: AfterOwnershipChange | None = None
    after_changes: list[AfterChange] = []

    #: What a breach looks like: "above" (observed >= threshold) or "below" (observed <= threshold).
    def breach_direction(self) -> str:
        return "above"

    def default_family(self) -> str:
        return "cost_per_lead"

    @property
    def rule_family(self) -> str:
        return self.family or self.default_family()

    @classmethod
    def _check_threshold(cls, value: float) -> str | None:
        """Why ``value`` cannot be a warning/critical threshold of this rule type (None when it can)."""
        return None

    @field_validator("warning", "critical")
    @classmethod
    def _threshold_in_range(cls, value: float | None) -> float | None:
        if value is not None and (msg := cls._check_threshold(value)):
            raise ValueError(f"{msg}, got {value:g}")
        return value

    @model_validator(mode="after")
    def _check_thresholds(self) -> "RuleBase":
        problems: list[str] = []
        overrides = [("after_ownership_change.", self.after_ownership_change)]
        overrides += [(f"after_changes[{i}].", change) for i, change in enumerate(self.after_changes)]
        for prefix, source in [("", self), *overrides]:
            if source is None:
                continue
            if source is not self:
                out_of_range = [
                    f"{prefix}{name}: {msg}, got {value:g}"
                    for name in ("warning", "critical")
                    if (value := getattr(source, name)) is not None and (msg := self._check_threshold(value))
                ]
                if out_of_range:  # comparing a value already reported would only repeat it
                    problems.extend(out_of_range)
                    continue
            warning_only = source is not self and source.critical is None
            if source is not self and source.warning is None and source.critical is None:
                continue  # both inherited: the rule's own pair is checked above
            warning = source.warning if source.warning is not None else self.warning
            critical = source.critical if source.critical is not None else (self.critical if source is not self else None)
            if critical is not None and warning is not None:
                above = self.breach_direction() == "above"
                worse = critical >= warning if above else critical <= warning
                if not worse and warning_only:  # the override set only the warning: it is the one at fault
                    problems.append(f"{prefix}warning: must be {'at most' if above else 'at least'} critical ({critical:g}), got {warning:g}")
                elif not worse:
                    problems.append(f"{prefix}critical: must be {'at least' if above else 'at most'} warning ({warning:g}), got {critical:g}")
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def with_overrides(self, overrides: AfterOwnershipChange | None = None) -> "RuleBase":
        """This rule with ``overrides`` applied (default: its after-ownership-change settings;
        itself when there are none)."""
        overrides = overrides if overrides is not None else self.after_ownership_change
        if overrides is None:
            return self
        update = {k: getattr(overrides, k) for k in TUNABLES}
        return self.model_copy(update={k: v for k, v in update.items() if v is not None})


class CplRatioRule(RuleBase):
    """Cost per lead over the window at least ``warning``× the campaign's baseline.

    The ratio is estimated with one pseudo-lead on each side, so zero leads on a day that should
    have bought four reads as 5×, not infinity. ``max_p_value`` (default 0.001) asks that so few
    leads for the spend be implausible at the baseline cost per lead, so that two noisy days of a
    small campaign do not alert. With ``use_clicks`` the clicks count as evidence too: a cost per
    click far above baseline shows a spike on its first day, before the leads can.
    """

    type: Literal["cpl_ratio"]
    max_p_value: Float | None = Field(0.001, gt=0, le=1)
    use_clicks: bool = True

    @classmethod
    def _check_threshold(cls, value: float) -> str | None:
        return None if value > 1 else "must be a ratio > 1"


class LeadShortfallRule(RuleBase):
    """Spend with too few leads: leads over the window at most ``warning`` × the leads the spend
    should have bought at baseline (0.2 = fewer than a fifth). Zero leads is data, not missing."""

    type: Literal["lead_shortfall"]
    min_expected_leads: Float = Field(3.0, ge=0)
    max_p_value: Float | None = Field(0.001, gt=0, le=1)

    def breach_direction(self) -> str:
        return "below"

    @classmethod
    def _check_threshold(cls, value: float) -> str | None:
        return None if 0 <= value < 1 else "must be a fraction of the expected leads, >= 0 and < 1"


MetricName = Literal["cpl", "cpc", "ctr", "cvr", "spend", "leads", "clicks", "impressions"]


class ThresholdRule(RuleBase):
    """An absolute threshold on a metric over the window, e.g. cost per lead above 400."""

    type: Literal["threshold"]
    metric: MetricName
    direction: Literal["above", "below"] = "above"

    def breach_direction(self) -> str:
        return self.direction

    def default_family(self) -> str:
        return "cost_per_lead" if self.metric == "cpl" else self.metric

    @classmethod
    def _check_threshold(cls, value: float) -> str | None:
        return None if value >= 0 else "must be >= 0"


class ExplainedBy(StrictModel):
    """The changes that explain a jump in spend: one of ``kinds`` on the campaign (or its account)
    within ``within_days``. A budget change that states its amounts explains spend up to its new
    budget; one that multiplies the budget by more than ``max_budget_factor`` explains nothing (a
    typed extra zero looks like that), and makes the rule take a jump significant at
    ``worse_p_value`` as enough."""

    kinds: list[ChangeKind] = ["budget", "bidding", "status"]
    within_days: Int = Field(7, ge=1, le=90)
    max_budget_factor: Float = Field(3.0, gt=1)


class SpendRatioRule(RuleBase):
    """Spend over the window at least ``warning``× what the campaign usually spends on those
    weekdays, when the money buys worse or nothing explains it: a runaway budget or bid.

    The jump must be implausible for the campaign's own day-to-day spread of spend
    (``max_p_value``, default 0.001; a campaign of five clicks a day has a wide one, so its doubled
    day is noise). Then it alerts when the cost per click or the cost per lead is at least
    ``worse_ratio``× baseline and significantly so (``worse_p_value``), or when no change in
    ``explained_by`` explains it. A step that keeps its cost per click and per lead becomes the
    new level after ``detection.baseline.new_spend_level_days`` days."""

    type: Literal["spend_ratio"]
    max_p_value: Float | None = Field(0.001, gt=0, le=1)
    worse_ratio: Float = Field(1.25, gt=1)
    worse_p_value: Float = Field(0.01, gt=0, le=1)
    explained_by: ExplainedBy | None = ExplainedBy()

    def default_family(self) -> str:
        return "spend"

    @classmethod
    def _check_threshold(cls, value: float) -> str | None:
        return None if value > 1 else "must be a ratio > 1"


class CpcRatioRule(RuleBase):
    """Cost per click over the window at least ``warning``× the campaign's baseline, tested as
    clicks bought for the spend against the campaign's own day-to-day variation
    (``max_p_value``, default 0.001), on days whose cost per lead is not better than baseline: a
    bid or auction spike shows in the clicks on its first day, long before a small campaign's
    leads can. Its family is cost_per_lead: it opens (or feeds) the campaign's cost-per-lead
    incident."""

    type: Literal["cpc_ratio"]
    max_p_value: Float | None = Field(0.001, gt=0, le=1)

    @classmethod
    def _check_threshold(cls, value: float) -> str | None:
        return None if value > 1 else "must be a ratio > 1"


class IsolationForestRule(RuleBase):
    """The isolation-forest score alone (0..1, higher = more anomalous than more of history), only on
    days whose cost per lead is worse than baseline: cheaper leads never alert."""

    type: Literal["isolation_forest"]

    @classmethod
    def _check_threshold(cls, value: float) -> str | None:
        return None if 0 < value < 1 else "must be a score > 0 and < 1"

    @field_validator("forest")
    @classmethod
    def _no_gate(cls, gate: ForestGate) -> ForestGate:
        if gate.mode != "ignore":
            raise ValueError(f"mode: expected 'ignore' (an isolation_forest rule is the score itself), got {gate.mode!r}")
        return gate


#: The registry: a rule's YAML ``type`` → its model. Nothing in YAML names Python code.
RULE_TYPES: dict[str, type[RuleBase]] = {
    "cpl_ratio": CplRatioRule,
    "lead_shortfall": LeadShortfallRule,
    "threshold": ThresholdRule,
    "spend_ratio": SpendRatioRule,
    "cpc_ratio": CpcRatioRule,
    "isolation_forest": IsolationForestRule,
}

Rule = Annotated[
    Union[CplRatioRule, LeadShortfallRule, ThresholdRule, SpendRatioRule, CpcRatioRule, IsolationForestRule],
    Field(discriminator="type"),
]


class RulesFile(StrictModel):
    rules: list[Rule] = Field(min_length=1)
