"""config.yaml ``sources``: CSV files and Google Ads accounts, and what counts as a lead."""

from __future__ import annotations

from typing import Annotated, Literal, Union

from pydantic import Field, model_validator

from anomaly.config.base import FilePath, Float, Int, Slug, StrictModel
from anomaly.config.service import ScheduleConfig


class CsvSourceConfig(StrictModel):
    """CSV files and partner spreadsheets saved as CSV. Globs (``exports/*.csv``) are allowed."""

    type: Literal["csv"]
    name: Slug
    metrics: list[FilePath] = Field(min_length=1)
    changes: list[FilePath] = []
    currency: str = Field("USD", pattern=r"^[A-Z]{3}$")
    #: the ad platform the files' accounts are on; unset, ten-digit account ids are taken for
    #: Google Ads and ``act_`` ids for Meta (see ``anomaly.platforms``)
    platform: Literal["google_ads", "microsoft_ads", "meta_ads"] | None = None
    lookback_days: Int = Field(7, ge=0, le=90)
    history_days: Int = Field(400, ge=1, le=3650)
    # The most one metrics row (a campaign's day, or hour) may hold: beyond these a figure is a typo
    # or garbage, not an account's day, and its file is refused. Spend is in the account's currency:
    # raise it for a currency of small units (JPY, KRW, IDR ...).
    max_row_spend: Float = Field(10_000_000, gt=0)
    max_row_impressions: Int = Field(1_000_000_000, gt=0)
    max_row_clicks: Int = Field(100_000_000, gt=0)
    max_row_leads: Float = Field(1_000_000, gt=0)
    schedule: ScheduleConfig = ScheduleConfig()

    @property
    def row_ceilings(self) -> dict[str, float]:
        """``max_row_*`` by metrics column, as ``connectors.csv_files.CsvConnector`` takes them."""
        return {column: getattr(self, f"max_row_{column}") for column in ("spend", "impressions", "clicks", "leads")}


CustomerId = Annotated[str, Field(pattern=r"^\d{10}$")]
#: Google Ads ConversionActionCategory values that can count as a lead (there is no LEAD value).
LeadCategory = Literal[
    "SUBMIT_LEAD_FORM", "PHONE_CALL_LEAD", "IMPORTED_LEAD", "QUALIFIED_LEAD", "CONVERTED_LEAD",
    "MESSAGE_LEAD", "BOOK_APPOINTMENT", "REQUEST_QUOTE", "CONTACT", "SIGNUP",
]


class LeadDefinition(StrictModel):
    """What counts as a lead in an account: conversions in these categories, or (when given) of
    these named conversion actions only."""

    categories: list[LeadCategory] = ["SUBMIT_LEAD_FORM", "PHONE_CALL_LEAD", "IMPORTED_LEAD"]
    conversion_actions: list[str] = []


class OwnershipInferenceConfig(StrictModel):
    """Record an ownership change when a party that has not been managing an account makes
    ``min_changes`` changes to it; ownership declared in config always wins."""

    enabled: bool = True
    min_changes: Int = Field(2, ge=1, le=1000)


class GoogleAdsSourceConfig(StrictModel):
    """Google Ads through the official client: every client account under a manager (MCC) account,
    or the listed accounts. Credentials from ``credentials`` (a google-ads.yaml) or, when it is not
    set, from the ``GOOGLE_ADS_*`` environment variables."""

    type: Literal["google_ads"]
    name: Slug
    credentials: FilePath | None = None
    login_customer_id: CustomerId | None = None
    customer_ids: list[CustomerId] = []  # empty: every client account under login_customer_id
    exclude_customer_ids: list[CustomerId] = []
    leads: LeadDefinition = LeadDefinition()
    account_leads: dict[CustomerId, LeadDefinition] = {}  # per-account lead definitions
    change_history: bool = True
    ownership_inference: OwnershipInferenceConfig = OwnershipInferenceConfig()
    lookback_days: Int = Field(7, ge=0, le=90)
    history_days: Int = Field(90, ge=1, le=3650)
    timeout_seconds: Float = Field(120.0, gt=0, le=3600)
    max_attempts: Int = Field(5, ge=1, le=20)
    schedule: ScheduleConfig = ScheduleConfig()

    @model_validator(mode="after")
    def _accounts_to_pull(self) -> "GoogleAdsSourceConfig":
        if not self.customer_ids and not self.login_customer_id:
            raise ValueError("customer_ids: list the accounts to pull, or set login_customer_id to pull every client of a manager account")
        return self


def source_platform(source: "Source") -> str | None:
    """The ad platform a source's accounts are on: its type for a platform's own source, a CSV
    source's ``platform`` setting (None: unsaid)."""
    return source.platform if isinstance(source, CsvSourceConfig) else source.type


Source = Annotated[Union[CsvSourceConfig, GoogleAdsSourceConfig], Field(discriminator="type")]
