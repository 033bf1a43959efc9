"""Plain-text rendering of an alert: what, where, how bad in money, who manages it, since when,
what changed, what to do. Used by the console sink and as the text of every other sink."""

from __future__ import annotations

import datetime as dt

from anomaly.alerts.change_words import describe
from anomaly.config import Config
from anomaly.mechanism import CONVERSION_RATE, COST_PER_CLICK, SPEND, TRACKING, VOLUME, change_explains, stopped
from anomaly.platforms import payload_platform, platform_label

SYMBOLS = {"USD": "$", "EUR": "€", "GBP": "£", "AUD": "A$", "CAD": "C$", "NZD": "NZ$"}
MAX_CHANGES = 5
#: The band drawn around a baseline cost per lead (±30%), on the alert's chart and in reports.
BASELINE_BAND = 0.3


def money(amount: float | None, currency: str) -> str:
    if amount is None:
        return "n/a"
    text = f"{amount:,.0f}" if abs(amount) >= 100 else f"{amount:,.2f}"
    symbol = SYMBOLS.get(currency)
    return f"{symbol}{text}" if symbol else f"{text} {currency}"


#: the metrics that are amounts of money, in the account's currency
MONEY_METRICS = ("cpl", "cpc", "spend")
#: a metric as a table's column of metrics names it
METRIC_LABELS = {
    "cpl": "cost/lead", "cpc": "cost/click", "ctr": "click rate", "cvr": "leads/click",
    "spend": "spend", "leads": "leads", "clicks": "clicks", "impressions": "impressions",
}


def metric_value(metric: str, value: float | None, currency: str) -> str:
    """A metric's value as the alerts write it: money as ``money`` does (``$1,165``, ``$56.40``),
    rates as percentages (``3.10%``), counts as counts. A cost per lead or per click with nothing
    to divide by (None) is ``no leads`` or ``no clicks``."""
    if value is None or value != value:
        return {"cpl": "no leads", "cpc": "no clicks", "cvr": "no clicks", "ctr": "no impressions"}.get(metric, "n/a")
    if metric in MONEY_METRICS:
        return money(value, currency)
    if metric in ("ctr", "cvr"):
        return f"{value:.2%}"
    return _count(value)


def _day(value: str | None) -> str:
    if not value:
        return "?"
    day = dt.date.fromisoformat(value)
    return f"{day:%a} {day.isoformat()}"


def _count(value: float) -> str:
    return f"{value:,.0f}" if float(value).is_integer() else f"{value:,.1f}"


#: What broke, as an evidence pack names it: the mechanism and where its causes usually are.
WHAT_BROKE = {
    TRACKING: "Leads stopped while clicks go on (conversion tracking or lead forms)",
    COST_PER_CLICK: "Clicks cost more (bids, bid strategy, match types, the auction)",
    CONVERSION_RATE: "Fewer leads per click (landing pages, targeting, search terms, lead quality)",
    SPEND: "Spend ran away (a budget or bid strategy let loose)",
    VOLUME: "Volume gone (disapprovals, an exhausted budget, a pause)",
}
#: How an update names the mechanism an incident turned out to be.
TURNED = {
    TRACKING: "leads stopped",
    COST_PER_CLICK: "clicks cost more",
    CONVERSION_RATE: "fewer leads per click",
    SPEND: "spend ran away",
    VOLUME: "volume gone",
}
#: How the headline names a cost-per-lead incident's mechanism (``anomaly.mechanism``).
DRIVEN_BY = {COST_PER_CLICK: "clicks cost more", CONVERSION_RATE: "fewer leads per click"}


def headline(payload: dict) -> str:
    """One line: what happened and where."""
    where = f"{payload['account_name']} / {payload['campaign_name']}"
    base = payload.get("baseline_cpl")
    mechanism = payload.get("mechanism")
    if payload["family"] == "cost_per_lead" and mechanism == TRACKING:
        what = "Leads stopped while clicks go on"
    elif payload["family"] == "cost_per_lead" and base:
        if payload["leads"] > 0:
            ratio = payload["cpl"] / base
            what = f"Cost per lead {ratio:.1f}× baseline"
            if mechanism in DRIVEN_BY:
                what += f": {DRIVEN_BY[mechanism]}"
        else:
            what = "Spend with no leads"
    elif payload["metric"] == "leads":
        what = "Too few leads for the spend"
    elif payload["metric"] == "spend" and payload.get("baseline"):
        what = f"Spend {payload['observed'] / payload['baseline']:.1f}× usual"
    elif payload["metric"] in ("clicks", "impressions") and payload.get("baseline"):
        ratio = payload["observed"] / payload["baseline"]
        what = f"{payload['metric'].capitalize()} " + (f"down to {ratio:.0%} of usual" if ratio < 1 else f"{ratio:.1f}× usual")
    else:
        what = f"{payload['metric'].upper()} {payload['rule']}"
    return f"{what} — {where}"


def how_worse(payload: dict) -> str:
    """What made an ``updated`` notification: ``now critical``, ``excess past $5,000``, or both.
    A payload that does not say (enqueued before excess steps existed) rose in severity."""
    update = payload.get("update") or {"severity": payload["severity"]}
    parts = []
    if update.get("severity"):
        parts.append(f"now {update['severity']}")
    if update.get("excess_step"):
        parts.append(f"excess past {money(update['excess_step'], payload['currency'])}")
    if update.get("mechanism") in TURNED:
        parts.append(f"now {TURNED[update['mechanism']]}")
    return ", ".join(parts) or f"now {payload['severity']}"


def label(event: str, payload: dict) -> str:
    """``[CRITICAL]``, ``[NOW CRITICAL]``, ``[EXCESS PAST $5,000]``, ``[RESOLVED]``: the tag of a notification."""
    if event == "opened":
        return f"[{payload['severity'].upper()}]"
    if event == "updated":
        return f"[{how_worse(payload).upper()}]"
    return f"[{event.upper()}]"


def render_text(event: str, payload: dict, config: Config | None = None) -> str:
    """A readable block for one notification: opened, updated or resolved; a reminder; or a
    grouped notification (``payload["incidents"]``)."""
    if event == "handover":
        return render_handover(payload, config)
    if event == "grouped":
        return render_group(payload["incidents"], config)
    if event == "reminder":
        return render_reminder(payload, config)
    if event == "grouped_reminder":
        return "\n\n".join(render_reminder(incident, config) for incident in payload["incidents"])
    name = party_namer(config)
    currency = payload["currency"]
    lines = [f"{label(event, payload)} {headline(payload)}"]

    def row(title: str, text: str) -> None:
        lines.append(f"  {title:<12} {text}")

    platform = platform_label(payload_platform(payload))
    row("Account", f"{payload['account_name']} ({payload['account_id']})" + (f" on {platform}" if platform else ""))
    row("Campaign", f"{payload['campaign_name']} ({payload['campaign_id']})" if payload["campaign_id"] else "all campaigns of the account")
    detected = payload["detected_on"]
    same_day = "detected the same day" if detected == payload["onset"] else f"detected {_day(detected)}"
    row("Onset", f"{_day(payload['onset'])}, {same_day}")
    base = payload.get("baseline_cpl")
    if payload["leads"] > 0:
        ratio = f" ({payload['cpl'] / base:.1f}×)" if base else ""
        row("Cost/lead", f"{money(payload['cpl'], currency)} since onset vs {money(base, currency)} baseline{ratio}")
    else:
        row("Cost/lead", f"no leads since onset vs {money(base, currency)} baseline")
    row("Spend", f"{money(payload['spend'], currency)} and {_count(payload['leads'])} leads since onset (through {_day(payload['last_active'])})")
    row("Excess cost", f"~{money(payload['excess_cost'], currency)} estimated (spend above what these leads cost at baseline)")
    split = excess_split(payload, money)
    if split:
        row("", split)
    by_party = {k: v for k, v in payload.get("excess_by_party", {}).items() if v > 0}
    if len(by_party) > 1:
        row("", "; ".join(f"{name(k)} {money(v, currency)}" for k, v in sorted(by_party.items(), key=lambda kv: -kv[1])))
    managing = name(payload["managing_party"])
    since = payload.get("party_since")
    if since:
        gap = (dt.date.fromisoformat(payload["onset"]) - dt.date.fromisoformat(since)).days
        when = "on the day of onset" if gap == 0 else f"{gap} day{'s' if gap != 1 else ''} before onset"
        row("Managed by", f"{managing}, since {since} ({when})")
    else:
        row("Managed by", managing)
    changes = payload.get("changes", [])
    if changes:
        row("Changes", f"{len(changes)} from a week before onset to detection:")
        for change in changes[-MAX_CHANGES:]:
            who = f"{change['user_email'] or 'no user'} ({name(change['party'])})"
            what = describe(change, currency, money)
            lines.append(f"  {'':<12}   {change['changed_at'].replace('T', ' ')}  {who}: {what}{fits(change, payload)}")
        if len(changes) > MAX_CHANGES:
            lines.append(f"  {'':<12}   … and {len(changes) - MAX_CHANGES} earlier")
    else:
        row("Changes", "none recorded in the week before onset")
    if event == "resolved":
        row("Resolved", _day(payload.get("resolved_on")) + settled_text(payload, money, name))
    else:
        row("Next step", next_step(payload, name))
    row("Rule", f"{payload['rule']} · {payload['family']} · {payload['severity']} · incident {payload.get('incident_id', '?')}")
    return "\n".join(lines)


def settled_text(payload: dict, money, name=str) -> str:
    """``; spend settled at a new level …`` for a spend incident whose step became the usual, ``; cost
    per lead stayed at …`` for a cost-per-lead incident the baseline took as the new usual, ``; handed
    over …`` for one closed at a change of managing party with the problem still open, else ""."""
    party = payload.get("handed_over_to")
    if party:
        return f"; handed over to {name(party)} with the problem still open: their days are a new incident of their own"
    level = payload.get("settled_spend")
    if level:
        return f"; spend settled at a new level of about {money(level, payload['currency'])} a day, with cost per click and cost per lead as before: this is now its usual level"
    cpl = payload.get("settled_cpl")
    if cpl:
        return (
            f"; cost per lead stayed at about {money(cpl, payload['currency'])} for weeks, and the baseline now takes that as the usual:"
            " if it is not acceptable, it needs fixing, not waiting"
        )
    return ""


def next_step(payload: dict, name) -> str:
    mechanism = payload.get("mechanism")
    changes = payload.get("changes", [])
    partner_changes = [c for c in changes if c["party"] == payload["managing_party"]]
    if mechanism == TRACKING or payload["leads"] == 0:
        since = stopped_since(payload)
        when = f" since {since:%a %b} {since.day}" if since is not None and since.isoformat() > payload["onset"] else ""
        return f"Check conversion tracking and lead forms: clicks go on with no leads recorded{when}."
    if mechanism in NEXT_STEPS:
        explaining = [c for c in partner_changes if change_explains(c, mechanism)]
        if explaining:
            return f"Review the {CHANGE_WORDS[mechanism]} {name(payload['managing_party'])} made before onset; roll back if it continues."
        return NEXT_STEPS[mechanism]
    if partner_changes:
        return f"Review the changes with {name(payload['managing_party'])}; roll back or pause if it continues."
    return "Review search terms, bids and landing pages; pause if it continues."


def stopped_since(payload: dict) -> dt.date | None:
    """The first day of the incident's latest run of days whose leads all but stopped (at most
    ``STOPPED_SHARE`` of what their spend buys at the baseline cost per lead), from its daily
    series; None when its last day is not one of them."""
    base = payload.get("baseline_cpl")
    if not base:
        return None
    first = None
    for day, spend, leads, _ in reversed(payload.get("series") or ()):
        if spend <= 0 or not stopped(spend, leads, base):
            break
        first = dt.date.fromisoformat(str(day)[:10])
    return first


#: What to do about each mechanism when no change before onset plausibly explains it ...
NEXT_STEPS = {
    COST_PER_CLICK: "Review bids, bid strategy and match types, and the auction insights; pause if it continues.",
    CONVERSION_RATE: "Check landing pages and lead forms, targeting and search terms, and lead quality; pause if it continues.",
    SPEND: "Check the budget and bid strategy; lower the budget if it continues.",
    VOLUME: "Check for disapproved ads, an exhausted budget or a paused campaign.",
}
#: ... and the changes to review when one does.
CHANGE_WORDS = {
    COST_PER_CLICK: "bidding changes",
    CONVERSION_RATE: "bid strategy, keyword, ad and targeting changes",
    SPEND: "budget and bidding changes",
    VOLUME: "changes",
}


#: What a change that plausibly explains the incident's mechanism is said to fit.
FITS = {
    COST_PER_CLICK: "the dearer clicks",
    CONVERSION_RATE: "the fewer leads per click",
    TRACKING: "the lost leads",
    SPEND: "the spend",
    VOLUME: "the lost volume",
}


def fits(change: dict, payload: dict) -> str:
    """`` ← may explain the dearer clicks`` for a change that plausibly explains the incident's
    mechanism (``anomaly.mechanism.change_explains``), else ""."""
    mechanism = payload.get("mechanism")
    return f" ← may explain {FITS[mechanism]}" if mechanism in FITS and change_explains(change, mechanism) else ""


def excess_split(payload: dict, money_of) -> str:
    """``$1,200 from dearer clicks · $4,417 from fewer leads per click`` (a part below zero reads
    as clicks cheaper, or more leads per click, by that much); "" when the incident has no split."""
    parts = payload.get("excess_by_mechanism") or {}
    if COST_PER_CLICK not in parts or CONVERSION_RATE not in parts:
        return ""
    currency = payload["currency"]
    cpc, cvr = parts[COST_PER_CLICK], parts[CONVERSION_RATE]
    first = f"{money_of(cpc, currency)} from dearer clicks" if cpc >= 0 else f"the clicks cost {money_of(-cpc, currency)} less than usual"
    second = f"{money_of(cvr, currency)} from fewer leads per click" if cvr >= 0 else f"{money_of(-cvr, currency)} saved by more leads per click"
    return f"{first} · {second}"


def party_namer(config: Config | None):
    """Party key → display name (the key itself, or "unknown", without config)."""
    return config.party_name if config is not None else (lambda key: key or "unknown")


def what_happened(payload: dict) -> str:
    """The "what" half of the headline, e.g. ``Cost per lead 5.6× baseline``."""
    return headline(payload).split(" — ", 1)[0]


def lower_first(text: str) -> str:
    """``Cost per lead`` → ``cost per lead``; an acronym (``CPL``) stays as it is."""
    if len(text) > 1 and text[0].isupper() and text[1].islower():
        return text[0].lower() + text[1:]
    return text


def total_excess(payloads: list[dict]) -> str:
    """The sum of excess cost per currency, e.g. ``$12,345`` or ``$1,200 + €300``."""
    totals: dict[str, float] = {}
    for payload in payloads:
        totals[payload["currency"]] = totals.get(payload["currency"], 0.0) + payload["excess_cost"]
    return " + ".join(money(amount, currency) for currency, amount in totals.items())


def render_group(payloads: list[dict], config: Config | None = None) -> str:
    """One header line for many incidents opened on one account in one cycle, then one line per
    incident, largest excess first."""
    ordered = sorted(payloads, key=lambda p: -p["excess_cost"])
    worst = "CRITICAL" if any(p["severity"] == "critical" for p in ordered) else ordered[0]["severity"].upper()
    accounts = {f"{p['account_name']} ({p['account_id']})" for p in ordered}
    where = accounts.pop() if len(accounts) == 1 else f"{len(accounts)} accounts"
    lines = [f"[{worst}] {len(ordered)} incidents opened together — {where}: excess ~{total_excess(ordered)} in all"]
    for p in ordered:
        campaign = f"{p['campaign_name']} ({p['campaign_id']})" if p["campaign_id"] else "all campaigns of the account"
        excess = money(p["excess_cost"], p["currency"])
        lines.append(f"  • {campaign}: {lower_first(what_happened(p))}, excess ~{excess} ({p['severity']}) · incident {p.get('incident_id', '?')}")
    return "\n".join(lines)


def render_reminder(payload: dict, config: Config | None = None) -> str:
    """A short block for an incident still open and not acknowledged."""
    name = party_namer(config)
    lines = [f"[REMINDER] Still open and not acknowledged: {headline(payload)}"]

    def row(title: str, text: str) -> None:
        lines.append(f"  {title:<12} {text}")

    row("Excess cost", f"~{money(payload['excess_cost'], payload['currency'])} so far, since {_day(payload['onset'])}")
    row("Managed by", name(payload["managing_party"]))
    row("Next step", next_step(payload, name))
    row("Rule", f"{payload['rule']} · {payload['family']} · {payload['severity']} · incident {payload.get('incident_id', '?')}")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# Handovers


#: the figures of a handover's reference, in the order its table shows them: (key, column title)
REFERENCE_COLUMNS = (("cpl", "cost/lead"), ("cpc", "cost/click"), ("cvr", "conv. rate"), ("daily_spend", "spend/day"), ("leads_per_day", "leads/day"))
#: the campaigns a handover's message lists before "… and N more"
MAX_HANDOVER_CAMPAIGNS = 20
_NAME_COLUMN = 28


def reference_value(key: str, figures: dict, currency: str) -> str:
    """One figure of a handover's reference as the messages write it: money as ``money`` does,
    the conversion rate as a percentage, leads a day with one decimal; ``n/a`` with nothing to
    divide by."""
    value = figures.get(key)
    if value is None:
        return "n/a"
    if key in ("cpl", "cpc", "daily_spend"):
        return money(value, currency)
    if key == "cvr":
        return f"{value:.2%}"
    return f"{value:,.1f}"


def handover_what(payload: dict, name) -> str:
    """``the whole account (3 campaigns)`` or ``the campaign Generic - Leads (20118341)``."""
    if payload.get("campaign_id"):
        return f"the campaign {payload.get('campaign_name') or payload['campaign_id']} ({payload['campaign_id']})"
    count = len(payload["reference"]["campaigns"])
    return f"the whole account ({count} campaign{'s' if count != 1 else ''} with data before it)"


def handover_title(payload: dict, name) -> str:
    """``Harbor Dental Group handed over: Northwind Digital → Beacon Reach``."""
    where = payload["account_name"] + (f" / {payload.get('campaign_name') or payload['campaign_id']}" if payload.get("campaign_id") else "")
    return f"{where} handed over: {name(payload['from_party'])} → {name(payload['to_party'])}"


def _clip_name(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def render_handover(payload: dict, config: Config | None = None) -> str:
    """A handover's message as the console shows it: where, from whom to whom, since when, and the
    reference figures of each campaign over the weeks before it."""
    name = party_namer(config)
    currency = payload["currency"]
    reference = payload["reference"]
    lines = [f"[HANDOVER] {handover_title(payload, name)}"]

    def row(title: str, text: str) -> None:
        lines.append(f"  {title:<12} {text}")

    platform = platform_label(payload_platform(payload))
    row("Account", f"{payload['account_name']} ({payload['account_id']})" + (f" on {platform}" if platform else ""))
    row("Handed over", handover_what(payload, name))
    row("From", name(payload["from_party"]))
    row("To", f"{name(payload['to_party'])}, since {_day(payload['since'])}")
    weeks = reference["days"] / 7
    span = f"{weeks:g} weeks" if float(weeks).is_integer() else f"{reference['days']} days"
    row("Before", f"the {span} before it, {_day(reference['from'])} to {_day(reference['to'])} (kept as the reference):")
    campaigns = reference["campaigns"]
    if not campaigns:
        lines.append(f"  {'':<12}   no campaign has data in those days")
    else:
        indent = f"  {'':<12}   "
        lines.append(indent + f"{'campaign':<{_NAME_COLUMN}}" + "".join(f"{title:>12}" for _, title in REFERENCE_COLUMNS))
        shown = campaigns[:MAX_HANDOVER_CAMPAIGNS]
        for campaign in shown:
            cells = "".join(f"{reference_value(key, campaign, currency):>12}" for key, _ in REFERENCE_COLUMNS)
            lines.append(indent + f"{_clip_name(campaign['campaign_name'], _NAME_COLUMN - 1):<{_NAME_COLUMN}}" + cells)
        if len(campaigns) > len(shown):
            lines.append(indent + f"… and {len(campaigns) - len(shown)} more")
        if len(campaigns) > 1 and reference.get("total"):
            cells = "".join(f"{reference_value(key, reference['total'], currency):>12}" for key, _ in REFERENCE_COLUMNS)
            lines.append(indent + f"{'all ' + str(len(campaigns)) + ' campaigns':<{_NAME_COLUMN}}" + cells)
    row("Handover", f"#{payload.get('handover_id', '?')}, seen in the data of {_day(payload['detected_on'])}")
    return "\n".join(lines)
