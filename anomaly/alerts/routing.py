"""Routing: which sinks an incident's notifications go to, and whom they mention there.

``alerts.routes`` are tried in order against the incident's payload; the first that matches
decides, unless it says ``continue: true``, and then the next matching one adds its sinks too. A
notification that no route matches goes to ``alerts.default_sinks``. A sink that no route and no
``default_sinks`` names gets every notification: the console or a JSON-lines log stays a complete
record. Without routes, every sink gets everything.

Routing is decided when a notification is enqueued, from the incident as it is then; an incident's
later notifications also go wherever its earlier ones went (see ``anomaly.incidents.reconcile``),
so that a thread that was started is finished.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from anomaly.config import SEVERITIES, AlertsConfig, RouteConfig
from anomaly.platforms import payload_platform

_RANK = {severity: rank for rank, severity in enumerate(SEVERITIES)}


@dataclass(frozen=True)
class Target:
    """A sink a notification goes to, with the Slack mentions it carries there."""

    sink: str
    mentions: tuple[str, ...] = ()


class Router:
    """The routes of ``alerts`` over the sinks configured by these names."""

    def __init__(self, alerts: AlertsConfig | None, sinks: Sequence[str]):
        self.routes: list[RouteConfig] = list(alerts.routes) if alerts is not None else []
        self.default_sinks: list[str] = list(alerts.default_sinks) if alerts is not None else []
        self.sinks = list(sinks)
        named = {name for route in self.routes for name in route.sinks} | set(self.default_sinks)
        self.everywhere = [name for name in self.sinks if name not in named]

    @classmethod
    def to_all(cls, sinks: Sequence[str]) -> "Router":
        """Every notification to every one of ``sinks``, with no mentions."""
        return cls(None, sinks)

    def targets(self, payload: dict) -> list[Target]:
        """Where a notification of the incident with ``payload`` goes, in the order of the sinks."""
        mentions: dict[str, list[str]] = {name: [] for name in self.everywhere}
        matched = False
        for route in self.routes:
            if not matches(route, payload):
                continue
            matched = True
            for name in route.sinks:
                mentions.setdefault(name, []).extend(route.mentions)
            if not route.continue_matching:
                break
        if not matched:
            for name in self.default_sinks:
                mentions.setdefault(name, [])
        return [Target(name, tuple(dict.fromkeys(mentions[name]))) for name in self.sinks if name in mentions]


def matches(route: RouteConfig, payload: dict) -> bool:
    """Whether every matcher the route gives matches the incident's payload."""
    if route.account and str(payload.get("account_id")) not in route.account:
        return False
    if route.platform and payload_platform(payload) not in route.platform:
        return False
    if route.party:
        party = payload.get("party_now") if route.party_at == "now" else payload.get("managing_party")
        if party not in route.party:
            return False
    if route.severity is not None and _RANK.get(payload.get("severity"), -1) < _RANK[route.severity]:
        return False
    return True
