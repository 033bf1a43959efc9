"""config.yaml ``sources``: CSV files, Google Ads and Microsoft Advertising accounts and Meta ad accounts, and what counts as a lead."""

from __future__ import annotations

import re
from typing import Annotated, Literal, Union

from pydantic import BeforeValidator, Field, SecretStr, ValidationInfo, field_validator, model_validator

from anomaly.config.base import FilePath, Float, Int, Slug, StrictModel, _short
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


def _meta_account_id(value: object) -> object:
    """``act_<digits>`` or the bare digits, as Meta writes an ad account id, as ``act_<digits>``."""
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if isinstance(value, str) and re.fullmatch(r"(act_)?\d{1,20}", value.strip()):
        return "act_" + value.strip().removeprefix("act_")
    raise ValueError(f"expected a Meta ad account id, act_ and its digits ('act_1234567890') or the digits alone, got {_short(value)}")


#: A Meta ad account id, as ``act_<digits>`` whichever way config.yaml writes it.
MetaAccountId = Annotated[str, BeforeValidator(_meta_account_id)]
#: The action types Meta reports leads under: ``lead`` is every lead, on Meta (instant forms,
#: Messenger: ``onsite_conversion.lead_grouped``) and on the advertiser's site (the pixel's and the
#: Conversions API's Lead event: ``offsite_conversion.fb_pixel_lead``), so it is never added to
#: those two; a row without it counts them instead.
META_LEAD_ACTION_TYPES = ("lead", "onsite_conversion.lead_grouped", "offsite_conversion.fb_pixel_lead")
#: Action types that already hold others: a row that reports the aggregate counts it, not its parts.
META_AGGREGATE_ACTION_TYPES = {"lead": ("onsite_conversion.lead_grouped", "offsite_conversion.fb_pixel_lead")}


def _from_environment(what: str, variable: str):
    """A check that a secret came from the environment (``${VAR}``), when config.yaml is loaded:
    written in the file itself, it would be kept in the file and in its history."""

    def check(value: SecretStr | None, info: ValidationInfo) -> SecretStr | None:
        if value is None:
            return value
        if not value.get_secret_value().strip():
            raise ValueError(f"expected {what}, got an empty value")
        environment = (info.context or {}).get("environment")
        if environment is not None and value.get_secret_value() not in environment:
            raise ValueError(f"expected {what} from the environment, written as ${{{variable}}}: a value written in "
                             "config.yaml itself is refused (not shown: it is a secret)")
        return value

    return check


class MetaAdsSourceConfig(StrictModel):
    """Meta (Facebook and Instagram) ads through the official ``facebook-business`` SDK: daily
    insights per campaign of the listed ad accounts and/or of every ad account a business owns or
    has client access to, and the accounts' activity log.

    The access token (a system user's, with ``ads_read``) comes from the environment only:
    ``access_token: ${META_ACCESS_TOKEN}``, or, when it is not set, the variable META_ACCESS_TOKEN.
    ``app_id`` and ``app_secret`` (``${META_APP_SECRET}``) sign each call with an appsecret_proof
    when the app requires it."""

    type: Literal["meta_ads"]
    name: Slug
    access_token: SecretStr | None = None
    app_id: Annotated[str, Field(pattern=r"^\d{1,20}$")] | None = None
    app_secret: SecretStr | None = None
    ad_account_ids: list[MetaAccountId] = []
    business_id: Annotated[str, Field(pattern=r"^\d{1,20}$")] | None = None  # its owned and client ad accounts
    exclude_ad_account_ids: list[MetaAccountId] = []
    lead_action_types: list[Annotated[str, Field(pattern=r"^[a-z0-9_.]{1,100}$")]] = Field(
        list(META_LEAD_ACTION_TYPES), min_length=1
    )
    change_history: bool = True
    ownership_inference: OwnershipInferenceConfig = OwnershipInferenceConfig()
    lookback_days: Int = Field(7, ge=0, le=90)  # Meta restates conversions for days (attribution windows)
    history_days: Int = Field(90, ge=1, le=1095)  # insights reach 37 months back
    timeout_seconds: Float = Field(120.0, gt=0, le=3600)
    max_attempts: Int = Field(5, ge=1, le=20)
    # ranges longer than this many days are asked for as an asynchronous report run (0: always)
    async_after_days: Int = Field(14, ge=0, le=1095)
    async_wait_seconds: Float = Field(1800.0, gt=0, le=86400)  # the longest wait for one report run
    # back off before the next call once a usage header says this share of a limit is used
    usage_pause_percent: Float = Field(75.0, gt=0, le=100)
    max_pause_seconds: Float = Field(900.0, gt=0, le=86400)  # a longer throttle fails the accounts left
    schedule: ScheduleConfig = ScheduleConfig()

    _check_token = field_validator("access_token")(_from_environment("the system user's access token", "META_ACCESS_TOKEN"))
    _check_secret = field_validator("app_secret")(_from_environment("the app's secret", "META_APP_SECRET"))

    @field_validator("lead_action_types")
    @classmethod
    def _distinct(cls, types: list[str]) -> list[str]:
        repeated = [t for i, t in enumerate(types) if t in types[:i]]
        if repeated:
            raise ValueError(f"{repeated[0]!r} is listed twice")
        return types

    @model_validator(mode="after")
    def _accounts_to_pull(self) -> "MetaAdsSourceConfig":
        if not self.ad_account_ids and not self.business_id:
            raise ValueError("ad_account_ids: list the ad accounts to pull (act_ and digits), or set business_id to pull "
                             "every ad account a business owns or has client access to")
        if self.app_secret is not None and self.app_id is None:
            raise ValueError("app_id: set the app's id too: the app_secret signs calls with an appsecret_proof for that app")
        return self


def source_platform(source: "Source") -> str | None:
    """The ad platform a source's accounts are on: its type for a platform's own source, a CSV
    source's ``platform`` setting (None: unsaid)."""
    return source.platform if isinstance(source, CsvSourceConfig) else source.type


#: A Microsoft Advertising account or customer id: a number (the API's long), not the account
#: number such as F149MJ18 that the web interface also shows.
MicrosoftId = Annotated[str, Field(pattern=r"^[1-9][0-9]{0,18}$")]


class GoalLeads(StrictModel):
    """What counts as a lead in a Microsoft Advertising account: the conversions of these named
    conversion goals (matched without regard to case, whether or not the goal counts in the
    Conversions column), or, when none is named, every conversion of the Conversions column."""

    goals: list[Annotated[str, Field(min_length=1, max_length=200)]] = []


class MicrosoftAdsSourceConfig(StrictModel):
    """Microsoft Advertising through the official SDK (bingads): every account of a manager
    customer, or the listed accounts. Credentials come from the environment only: ``${VAR}`` in
    these settings or, for a setting left out, the ``MICROSOFT_ADS_*`` environment variables."""

    type: Literal["microsoft_ads"]
    name: Slug
    environment: Literal["production", "sandbox"] = "production"
    developer_token: SecretStr | None = None  # unset: MICROSOFT_ADS_DEVELOPER_TOKEN
    client_id: str | None = None  # unset: MICROSOFT_ADS_CLIENT_ID
    client_secret: SecretStr | None = None  # unset: MICROSOFT_ADS_CLIENT_SECRET, a web app's (a desktop app has none)
    refresh_token: SecretStr | None = None  # unset: MICROSOFT_ADS_REFRESH_TOKEN
    customer_id: MicrosoftId | None = None  # the manager (customer) whose accounts are pulled
    account_ids: list[MicrosoftId] = []  # empty: every active or paused account of customer_id
    exclude_account_ids: list[MicrosoftId] = []
    leads: GoalLeads = GoalLeads()
    account_leads: dict[MicrosoftId, GoalLeads] = {}  # per-account lead definitions
    change_history: bool = True
    ownership_inference: OwnershipInferenceConfig = OwnershipInferenceConfig()
    lookback_days: Int = Field(7, ge=0, le=90)
    history_days: Int = Field(90, ge=1, le=1095)  # daily campaign data is kept 36 months
    timeout_seconds: Float = Field(600.0, gt=0, le=7200)  # per report, from its submission to its file
    max_attempts: Int = Field(5, ge=1, le=20)
    schedule: ScheduleConfig = ScheduleConfig()

    _check_developer_token = field_validator("developer_token")(
        _from_environment("the developer token", "MICROSOFT_ADS_DEVELOPER_TOKEN"))
    _check_client_secret = field_validator("client_secret")(
        _from_environment("the app's client secret", "MICROSOFT_ADS_CLIENT_SECRET"))
    _check_refresh_token = field_validator("refresh_token")(
        _from_environment("the OAuth refresh token", "MICROSOFT_ADS_REFRESH_TOKEN"))

    @model_validator(mode="after")
    def _accounts_to_pull(self) -> "MicrosoftAdsSourceConfig":
        if not self.account_ids and not self.customer_id:
            raise ValueError("account_ids: list the accounts to pull, or set customer_id to pull every account of a manager customer")
        return self


Source = Annotated[
    Union[CsvSourceConfig, GoogleAdsSourceConfig, MetaAdsSourceConfig, MicrosoftAdsSourceConfig], Field(discriminator="type")
]
