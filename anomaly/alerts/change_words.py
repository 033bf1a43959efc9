"""Change-history entries in words a CMO reads: "Budget raised from $1,300 to $2,500 a day", "Bid
strategy: Maximize conversions → Maximize clicks", "Gave Beacon Reach admin access".

A change arrives as the Google Ads change history reports it (a resource type such as
``CAMPAIGN_BUDGET``, an operation, and the changed fields with their old and new values, as the
Google Ads connector writes them, ``amount: 1300.00 -> 2500.00``, or as a change-history CSV may,
``amount_micros: 1300000000 -> 2500000000``). ``describe`` turns each field it knows into a phrase
and keeps any other as it was written; the raw form stays in the store, the evidence pack's table
and the JSON.

Meta's activity log arrives as the Meta connector writes it (a ``META_`` resource type, the event
type as the operation, ``daily_budget: 75.00 -> 250.00``); its words are in a section of their own
at the end.

Microsoft Advertising's change history arrives as the Microsoft Advertising connector writes it
(the item changed as the resource type, one attribute as the report names it with its old and new
values, ``Daily budget: 1300.00 -> 2500.00``); its words are in the last section.
"""

from __future__ import annotations

import re
from collections.abc import Callable

_FIELD = re.compile(r"^\s*(?P<path>[A-Za-z0-9_.]+)\s*:\s*(?P<old>.+?)\s*->\s*(?P<new>.+?)\s*(?P<note>\([^()]*\))?\s*$")
_ROLE = re.compile(r"access_role\s*:\s*(?P<role>[A-Z_]+)\s*(?:\((?P<who>[^()]*)\))?", re.IGNORECASE)
_RESOURCES = {
    "CAMPAIGN_BUDGET": "budget",
    "CAMPAIGN": "campaign",
    "AD_GROUP": "ad group",
    "AD_GROUP_AD": "ad",
    "AD_GROUP_CRITERION": "keyword or targeting",
    "CAMPAIGN_CRITERION": "campaign targeting",
    "AD_GROUP_BID_MODIFIER": "bid adjustment",
    "CONVERSION_ACTION": "conversion action",
    "ASSET": "asset",
    "FEED": "feed",
}
_OPERATIONS = {"CREATE": "added", "UPDATE": "changed", "REMOVE": "removed"}

Money = Callable[[float, str], str]


def describe(change: dict, currency: str, money: Money) -> str:
    """The change in words (``money(amount, currency)`` writes an amount)."""
    resource = (change.get("resource_type") or "").upper()
    operation = (change.get("operation") or "").upper()
    fields = change.get("changed_fields") or ""
    if resource == "CUSTOMER_USER_ACCESS":
        return _access(operation, fields)
    if resource.startswith("META_"):
        return _meta(resource, change.get("operation") or "", fields, currency, money)
    microsoft = _microsoft(resource, operation, fields, currency, money)
    if microsoft is not None:
        return microsoft
    phrases = [_field(part, resource, operation, currency, money) for part in _split(fields)]
    phrases = [p for p in phrases if p]
    thing = _RESOURCES.get(resource, resource.replace("_", " ").lower() or "account")
    if not phrases:
        return f"{thing.capitalize()} {_OPERATIONS.get(operation, operation.lower() or 'changed')}"
    return "; ".join(dict.fromkeys(phrases))


def _split(fields: str) -> list[str]:
    """The comma-separated fields of a changed-fields text."""
    parts, depth, current = [], 0, []
    for i, char in enumerate(fields):
        depth += char == "("
        depth -= char == ")"
        # a comma between fields, not one inside brackets or a number (1,300.00)
        if char == "," and depth == 0 and re.match(r"\s*[A-Za-z_]", fields[i + 1 :]):
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    parts.append("".join(current))
    return [p.strip() for p in parts if p.strip()]


def _field(part: str, resource: str, operation: str, currency: str, money: Money) -> str:
    match = _FIELD.match(part)
    if not match:
        path, colon, value = part.partition(":")
        if colon and re.fullmatch(r"\s*[A-Za-z0-9_.]+\s*", path) and value.strip():  # a field and its one value
            lower = path.strip().lower()
            what = _bare(lower, resource, operation) if "keyword" in lower else _humane_path(lower).capitalize()
            return f"{what}: {value.strip()}"
        return _bare(part, resource, operation)
    path, old, new, note = match["path"].lower(), match["old"], match["new"], match["note"] or ""
    leaf = path.rsplit(".", 1)[-1]
    micros = leaf.endswith("_micros")
    leaf = leaf.removesuffix("_micros")
    suffix = f" {note}" if note else ""
    if leaf == "amount" and ("BUDGET" in resource or "budget" in path):
        before, after = _number(old, micros), _number(new, micros)
        if before is not None and after is not None:
            verb = "raised" if after > before else "lowered" if after < before else "set"
            return f"Budget {verb} from {money(before, currency)} to {money(after, currency)} a day{suffix}"
    if leaf in ("target_cpa", "cpc_bid", "cpm_bid", "cpv_bid", "target_cpm"):
        before, after = _number(old, micros), _number(new, micros)
        if before is not None and after is not None:
            title = {"target_cpa": "Target cost per lead", "cpc_bid": "Max cost per click"}.get(leaf, leaf.replace("_", " ").capitalize())
            return f"{title}: {money(before, currency)} → {money(after, currency)}{suffix}"
    if leaf == "target_roas":
        before, after = _number(old, False), _number(new, False)
        if before is not None and after is not None:
            return f"Target return on ad spend: {before:.0%} → {after:.0%}{suffix}"
    if leaf in ("bidding_strategy_type", "type") and "bidding" in path:
        return f"Bid strategy: {_enum(old)} → {_enum(new)}{suffix}"
    if leaf == "match_type":
        return f"Match type: {_enum(old).lower()} → {_enum(new).lower()}{suffix}"
    if leaf == "status":
        thing = _RESOURCES.get(resource, "campaign")
        verb = {"PAUSED": "Paused", "ENABLED": "Enabled", "REMOVED": "Removed"}.get(new.strip().upper())
        return f"{verb} the {thing}{suffix}" if verb else f"Status: {_enum(old)} → {_enum(new)}{suffix}"
    return f"{_humane_path(path)}: {old} → {new}{suffix}"


def _bare(path: str, resource: str, operation: str) -> str:
    """A changed field without its values: what kind of thing changed, in words."""
    lower = path.lower()
    verb = _OPERATIONS.get(operation, "changed")
    if "keyword.text" in lower or lower.endswith("keyword"):
        return {"added": "Added a keyword", "removed": "Removed a keyword"}.get(verb, "Changed a keyword")
    if "amount" in lower and ("BUDGET" in resource or "budget" in lower):
        return "Budget changed"
    if "bidding_strategy" in lower or "target_cpa" in lower or "target_roas" in lower:
        return "Bid strategy changed"
    if "match_type" in lower:
        return "Match type changed"
    if re.search(r"(^|[._])status$", lower):
        return "Status changed"
    if not re.fullmatch(r"[a-z0-9_.]+", lower):
        return path  # free text, as the history gave it
    thing = _RESOURCES.get(resource, resource.replace("_", " ").lower() or "account")
    return f"{thing.capitalize()}: {_humane_path(path)} {verb}"


def _access(operation: str, fields: str) -> str:
    match = _ROLE.search(fields)
    role = match["role"].replace("_", " ").lower() if match else ""
    who = (match["who"] if match and match["who"] else "").strip() or "a user"
    access = f"{role} access" if role else "access"
    if operation == "CREATE":
        return f"Gave {who} {access} to the account"
    if operation == "REMOVE":
        return f"Removed {who}'s {access} to the account"
    return f"Changed {who}'s access to the account" + (f" ({role})" if role else "")


def _number(text: str, micros: bool) -> float | None:
    try:
        value = float(text.replace(",", "").strip())
    except ValueError:
        return None
    return value / 1_000_000 if micros else value


def _enum(text: str) -> str:
    """``MAXIMIZE_CONVERSIONS`` → ``Maximize conversions``."""
    words = text.strip().replace("_", " ").lower()
    return words[:1].upper() + words[1:]


def _humane_path(path: str) -> str:
    """``ad_group_criterion.keyword.text`` → ``keyword text``."""
    parts = [p for p in path.lower().split(".") if p not in ("ad_group_criterion", "campaign_criterion", "campaign", "ad_group", "ad_group_ad", "ad")]
    return " ".join(p.replace("_", " ") for p in parts) or path


# ---------------------------------------------------------------------------------------------
# Meta: the activity log as ``connectors.meta_ads`` writes it. The resource type is the level that
# changed (META_CAMPAIGN, META_AD_SET, META_AD, META_AD_ACCOUNT, META_AUDIENCE), the operation
# Meta's event type (``update_campaign_budget``), and the changed fields one field with its old and
# new value (money already in the account's currency), or Meta's own words for the event.

_META_THINGS = {"META_CAMPAIGN": "campaign", "META_AD_SET": "ad set", "META_AD": "ad", "META_AD_ACCOUNT": "account", "META_AUDIENCE": "audience"}
#: Meta's bid strategies as Ads Manager names them now
_META_BID_STRATEGIES = {
    "LOWEST_COST_WITHOUT_CAP": "Highest volume",
    "LOWEST_COST_WITH_BID_CAP": "Bid cap",
    "COST_CAP": "Cost per result goal",
    "LOWEST_COST_WITH_MIN_ROAS": "ROAS goal",
}
_META_STATUS_VERBS = {"active": "Turned on", "enabled": "Turned on", "inactive": "Paused", "paused": "Paused",
                      "deleted": "Deleted", "archived": "Archived"}
#: events that carry no old and new value, in words
_META_EVENTS = {
    "create_campaign_group": "Created the campaign",
    "create_campaign_legacy": "Created an ad set",
    "create_ad_set": "Created an ad set",
    "create_ad": "Created an ad",
    "update_ad_set_target_spec": "Changed the ad set's targeting",
    "update_ad_targets_spec": "Changed the ad's targeting",
    "update_ad_creative": "Changed the ad's creative",
    "edit_and_update_ad_creative": "Changed the ad's creative",
    "ad_account_add_user_to_role": "Gave a user access to the account",
    "ad_account_remove_user_from_role": "Removed a user's access to the account",
    "campaign_ended": "The campaign ended",
    "ad_review_declined": "Meta rejected the ad",
    "ad_review_approved": "Meta approved the ad",
    "first_delivery_event": "Started delivering",
}


def _meta(resource: str, event: str, fields: str, currency: str, money: Money) -> str:
    thing = _META_THINGS.get(resource, "object")
    match = _FIELD.match(fields) if fields else None
    if match is None:
        known = _META_EVENTS.get(event.lower())
        if known:
            return known
        if fields:
            return fields  # Meta's own words for the event, as the log gave them
        words = event.replace("_", " ").strip().lower() or f"changed the {thing}"
        return words[:1].upper() + words[1:]
    field, old, new = match["path"].lower(), match["old"], match["new"]
    whose = "" if resource == "META_CAMPAIGN" else f"{thing.capitalize()} " if thing != "account" else "Account "
    if field in ("daily_budget", "lifetime_budget", "budget"):
        before, after = _number(old, False), _number(new, False)
        if before is not None and after is not None:
            verb = "raised" if after > before else "lowered" if after < before else "set"
            title = f"{whose}lifetime budget" if field == "lifetime_budget" else f"{whose}budget"
            tail = "" if field == "lifetime_budget" else " a day"
            return f"{title[:1].upper()}{title[1:]} {verb} from {money(before, currency)} to {money(after, currency)}{tail}"
        return f"{whose}budget changed".capitalize()
    if field in ("spend_cap", "bid_amount"):
        before, after = _number(old, False), _number(new, False)
        title = "Spending limit" if field == "spend_cap" else "Bid"
        title = f"{whose}{title.lower()}".capitalize() if whose else title
        if before is not None and after is not None:
            return f"{title}: {money(before, currency)} → {money(after, currency)}"
        return f"{title}: {old} → {new}"
    if field == "bid_strategy":
        return f"Bid strategy: {_meta_bid_strategy(old)} → {_meta_bid_strategy(new)}"
    if field == "status":
        verb = _META_STATUS_VERBS.get(new.strip().lower())
        if verb and thing != "account":
            return f"{verb} the {thing}"
        return f"{thing.capitalize()} status: {_enum(old)} → {_enum(new)}"
    if field == "name":
        return f"Renamed the {thing}: {old} → {new}"
    if field == "optimization_goal":
        return f"Optimization goal: {_enum(old)} → {_enum(new)}"
    return f"{_humane_path(field).capitalize()}: {old} → {new}"


def _meta_bid_strategy(value: str) -> str:
    key = value.strip().upper().replace(" ", "_")
    return _META_BID_STRATEGIES.get(key) or _enum(value)


# ---------------------------------------------------------------------------------------------
# Microsoft Advertising: the change history report as ``connectors.microsoft_ads`` writes it. The
# resource type is the item changed (CAMPAIGN, AD_GROUP, AD, KEYWORD, ...), the operation CREATE,
# UPDATE or REMOVE, and the changed fields one attribute as the report names it, in sentence case,
# with its old and new values (``Daily budget: 1300.00 -> 2500.00``, ``Status: Active -> Paused``,
# money as plain numbers, ``(empty)`` for no value), or the item added or deleted with its value
# (``Keyword: running shoes``); ``(38 keywords)`` follows when one edit changed many items alike.
# Google's fields are snake_case paths, so a field in sentence case is Microsoft's.

_MS_CHANGE = re.compile(r"^(?P<attribute>[A-Z][a-z]*(?:[ /-][A-Za-z]+)*)\s*:\s*(?P<values>.*?)(?:\s+(?P<note>\(\d+ [a-z][a-z ]*\)))?\s*$", re.S)
_MS_VALUES = re.compile(r"^(?P<old>.*?)\s+->\s+(?P<new>.*)$", re.S)
_MS_THINGS = {"CAMPAIGN": "campaign", "AD_GROUP": "ad group", "AD": "ad", "KEYWORD": "keyword", "ACCOUNT": "account"}
#: each keyword match type's max cost per click, as the change history names it
_MS_BIDS = {"Broad match bid": "broad match", "Exact match bid": "exact match", "Phrase match bid": "phrase match",
            "Content match bid": "content"}
#: a status or pause status that became this is the item paused, enabled or removed
_MS_STATUS_VERBS = {"paused": "Paused", "user paused": "Paused", "active": "Enabled", "not paused": "Enabled", "deleted": "Removed"}


def _microsoft(resource: str, operation: str, fields: str, currency: str, money: Money) -> str | None:
    """A Microsoft Advertising change in words; None for a change of another form."""
    match = _MS_CHANGE.match(fields)
    if match is None:
        return None
    attribute, values, note = match["attribute"], match["values"], match["note"]
    suffix = f" {note}" if note else ""
    thing = _MS_THINGS.get(resource, resource.replace("_", " ").lower() or "item")
    pair = _MS_VALUES.match(values)
    if pair is None:  # one value: an item added or removed whole, or what was added to or removed from an item
        value = _ms_value(values)
        if attribute == "User" and operation in ("CREATE", "REMOVE"):
            return f"Gave {value} access to the account" if operation == "CREATE" else f"Removed {value}'s access to the account"
        verb = {"CREATE": "Added", "REMOVE": "Removed"}.get(operation)
        what = attribute.lower()
        if verb:
            return f"{verb} {'an' if what[:1] in 'aeiou' else 'a'} {what}: {value}{suffix}"
        return f"{attribute}: {value}{suffix}"
    old, new = pair["old"].strip(), pair["new"].strip()
    if attribute == "Daily budget":
        before, after = _number(old, False), _number(new, False)
        if before is not None and after is not None:
            verb = "raised" if after > before else "lowered" if after < before else "set"
            return f"Budget {verb} from {money(before, currency)} to {money(after, currency)} a day{suffix}"
    default = attribute.startswith("Default ")
    bid = _MS_BIDS.get(attribute.removeprefix("Default ").capitalize())
    if bid is not None:
        before, after = _number(old, False), _number(new, False)
        if before is not None and after is not None:
            title = f"{'Default max' if default else 'Max'} cost per click ({bid})"
            return f"{title}: {money(before, currency)} → {money(after, currency)}{suffix}"
    if attribute == "Spend limit":
        before, after = _number(old, False), _number(new, False)
        if before is not None and after is not None:
            return f"Spending limit: {money(before, currency)} → {money(after, currency)}{suffix}"
    if attribute in ("Status", "Pause status"):
        verb = _MS_STATUS_VERBS.get(new.lower())
        if verb:
            return f"{verb} the {thing}{suffix}"
    if attribute == "Match type":
        return f"Match type: {_ms_value(old).lower()} → {_ms_value(new).lower()}{suffix}"
    return f"{attribute}: {_ms_value(old)} → {_ms_value(new)}{suffix}"


def _ms_value(value: str) -> str:
    return "none" if value.strip() == "(empty)" else value.strip()
