"""config.yaml ``detection``: baselines, day-to-day variation, the isolation forest and incidents."""

from __future__ import annotations

from pydantic import Field

from anomaly.config.base import Float, Int, StrictModel


class BaselineConfig(StrictModel):
    """Each campaign's trailing baseline: exponentially weighted, blind to days that are
    significantly worse than it (so an ongoing incident does not become the new normal), held at
    its pre-handoff level for ``probation_days`` after the managing party changes, and for small
    campaigns shrunk toward the account's cost per lead by ``shrink_leads`` pseudo-leads.

    Spend has a level of its own (``anomaly.detect.spend_level``): ``spend_spread`` is the prior of
    how far a campaign's log spend strays from day to day, and a step in spend whose cost per click
    and cost per lead stay at baseline becomes the new level after ``new_spend_level_days`` days.

    Clicks come dearer as more are bought (diminishing returns): on a window with more clicks than
    the usual spend buys at the baseline cost per click, the clicks and leads its spend should buy
    are divided by (clicks / usual) ** ``volume_elasticity``; 0 turns this off."""

    half_life_days: Float = Field(14.0, gt=0, le=365)
    min_days: Int = Field(14, ge=1, le=365)
    min_leads: Float = Field(5.0, ge=0)
    elevated_ratio: Float = Field(1.3, gt=1)
    elevated_p_value: Float = Field(0.01, gt=0, le=1)
    max_excluded_days: Int = Field(28, ge=1, le=365)
    probation_days: Int = Field(28, ge=0, le=365)
    shrink_leads: Float = Field(5.0, ge=0)
    weekday_half_life_weeks: Float = Field(8.0, gt=0, le=104)
    weekday_prior_weeks: Float = Field(2.0, ge=0)
    spend_spread: Float = Field(0.35, gt=0, le=5)
    new_spend_level_days: Int = Field(3, ge=1, le=60)
    volume_elasticity: Float = Field(0.3, ge=0, le=2)


class VariationConfig(StrictModel):
    """Day-to-day variation beyond counting noise, as a coefficient of variation: how much a
    campaign's cost per lead (``leads``) and cost per click (``clicks``) move on a normal day.
    Larger values make every significance test more cautious.

    With ``learn``, each campaign's own variation is learned from its history
    (``anomaly.detect.variation``): ``leads`` and ``clicks`` are then the prior, worth
    ``prior_days`` days of data, that a campaign with little history (through its account) starts
    from; ``half_life_days`` is how fast old days are forgotten and ``floor`` the least variation
    any campaign is credited with. ``drift`` is the prior of the part that does not average out
    over a window: how far a campaign's rates wander from its baseline within weeks."""

    leads: Float = Field(0.15, ge=0, le=2)
    clicks: Float = Field(0.15, ge=0, le=2)
    learn: bool = True
    prior_days: Float = Field(14.0, ge=0, le=365)
    half_life_days: Float = Field(60.0, gt=0, le=730)
    floor: Float = Field(0.12, ge=0, le=2)
    drift: Float = Field(0.05, ge=0, le=2)


class ForestConfig(StrictModel):
    """One isolation forest for the whole portfolio, refitted on the first of each month on the
    ``training_days`` before it, so a replay and a live run score every day the same way."""

    enabled: bool = False
    n_estimators: Int = Field(100, ge=1, le=1000)
    max_samples: Int = Field(256, ge=16, le=100_000)
    training_days: Int = Field(180, ge=7, le=3650)
    min_training_rows: Int = Field(500, ge=10)
    random_state: Int = 0


class IncidentConfig(StrictModel):
    resolve_after_days: Int = Field(2, ge=1, le=60)
    changes_before_onset_days: Int = Field(7, ge=0, le=90)
    #: a warning a new managing party took over, whose own days then turn critical, is closed at the
    #: handover and the new party's days are an incident of their own (false: one incident)
    split_at_handover: bool = True


class DetectionConfig(StrictModel):
    account_level: bool = True  # also watch each account's total, as if it were one more campaign
    pool_accounts: bool = True  # an account total pools its campaigns not in an incident (else it goes mute while one is)
    reporting_lag_days: Int = Field(7, ge=0, le=30)  # the last days' leads are judged as reported so far
    baseline: BaselineConfig = BaselineConfig()
    variation: VariationConfig = VariationConfig()
    forest: ForestConfig = ForestConfig()
    incidents: IncidentConfig = IncidentConfig()
