"""config.yaml ``parties``, ``ownership`` and ``settlement``: who manages what since when, and who
bears an incident's excess cost."""

from __future__ import annotations

import datetime as dt
import re
from typing import Annotated, Literal

from pydantic import BeforeValidator, Field, field_validator, model_validator

from anomaly.config.base import FilePath, Float, Int, Slug, StrictModel


def _meta_actor(value: object) -> object:
    """A Meta user or business as the activity log names it: its id (digits), or its name."""
    if not isinstance(value, str):
        return value  # the model's own type check says what it expected
    text = " ".join(value.split())
    if not text or not text.isprintable() or len(text) > 200:
        raise ValueError(f"expected the id (digits) or the name Meta's activity log shows, got {value!r}")
    return text


MetaActor = Annotated[str, BeforeValidator(_meta_actor)]


class PartyConfig(StrictModel):
    """A party that manages accounts: its people are known by the domain of their email (Google
    Ads, Microsoft Advertising) and, in Meta's activity log, which names people and businesses
    rather than emails, by ``meta_users`` (the ids or names of the people, system users included,
    who act for it) and ``meta_businesses`` (the ids or names of its business portfolios). Names
    match whatever their case."""

    name: str = Field(min_length=1)
    domains: list[str] = []
    meta_users: list[MetaActor] = []
    meta_businesses: list[MetaActor] = []

    @field_validator("domains")
    @classmethod
    def _lower(cls, domains: list[str]) -> list[str]:
        bad = [d for d in domains if not re.fullmatch(r"[A-Za-z0-9.-]+\.[A-Za-z]{2,}", d)]
        if bad:
            raise ValueError(f"expected email domains like 'agency.com', got {bad[0]!r}")
        return [d.lower() for d in domains]


class OwnershipPeriodConfig(StrictModel):
    party: Slug
    since: dt.date


class OwnershipAssignment(StrictModel):
    """Who has managed an account (or one campaign of it) since when, oldest first."""

    account_id: str = Field(min_length=1)
    campaign_id: str | None = None
    history: list[OwnershipPeriodConfig] = Field(min_length=1)

    @field_validator("history")
    @classmethod
    def _ordered(cls, history: list[OwnershipPeriodConfig]) -> list[OwnershipPeriodConfig]:
        for before, after in zip(history, history[1:]):
            if after.since <= before.since:
                raise ValueError(f"expected 'since' dates in increasing order, got {before.since} then {after.since}")
        return history


class OwnershipConfig(StrictModel):
    file: FilePath | None = None
    default_party: Slug | None = None
    assignments: list[OwnershipAssignment] = []


class HandoffConfig(StrictModel):
    """What the service does when the managing party of an account or campaign changes: a
    handover message to the routes of both parties (``announce``), for a handover whose first day
    is at most ``announce_within_days`` before the data day of the cycle that first sees it (an
    older one, found in history, is recorded and not announced), with each campaign's figures over
    the ``reference_days`` before it, frozen as the reference."""

    announce: bool = True
    announce_within_days: Int = Field(7, ge=0)
    reference_days: Int = Field(28, ge=7, le=365)


class SettlementConfig(StrictModel):
    """The proposed split of an incident's excess cost in ``anomaly report``.

    ``bears`` says who bears each part of the excess before any contract applies:
    ``managing_party`` (each day's excess falls to the party managing the campaign that day) or
    ``changed_by`` (the excess falls to the parties whose people made the changes listed with the
    incident, in proportion to how many each made; changes by automated tools or unknown users, or
    no changes at all, leave it with the managing party). ``shares`` then splits what a party bears
    by contract, in percent: ``{beacon: {beacon: 80, northwind: 20}}``.
    """

    bears: Literal["managing_party", "changed_by"] = "managing_party"
    shares: dict[Slug, dict[Slug, Annotated[Float, Field(gt=0, le=100)]]] = {}

    @model_validator(mode="after")
    def _whole(self) -> "SettlementConfig":
        problems = [
            f"shares.{bearer}: expected percentages that add up to 100, got {sum(split.values()):g}"
            for bearer, split in self.shares.items()
            if abs(sum(split.values()) - 100.0) > 0.01
        ]
        if problems:
            raise ValueError("; ".join(problems))
        return self
