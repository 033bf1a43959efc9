"""The ad platforms an account can be on: their names as people say them, and where a campaign opens
in each platform's own interface.

An account's platform is its source's: a ``google_ads``, ``microsoft_ads`` or ``meta_ads`` source
says it by its type, a CSV source by its ``platform`` setting. A CSV source that does not set it
leaves the platform to the account id's shape: ten digits (``123-456-7890`` written plain) is a
Google Ads customer id, ``act_`` and digits a Meta ad account; anything else is unknown ("").
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

GOOGLE_ADS = "google_ads"
MICROSOFT_ADS = "microsoft_ads"
META_ADS = "meta_ads"


@dataclass(frozen=True)
class Platform:
    key: str
    label: str  # as people say it: "Google Ads"
    interface: str  # where a person opens a campaign: "Google Ads", "Meta Ads Manager"
    #: a campaign in the platform's web interface; {account_id} and {campaign_id} are filled in
    campaign_url: str
    account_id: re.Pattern[str]  # the ids a link can be made for
    campaign_id: re.Pattern[str]

    def link(self, template: str | None, account_id: str, campaign_id: str) -> str | None:
        """``template`` filled in for this campaign; None for an account total, for ids of
        another shape, or when there is no template."""
        if not template or not campaign_id or not self.account_id.match(account_id) or not self.campaign_id.match(campaign_id):
            return None
        account = account_id.removeprefix("act_")  # Meta's interface takes the bare number
        return template.replace("{account_id}", account).replace("{campaign_id}", campaign_id)


PLATFORMS: dict[str, Platform] = {
    GOOGLE_ADS: Platform(
        GOOGLE_ADS, "Google Ads", "Google Ads",
        "https://ads.google.com/aw/campaigns?campaignId={campaign_id}&__e={account_id}",
        re.compile(r"^\d{10}$"), re.compile(r"^\d{1,20}$"),
    ),
    MICROSOFT_ADS: Platform(
        MICROSOFT_ADS, "Microsoft Advertising", "Microsoft Advertising",
        "https://ui.ads.microsoft.com/campaign/vnext/campaigns?aid={account_id}&campaignId={campaign_id}",
        re.compile(r"^\d{1,20}$"), re.compile(r"^\d{1,20}$"),
    ),
    META_ADS: Platform(
        META_ADS, "Meta", "Meta Ads Manager",
        "https://adsmanager.facebook.com/adsmanager/manage/campaigns?act={account_id}&selected_campaign_ids={campaign_id}",
        re.compile(r"^(act_)?\d{1,20}$"), re.compile(r"^\d{1,20}$"),
    ),
}

#: the platform keys, in the order they are listed
PLATFORM_KEYS = tuple(PLATFORMS)

_GOOGLE_ID = re.compile(r"^\d{10}$")
_META_ID = re.compile(r"^act_\d{1,20}$")


def guess_platform(account_id: str) -> str:
    """The platform an account id's shape implies, for data that does not say: "" when it is not
    plain."""
    if _GOOGLE_ID.match(account_id):
        return GOOGLE_ADS
    if _META_ID.match(account_id):
        return META_ADS
    return ""


def payload_platform(payload: Mapping[str, object]) -> str:
    """An incident's ad platform: as stored, or (for an incident stored without one) what the
    account id's shape implies; "" when unknown."""
    return str(payload.get("platform") or "") or guess_platform(str(payload.get("account_id") or ""))


def platform_label(key: str | None) -> str:
    """``Google Ads`` for ``google_ads``; "" for an unknown platform."""
    platform = PLATFORMS.get(key or "")
    return platform.label if platform else ""


def account_platforms(account_sources: Mapping[str, str], source_platforms: Mapping[str, str | None]) -> dict[str, str]:
    """Each account's platform from the source its metrics came from (``Store.account_sources``)
    and what each source says of its platform (None: let the id's shape tell)."""
    out: dict[str, str] = {}
    for account, source in account_sources.items():
        said = source_platforms.get(source)
        out[account] = said if said else guess_platform(account)
    return out
