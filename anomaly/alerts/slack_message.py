"""Slack Block Kit messages for incidents: the main alert, the replies in its thread, and one
grouped message when an account opens many incidents in one cycle; and a handover's message.

Names of accounts, campaigns, users and parties, changed values, rule names and currency codes are
untrusted: a campaign called ``<!channel>`` must not ping a channel, ``<https://x|Budget>`` must
not become a disguised link, and a line break in a name must not start a line that looks like
ours. Every such text is kept on one line (line breaks and control characters become spaces,
bidirectional controls are dropped) and escaped before it reaches a ``mrkdwn`` field (``&``, ``<``
and ``>`` only, ``&`` first); in ``plain_text`` fields angle brackets become look-alikes. Block Kit
limits (150-character header, 3,000-character section text, 10 fields of 2,000 characters, 50
blocks, 4,000-character fallback text) are met by construction: long texts are cut, never
rejected, never inside an escape sequence, and never so that a route's mentions are lost.

The blocks are built with ``slack_sdk.models.blocks`` and serialised with ``to_dict()``, which
runs the SDK's own validators. Nothing here sends anything; a sink passes
``SlackMessage.as_kwargs()`` to ``WebClient.chat_postMessage``.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import quote

from slack_sdk.models.blocks import (
    ActionsBlock,
    Block,
    ButtonElement,
    ContextBlock,
    HeaderBlock,
    MarkdownTextObject,
    PlainTextObject,
    SectionBlock,
)

from anomaly.alerts.change_words import describe
from anomaly.alerts.render import (
    MAX_HANDOVER_CAMPAIGNS,
    excess_split,
    fits,
    handover_title,
    handover_what,
    headline,
    how_worse,
    label,
    lower_first,
    money,
    next_step,
    party_namer,
    reference_value,
    settled_text,
    total_excess,
    what_happened,
)
from anomaly.config import _MENTION, Config
from anomaly.errors import AnomalyError
from anomaly.platforms import PLATFORMS, payload_platform, platform_label

MAX_BLOCKS = 50
HEADER_CHARS = 150
SECTION_CHARS = 3000
FIELD_CHARS = 2000
TEXT_CHARS = 4000

MAX_CHANGES = 5
CHANGE_LINE_CHARS = 500  # MAX_CHANGES lines, a title and the "… and N more" line fit in a section
MAX_GROUP_LINES = 20
GROUP_LINE_CHARS = 140  # MAX_GROUP_LINES lines and the "… and N more" line fit in a section
GROUP_NAME_CHARS = 60  # a long campaign name must leave room for the excess on its line
LINK_LABEL = "Open the campaign"  # … in Google Ads, … in Meta Ads Manager: in its platform's interface

Namer = Callable[[str | None], str]


@dataclass(frozen=True)
class SlackMessage:
    """What ``chat.postMessage`` / ``chat.update`` take: fallback text and the blocks."""

    text: str
    blocks: list[dict]

    def as_kwargs(self) -> dict:
        """Keyword arguments for ``WebClient.chat_postMessage(channel=..., **message.as_kwargs())``."""
        return {"text": self.text, "blocks": self.blocks}


# ---------------------------------------------------------------------------------------------
# Untrusted text


def escape(text: str) -> str:
    """Escape untrusted text for mrkdwn: ``&``, ``<`` and ``>`` become entities, nothing else."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


#: line breaks and other control characters (C0, DEL, C1, the Unicode line and paragraph separators)
_CONTROLS = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]+")
#: bidirectional embeddings, overrides and isolates (U+202A–U+202E, U+2066–U+2069); the marks
#: U+200E and U+200F, which reorder nothing beyond themselves, stay
_BIDI_CONTROLS = re.compile("[\u202a-\u202e\u2066-\u2069]")


def one_line(text: str) -> str:
    """Untrusted text kept on its line: each run of line breaks and other control characters
    becomes one space, so that a name cannot start a line of its own in a message (a second
    "Next step", a quote, a list item); bidirectional controls are dropped, since one would also
    reverse the text of ours that follows it on the line."""
    return _CONTROLS.sub(" ", _BIDI_CONTROLS.sub("", text))


def _untrusted(text: str) -> str:
    """Untrusted text for mrkdwn: kept on one line (``one_line``), then escaped (``escape``)."""
    return escape(one_line(text))


def _plain(text: str) -> str:
    """Untrusted text for a plain_text field, kept on one line (``one_line``).

    Slack parses markup, mentions such as ``<!channel>`` and ``<url|label>`` links included, only
    in ``mrkdwn`` text objects (Block Kit reference, "Text object": the text "accepts any of the
    standard text formatting markup when type is mrkdwn"); a header is ``plain_text`` only, so it
    takes no entity escaping and shows no live mention. Angle brackets still become look-alikes
    (‹ ›) so that no control sequence travels in the message at all, whatever renders it.
    """
    return one_line(text).replace("<", "‹").replace(">", "›")


def _clip(text: str, limit: int) -> str:
    """``text`` (escaped mrkdwn) cut to ``limit`` characters with "…", never inside ``&amp;``."""
    if len(text) <= limit:
        return text
    cut = text[: limit - 1]
    amp = cut.rfind("&")
    if amp != -1 and ";" not in cut[amp:]:
        cut = cut[:amp]
    return cut + "…"


def _clip_plain(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _link(url: str, label: str) -> str:
    """A mrkdwn link built by us to a URL we built: its ``|``, ``<``, ``>`` and spaces (any
    whitespace or control character) percent-encoded, so nothing in it can end the link early."""
    safe_url = "".join(quote(ch, safe="") if ch in "|<>" or ch.isspace() or ord(ch) < 32 else ch for ch in url)
    return f"<{safe_url}|{escape(label)}>"


def _mrkdwn(text: str) -> MarkdownTextObject:
    # verbatim: Slack must not turn plain words in names (@here, #general, bare URLs) into
    # mentions or links; our own <url|label> links are still processed
    return MarkdownTextObject(text=text, verbatim=True)


def mention_text(payload: dict) -> str:
    """The mentions a route put on the notification (``payload["mentions"]``) as Slack syntax:
    ``<@U0123ABCD>`` for a user, ``<!subteam^S0123ABCD>`` for a user group, ``<!here>``,
    ``<!channel>``; "" for none. They come from config.yaml, never from data, and each is checked
    against the forms config accepts again here, so nothing else can become a mention."""
    out = []
    for mention in payload.get("mentions") or []:
        if not isinstance(mention, str) or not _MENTION.match(mention):
            continue
        if mention in ("here", "channel"):
            out.append(f"<!{mention}>")
        elif mention.startswith("S"):
            out.append(f"<!subteam^{mention}>")
        else:
            out.append(f"<@{mention}>")
    return " ".join(out)


def campaign_link(payload: dict, config: Config | None) -> str | None:
    """The campaign's page in its platform's interface, from ``alerts.campaign_url``, when the
    ids have the platform's shape; None otherwise, for an unknown platform and for an account
    total."""
    platform = PLATFORMS.get(payload_platform(payload))
    if platform is None or config is None:
        return None
    template = config.alerts.campaign_url_for(platform.key)
    return platform.link(template, str(payload.get("account_id") or ""), str(payload.get("campaign_id") or ""))


# ---------------------------------------------------------------------------------------------
# Pieces of text


def _namer(config: Config | None) -> Namer:
    return party_namer(config)


def _date(value: str | None) -> dt.date | None:
    return dt.date.fromisoformat(value) if value else None


def _day(value: str | None, now: dt.date) -> str:
    """``Fri Jul 10``; the year too when it is not the year of ``now``."""
    day = _date(value)
    if day is None:
        return "?"
    return f"{day:%a %b} {day.day}" + (f", {day.year}" if day.year != now.year else "")


def _month_day(value: str, now: dt.date) -> str:
    day = dt.date.fromisoformat(value)
    return f"{day:%b} {day.day}" + (f", {day.year}" if day.year != now.year else "")


def _money(amount: float | None, currency: str) -> str:
    return _untrusted(money(amount, currency))


def _leads(value: float) -> str:
    count = f"{value:,.0f}" if float(value).is_integer() else f"{value:,.1f}"
    return f"{count} lead{'' if value == 1 else 's'}"


def _is_resolved(event: str, payload: dict) -> bool:
    return event == "resolved" or payload.get("status") == "resolved"




def _by_party(payload: dict) -> list[tuple[str, float]]:
    """Excess cost by party, largest first, parties with none left out."""
    shares = [(party, amount) for party, amount in payload.get("excess_by_party", {}).items() if amount > 0]
    return sorted(shares, key=lambda item: -item[1])


def _field(title: str, value: str) -> MarkdownTextObject:
    """A bold title over an escaped value, within the field limit."""
    head = f"*{title}*\n"
    return _mrkdwn(head + _clip(value, FIELD_CHARS - len(head)))


def _header(text: str) -> HeaderBlock:
    return HeaderBlock(text=PlainTextObject(text=_clip_plain(_plain(text), HEADER_CHARS)))


def _section(text: str) -> SectionBlock:
    return SectionBlock(text=_mrkdwn(_clip(text, SECTION_CHARS)))


def _context(*texts: str) -> ContextBlock:
    return ContextBlock(elements=[_mrkdwn(_clip(text, SECTION_CHARS)) for text in texts])


def _message(text: str, blocks: list[Block]) -> SlackMessage:
    return SlackMessage(text=_clip(text, TEXT_CHARS), blocks=[block.to_dict() for block in blocks])


# ---------------------------------------------------------------------------------------------
# The main alert


def build_alert(
    event: str,
    payload: dict,
    config: Config | None = None,
    *,
    campaign_url: str | None = None,
    now: dt.date | None = None,
) -> SlackMessage:
    """The main message of an incident: posted when it opens, rewritten when it is updated or resolved.

    ``payload`` is ``Incident.payload()`` plus ``incident_id``. ``now`` only decides whether dates
    show their year (default: the detection day). ``campaign_url`` links the campaign (default:
    ``campaign_link``). The route's mentions (``payload["mentions"]``) go with the next step, and
    at the end of the fallback text so that a notification shows them; a resolved alert has none.
    """
    now = now or _date(payload["detected_on"]) or dt.date.today()
    name = _namer(config)
    resolved = _is_resolved(event, payload)
    mentions = "" if resolved else mention_text(payload)
    blocks: list[Block] = [
        _header(("RESOLVED: " if resolved else f"{payload['severity'].capitalize()}: ") + headline(payload)),
        SectionBlock(fields=_alert_fields(payload, name, now)),
        _section(_changes_text(payload, name, config)),
        _section(_next_step_text(payload, name, resolved, campaign_url or campaign_link(payload, config), now, mentions)),
        *(_alert_actions(payload, now) if interactive(config) and not resolved else []),
        _context(_rule_line(payload), _where_line(payload)),
    ]
    return _message(_with_mentions(_alert_text(event, payload, name), mentions), blocks)


def _with_mentions(text: str, mentions: str, limit: int = TEXT_CHARS) -> str:
    """``text`` ending in the mentions, within ``limit`` characters: a cut shortens the text (which
    may hold long names), never the mentions."""
    if not mentions:
        return _clip(text, limit)
    return _clip(text, limit - len(mentions) - 1) + " " + mentions


def _reply(text: str, mentions: str = "") -> SlackMessage:
    """A one-section message of ``text`` ending in ``mentions``, in the section and the fallback."""
    return _message(_with_mentions(text, mentions), [_section(_with_mentions(text, mentions, SECTION_CHARS))])


def _alert_fields(payload: dict, name: Namer, now: dt.date) -> list[MarkdownTextObject]:
    currency = payload["currency"]
    base = payload.get("baseline_cpl")
    if payload["leads"] > 0:
        ratio = f" ({payload['cpl'] / base:.1f}×)" if base else ""
        cpl = f"{_money(payload['cpl'], currency)} vs {_money(base, currency)} baseline{ratio}"
    else:
        cpl = f"no leads vs {_money(base, currency)} baseline"
    spend = f"{_money(payload['spend'], currency)} / {_leads(payload['leads'])} since onset, through {_day(payload['last_active'], now)}"
    excess = f"~{_money(payload['excess_cost'], currency)} estimated"
    split = excess_split(payload, _money)
    if split:
        excess += "\n" + split
    shares = _by_party(payload)
    if len(shares) > 1:
        excess += "\n" + " · ".join(f"{_untrusted(name(party))} {_money(amount, currency)}" for party, amount in shares)
    detected = payload["detected_on"]
    same_day = "detected the same day" if detected == payload["onset"] else f"detected {_day(detected, now)}"
    return [
        _field("Cost per lead", cpl),
        _field("Spend / leads", spend),
        _field("Excess cost", excess),
        _field("Managed by", _managed_by(payload, name, now)),
        _field("Onset", f"{_day(payload['onset'], now)}, {same_day}"),
        _field("Severity", _severity(payload, now)),
    ]


def _managed_by(payload: dict, name: Namer, now: dt.date) -> str:
    managing = _untrusted(name(payload["managing_party"]))
    since = payload.get("party_since")
    if not since:
        return managing
    gap = (dt.date.fromisoformat(payload["onset"]) - dt.date.fromisoformat(since)).days
    if gap == 0:
        when = "the day of onset"
    elif gap > 0:
        when = f"{gap} day{'s' if gap != 1 else ''} before onset"
    else:
        when = f"{-gap} day{'s' if gap != -1 else ''} after onset"
    return f"{managing}, since {_month_day(since, now)} — {when}"


def _severity(payload: dict, now: dt.date) -> str:
    severity = _untrusted(payload["severity"].capitalize())
    opening = payload.get("opening_severity") or payload["severity"]
    if opening == payload["severity"]:
        return severity
    since = f" since {_day(payload['critical_on'], now)}" if payload.get("critical_on") else ""
    return f"{severity}{since} (opened as {_untrusted(opening)})"


def _window(config: Config | None) -> str:
    days = config.detection.incidents.changes_before_onset_days if config is not None else 7
    return {0: "the day of onset", 1: "the day before onset", 7: "the week before onset"}.get(days, f"the {days} days before onset")


def _changes_text(payload: dict, name: Namer, config: Config | None) -> str:
    """Who changed what shortly before onset: the latest few, oldest first, then how many more."""
    changes = payload.get("changes", [])
    if not changes:
        return f"No changes recorded in {_window(config)}"
    shown = changes[-MAX_CHANGES:]
    lines = [f"*Changes from {_window(config)} to detection ({len(changes)})*"]
    currency = payload.get("currency", "USD")
    for change in shown:
        fit = fits(change, payload)
        lines.append(_clip(_change_line(change, name, currency), CHANGE_LINE_CHARS - len(fit)) + _untrusted(fit))
    if len(changes) > len(shown):
        lines.append(f"… and {len(changes) - len(shown)} more, earlier")
    return "\n".join(lines)


def _change_line(change: dict, name: Namer, currency: str = "USD") -> str:
    at = dt.datetime.fromisoformat(change["changed_at"])
    who = change["user_email"] or change.get("client_type") or "no user"
    what = describe(change, currency, money)
    return f"• {at:%a %b} {at.day} {at:%H:%M} · {_untrusted(who)} ({_untrusted(name(change['party']))}): {_untrusted(what)}"


def _next_step_text(payload: dict, name: Namer, resolved: bool, campaign_url: str | None, now: dt.date, mentions: str = "") -> str:
    if resolved:
        text = f"*Resolved* {_day(payload.get('resolved_on'), now)}"
    else:
        text = _with_mentions(f"*Next step:* {_untrusted(next_step(payload, name))}", mentions, SECTION_CHARS)
    if campaign_url:
        platform = PLATFORMS.get(payload_platform(payload))
        link = _link(campaign_url, f"{LINK_LABEL} in {platform.interface}" if platform else LINK_LABEL)
        if len(text) + 1 + len(link) <= SECTION_CHARS:  # a cut link would be broken: leave it out
            text += "\n" + link
    return text


def _rule_line(payload: dict) -> str:
    parts = [payload["rule"], payload["family"], payload["severity"], f"incident {payload.get('incident_id', '?')}"]
    return " · ".join(_untrusted(str(part)) for part in parts)


def _where_line(payload: dict) -> str:
    """The platform, and the full names and ids, which a long name may have cut from the header."""
    label = platform_label(payload_platform(payload))
    account = (f"{label} · " if label else "") + f"{_untrusted(payload['account_name'])} ({_untrusted(payload['account_id'])})"
    if not payload["campaign_id"]:
        return f"{account} / all campaigns of the account"
    return f"{account} / {_untrusted(payload['campaign_name'])} ({_untrusted(payload['campaign_id'])})"


def _alert_text(event: str, payload: dict, name: Namer) -> str:
    """One line for notifications: ``[CRITICAL] <headline>: excess ~$1,383, managed by Beacon Reach``."""
    excess = _money(payload["excess_cost"], payload["currency"])
    managing = _untrusted(name(payload["managing_party"]))
    return f"{_untrusted(label(event, payload))} {_untrusted(headline(payload))}: excess ~{excess}, managed by {managing}"


# ---------------------------------------------------------------------------------------------
# Thread replies


def build_thread_reply(event: str, payload: dict, config: Config | None = None) -> SlackMessage:
    """The short reply in the alert's thread when an incident worsens (``updated``, with the
    route's mentions) or resolves."""
    return _reply(_reply_line(event, payload, config), mention_text(payload) if event == "updated" else "")


def _reply_line(event: str, payload: dict, config: Config | None) -> str:
    """A thread reply's text, without mentions."""
    if event not in ("updated", "resolved"):
        raise AnomalyError(f"a thread reply is for an 'updated' or 'resolved' incident, got event {event!r}")
    name = _namer(config)
    currency = payload["currency"]
    excess = _money(payload["excess_cost"], currency)
    if event == "updated":
        worse = _untrusted(how_worse(payload))
        return f"{worse[0].upper()}{worse[1:]}: {_untrusted(lower_first(what_happened(payload)))}, excess ~{excess} so far"
    now = _date(payload.get("resolved_on")) or _date(payload["detected_on"]) or dt.date.today()
    shares = "".join(f", {_money(amount, currency)} under {_untrusted(name(party))}" for party, amount in _by_party(payload))
    return f"Resolved on {_day(payload.get('resolved_on'), now)}: excess ~{excess} in all{shares}{_untrusted(settled_text(payload, _money, name))}"


# ---------------------------------------------------------------------------------------------
# Grouped incidents


def build_group(payloads: list[dict], config: Config | None = None) -> SlackMessage:
    """One message for many incidents opened on one account in one cycle, largest excess first."""
    if not payloads:
        raise AnomalyError("a grouped message needs at least one incident, got none")
    ordered = sorted(payloads, key=lambda p: -p["excess_cost"])
    title = _group_title(ordered)
    worst = "critical" if any(p["severity"] == "critical" for p in ordered) else ordered[0]["severity"]
    total = _total_excess(ordered)
    mentions = _group_mentions(ordered)
    blocks: list[Block] = [
        _header(title),
        _section(_group_lines(ordered)),
        _section(_with_mentions(f"*Total excess:* ~{total} estimated across {len(ordered)} incidents", mentions, SECTION_CHARS)),
        *(_group_actions(ordered) if interactive(config) else []),
        _context(_group_context(ordered, worst)),
    ]
    return _message(_with_mentions(f"[{_untrusted(worst.upper())}] {_untrusted(title)}: excess ~{total} in all", mentions), blocks)


def _group_mentions(payloads: list[dict]) -> str:
    """Every mention of the incidents' routes, each once."""
    return mention_text({"mentions": list(dict.fromkeys(m for p in payloads for m in p.get("mentions") or []))})


def build_group_reminder(payloads: list[dict], config: Config | None = None) -> SlackMessage:
    """One reply, in a grouped message's thread, for its incidents that are still open and not
    acknowledged when their reminders fall due together: how many, the excess so far, one line
    each (largest first), and every route's mentions once."""
    if not payloads:
        raise AnomalyError("a grouped reminder needs at least one incident, got none")
    ordered = sorted(payloads, key=lambda p: -p["excess_cost"])
    count = len(ordered)
    text = f"{REMINDER_LEAD}: {count} incident{'s' if count != 1 else ''} of this group, excess ~{_total_excess(ordered)} so far"
    mentions = _group_mentions(ordered)
    return _message(_with_mentions(text, mentions), [_section(_with_mentions(text, mentions, SECTION_CHARS)), _section(_group_lines(ordered))])


def _group_title(payloads: list[dict]) -> str:
    """``40 cost-per-lead incidents — Harbor Dental Group`` (not escaped)."""
    families = {p["family"] for p in payloads}
    kind = f"{families.pop().replace('_', '-')} " if len(families) == 1 else ""
    accounts = {p["account_name"] for p in payloads}
    where = accounts.pop() if len(accounts) == 1 else f"{len(accounts)} accounts"
    count = len(payloads)
    return f"{count} {kind}incident{'s' if count != 1 else ''} — {where}"


def _group_lines(payloads: list[dict]) -> str:
    shown = payloads[:MAX_GROUP_LINES]
    lines = [_clip(_group_line(payload), GROUP_LINE_CHARS) for payload in shown]
    if len(payloads) > len(shown):
        lines.append(f"… and {len(payloads) - len(shown)} more")
    return "\n".join(lines)


def _group_line(payload: dict) -> str:
    campaign = _untrusted(_clip_plain(payload["campaign_name"], GROUP_NAME_CHARS))
    what = _untrusted(lower_first(what_happened(payload)))
    excess = _money(payload["excess_cost"], payload["currency"])
    return f"• {campaign}: {what}, excess ~{excess} ({_untrusted(payload['severity'])})"


def _total_excess(payloads: list[dict]) -> str:
    """``total_excess``, escaped (currency codes come from data)."""
    return _untrusted(total_excess(payloads))


def _group_context(payloads: list[dict], worst: str) -> str:
    rules = ", ".join(sorted({p["rule"] for p in payloads}))
    families = ", ".join(sorted({p["family"] for p in payloads}))
    ids = [str(p["incident_id"]) for p in payloads if p.get("incident_id") is not None]
    parts = [rules, families, worst] + ([f"incidents {', '.join(ids)}"] if ids else [])
    return " · ".join(_untrusted(part) for part in parts)


# ---------------------------------------------------------------------------------------------
# Reminders, and replies in a grouped message's thread

REMINDER_LEAD = "Still open and not acknowledged"


def build_reminder_reply(payload: dict, config: Config | None = None, *, standalone: bool = False) -> SlackMessage:
    """The reply, broadcast to the channel, when an incident stays open and unacknowledged:
    ``Still open and not acknowledged: cost per lead 5.6× baseline, excess ~$2,140 so far`` and the
    route's mentions. ``standalone``: a message outside the alert's thread (an incoming webhook),
    which therefore also says where (``… 5.6× baseline — Harbor Dental Group / Generic - Leads``)."""
    return _reply(_reminder_line(payload, standalone), mention_text(payload))


def _reminder_line(payload: dict, standalone: bool = False) -> str:
    excess = _money(payload["excess_cost"], payload["currency"])
    what = headline(payload) if standalone else lower_first(what_happened(payload))
    return f"{REMINDER_LEAD}: {_untrusted(what)}, excess ~{excess} so far"


def build_group_reply(event: str, payload: dict, config: Config | None = None) -> SlackMessage:
    """A reply in a grouped message's thread about one of its incidents (``updated``,
    ``resolved`` or ``reminder``), naming the campaign, since the grouped message lists many:
    ``*Generic - Leads*: Now critical: cost per lead 6.8× baseline, excess ~$3,839 so far``."""
    line = _reminder_line(payload) if event == "reminder" else _reply_line(event, payload, config)
    mentions = mention_text(payload) if event in ("reminder", "updated") else ""
    name = payload["campaign_name"] if payload.get("campaign_id") else f"{payload['account_name']} (all campaigns)"
    where = f"*{_untrusted(_clip_plain(name, GROUP_NAME_CHARS))}*"
    incident = payload.get("incident_id")
    if incident is not None:
        where += f" (incident {_untrusted(str(incident))})"
    return _reply(f"{where}: {line}", mentions)


# ---------------------------------------------------------------------------------------------
# Buttons (handled by anomaly.alerts.slack_app)

ACK = "incident_ack"
SNOOZE_24H = "incident_snooze_24h"
SNOOZE_7D = "incident_snooze_7d"
GROUP_ACK = "group_ack"
GROUP_SNOOZE_24H = "group_snooze_24h"
GROUP_SNOOZE_7D = "group_snooze_7d"
ACTIONS_BLOCK = "incident_actions"  # the buttons
ACKNOWLEDGED_BLOCK = "incident_acknowledged"  # "Acknowledged by …", in place of the Acknowledge button
SNOOZED_BLOCK = "incident_snoozed"  # "Snoozed for 24 h by …", once snoozed from Slack
BUTTON_VALUE_CHARS = 2000

_SLACK_USER = re.compile(r"^slack:([UW][A-Z0-9]{2,})(?: \(.*\))?$", re.DOTALL)


def interactive(config: Config | None) -> bool:
    """Whether alerts carry the Acknowledge and Snooze buttons: only when ``alerts.slack_app``
    is configured, since nothing else would answer a click."""
    return config is not None and config.alerts.slack_app is not None


def who_text(who: str) -> str:
    """Who acknowledged or snoozed, for mrkdwn: a Slack user stored as ``slack:U0123ABCD (Dana)``
    becomes the mention ``<@U0123ABCD>`` (Slack shows the current name); anything else is escaped."""
    user = _SLACK_USER.match(who)
    return f"<@{user.group(1)}>" if user else _untrusted(who)


def moment_text(at: dt.datetime, today: dt.date) -> str:
    """``09:30 UTC`` for a naive-UTC time on ``today``; ``09:30 UTC on Sat Jul 11`` otherwise."""
    time = f"{at:%H:%M} UTC"
    return time if at.date() == today else f"{time} on {_day(at.date().isoformat(), today)}"


def acknowledged_text(who: str, at: dt.datetime, today: dt.date) -> str:
    """``Acknowledged by <@U0123ABCD> at 09:30 UTC`` (``at`` naive UTC)."""
    return f"Acknowledged by {who_text(who)} at {moment_text(at, today)}"


def _acknowledged(payload: dict) -> tuple[str, dt.datetime] | None:
    who, at = payload.get("acknowledged_by"), payload.get("acknowledged_at")
    if not who or not at:
        return None
    return str(who), at if isinstance(at, dt.datetime) else dt.datetime.fromisoformat(str(at))


def _button(text: str, action_id: str, value: str, style: str | None = None) -> ButtonElement:
    return ButtonElement(text=PlainTextObject(text=text), action_id=action_id, value=value, style=style)


def _actions(ack: tuple[str, dt.datetime] | None, today: dt.date, buttons: list[ButtonElement]) -> list[Block]:
    """The buttons, the first (Acknowledge) replaced by who acknowledged and when, if someone did."""
    if ack is None:
        return [ActionsBlock(block_id=ACTIONS_BLOCK, elements=buttons)]
    line = ContextBlock(block_id=ACKNOWLEDGED_BLOCK, elements=[_mrkdwn(_clip(acknowledged_text(*ack, today), SECTION_CHARS))])
    return [line, ActionsBlock(block_id=ACTIONS_BLOCK, elements=buttons[1:])]


def _alert_actions(payload: dict, now: dt.date) -> list[Block]:
    if payload.get("incident_id") is None:
        return []
    value = str(payload["incident_id"])
    buttons = [
        _button("Acknowledge", ACK, value, "primary"),
        _button("Snooze 24h", SNOOZE_24H, value),
        _button("Snooze 7d", SNOOZE_7D, value),
    ]
    return _actions(_acknowledged(payload), now, buttons)


def _group_actions(payloads: list[dict]) -> list[Block]:
    """"Acknowledge all" and the account's snoozes for the open incidents of a group; none when
    the ids would not fit a button's value. Acknowledged when every one of them is (the first
    acknowledgement shown)."""
    open_ones = [p for p in payloads if p.get("incident_id") is not None and not _is_resolved("", p)]
    value = ",".join(str(p["incident_id"]) for p in open_ones)
    if not open_ones or len(value) > BUTTON_VALUE_CHARS:
        return []
    acks = [_acknowledged(p) for p in open_ones]
    first = min(acks, key=lambda ack: ack[1]) if all(acks) else None
    today = _date(open_ones[0]["detected_on"]) or dt.date.today()
    buttons = [
        _button("Acknowledge all", GROUP_ACK, value, "primary"),
        _button("Snooze account 24h", GROUP_SNOOZE_24H, value),
        _button("Snooze account 7d", GROUP_SNOOZE_7D, value),
    ]
    return _actions(first, today, buttons)


# ---------------------------------------------------------------------------------------------
# Handovers

HANDOVER_LINE_CHARS = 140  # MAX_HANDOVER_CAMPAIGNS lines, a title and the "… and N more" line fit in a section
HANDOVER_NAME_CHARS = 60  # a long campaign name must leave room for its figures on its line


def build_handover(payload: dict, config: Config | None = None, *, now: dt.date | None = None) -> SlackMessage:
    """A handover's message: who handed what over to whom, since when, and each campaign's
    reference figures over the weeks before it, one short line each (a phone shows it whole).
    ``payload`` is ``anomaly.handover.handover_payload`` plus ``handover_id``; the route's
    mentions (``payload["mentions"]``) end the first section and the fallback text."""
    now = now or _date(payload["detected_on"]) or dt.date.today()
    name = _namer(config)
    mentions = mention_text(payload)
    platform = platform_label(payload_platform(payload))
    where = f"*{_untrusted(payload['account_name'])}* ({_untrusted(payload['account_id'])})" + (f" on {platform}" if platform else "")
    what = _untrusted(handover_what(payload, name))
    lead = (
        f"{where}, {what}, is managed by *{_untrusted(name(payload['to_party']))}* since *{_day(payload['since'], now)}*, "
        f"handed over by *{_untrusted(name(payload['from_party']))}*."
    )
    blocks: list[Block] = [
        _header(f"Handover: {handover_title(payload, name)}"),
        _section(_with_mentions(lead, mentions, SECTION_CHARS)),
        _section(_reference_text(payload, now)),
        _context(_handover_context(payload)),
    ]
    text = f"Handover: {_untrusted(handover_title(payload, name))}, since {_day(payload['since'], now)}"
    return _message(_with_mentions(text, mentions), blocks)


def _reference_text(payload: dict, now: dt.date) -> str:
    reference = payload["reference"]
    currency = payload["currency"]
    weeks = reference["days"] / 7
    span = f"{weeks:g} weeks" if float(weeks).is_integer() else f"{reference['days']} days"
    title = f"*Before the handover* ({span}, {_month_day(reference['from'], now)} – {_month_day(reference['to'], now)}), kept as the reference:"
    campaigns = reference["campaigns"]
    if not campaigns:
        return title + "\nNo campaign has data in those days."
    lines = [_reference_line(c["campaign_name"], c, currency) for c in campaigns[:MAX_HANDOVER_CAMPAIGNS]]
    if len(campaigns) > MAX_HANDOVER_CAMPAIGNS:
        lines.append(f"… and {len(campaigns) - MAX_HANDOVER_CAMPAIGNS} more")
    if len(campaigns) > 1 and reference.get("total"):
        lines.append(_reference_line(f"All {len(campaigns)} campaigns", reference["total"], currency))
    return title + "\n" + "\n".join(lines)


def _reference_line(campaign_name: str, figures: dict, currency: str) -> str:
    """``• *Generic - Leads*: $103/lead · $3.97/click · 3.85% convert · $1,012/day · 9.8 leads/day``."""
    label = _clip(_untrusted(campaign_name), HANDOVER_NAME_CHARS)
    parts = [
        f"{_untrusted(reference_value('cpl', figures, currency))}/lead",
        f"{_untrusted(reference_value('cpc', figures, currency))}/click",
        f"{reference_value('cvr', figures, currency)} convert",
        f"{_untrusted(reference_value('daily_spend', figures, currency))}/day",
        f"{reference_value('leads_per_day', figures, currency)} leads/day",
    ]
    return _clip(f"• *{label}*: " + " · ".join(parts), HANDOVER_LINE_CHARS)


def _handover_context(payload: dict) -> str:
    label = platform_label(payload_platform(payload))
    account = (f"{label} · " if label else "") + f"{_untrusted(payload['account_name'])} ({_untrusted(payload['account_id'])})"
    if payload.get("campaign_id"):
        account += f" / {_untrusted(payload.get('campaign_name') or '')} ({_untrusted(payload['campaign_id'])})"
    return f"{account} · handover {payload.get('handover_id', '?')}"
