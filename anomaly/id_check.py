"""Account and campaign ids that the stored data has never seen, in rule scopes and silences.

A rule scoped to a mistyped account (``accounts: ["3307714461"]``) is valid and can never fire; a
silence on one holds nothing back. Neither is an error (the account may simply not have spent
yet), but each is worth a word, with the nearest ids the data does hold. With no data in the
store, nothing is said.
"""

from __future__ import annotations

import difflib
import re
from pathlib import Path

from anomaly.config import Config, RuleBase
from anomaly.config.loading import rule_problems
from anomaly.errors import Problem
from anomaly.store.known_ids import KnownIds

#: how many known ids a message lists when none is close to the one given
LISTED = 5
RULE_CANNOT_FIRE = "the rule cannot fire on it"
SILENCE_HOLDS_NOTHING = "the silence holds nothing back"


def _id(value: str) -> str:
    return value if re.fullmatch(r"[\w.-]+", value) else repr(value)


def _named(ids: list[str], names: dict[str, str]) -> str:
    return ", ".join(f"{_id(i)} ({names[i]})" for i in ids)


def unknown_account(account_id: str, known: KnownIds, consequence: str) -> str | None:
    """What to say of an account id the data has never held (None when it holds it, or holds nothing)."""
    if not known or account_id in known.accounts:
        return None
    return _unknown("account", account_id, known.accounts, consequence)


def unknown_campaign(campaign_id: str, known: KnownIds, consequence: str) -> str | None:
    """What to say of a campaign id the data has never held (None when it holds it, or holds nothing)."""
    if not known or campaign_id in known.campaigns:
        return None
    names = {c: f"{name}, {known.accounts.get(account, account)}" for c, (account, name) in known.campaigns.items()}
    return _unknown("campaign", campaign_id, names, consequence)


def _unknown(kind: str, value: str, names: dict[str, str], consequence: str) -> str:
    ratio = {known: difflib.SequenceMatcher(None, value, known).ratio() for known in names}
    close = sorted((known for known in names if ratio[known] >= 0.6), key=lambda known: (-ratio[known], known))[:3]
    if close:
        hint = f"did you mean {' or '.join(_named([c], names) for c in close)}?"
    else:
        listed = list(names)[:LISTED]
        more = f" and {len(names) - LISTED} more" if len(names) > LISTED else ""
        hint = f"the data holds {len(names)} {kind}{'s' if len(names) != 1 else ''}: {_named(listed, names)}{more}"
    return f"{kind} {_id(value)} is not in the store's data, so {consequence}; {hint}"


def silence_problems(account: str | None, campaign: str | None, known: KnownIds) -> dict[str, str]:
    """What to say of a silence's account and campaign, by matcher: ids the data has never held,
    or a campaign the data holds in another account than the one named."""
    said: dict[str, str] = {}
    if account is not None and (message := unknown_account(account, known, SILENCE_HOLDS_NOTHING)):
        said["account"] = message
    if campaign is not None and (message := unknown_campaign(campaign, known, SILENCE_HOLDS_NOTHING)):
        said["campaign"] = message
    elif campaign is not None and account is not None and "account" not in said and known:
        owner = known.campaigns[campaign][0]
        if owner != account:
            said["campaign"] = (
                f"campaign {_id(campaign)} ({known.campaigns[campaign][1]}) is in account {_id(owner)} ({known.accounts[owner]}), "
                f"not {_id(account)}, so {SILENCE_HOLDS_NOTHING}"
            )
    return said


def unknown_id_problems(config: Config, rules: list[RuleBase], known: KnownIds, config_path: Path) -> list[Problem]:
    """Every account and campaign id in the rules' scopes and the config's silences that the data
    has never held: in the rules as ``rules/x.yaml: line 16, rule r: scope.accounts[0]: …``."""
    if not known:
        return []
    found: dict[str, list[tuple[str, str]]] = {}
    for rule in rules:
        for j, account in enumerate(rule.scope.accounts):
            if message := unknown_account(account, known, RULE_CANNOT_FIRE):
                found.setdefault(rule.name, []).append((f"scope.accounts[{j}]", message))
        for j, campaign in enumerate(rule.scope.campaigns):
            if message := unknown_campaign(campaign, known, RULE_CANNOT_FIRE):
                found.setdefault(rule.name, []).append((f"scope.campaigns[{j}]", message))
    problems = rule_problems(Path(config.rules_dir), found)
    for i, silence in enumerate(config.alerts.silences):
        problems.extend(
            Problem(str(config_path), f"alerts.silences[{i}].{name}", message)
            for name, message in silence_problems(silence.account, silence.campaign, known).items()
        )
    return problems
