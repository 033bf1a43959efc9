"""Slack messages: the handoff alert as the demo produces it, escaping of untrusted names, Block
Kit limits met by construction, and the thread replies and grouped message."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from slack_sdk.models.blocks import Block

from anomaly import sample
from anomaly.alerts.slack_message import (
    FIELD_CHARS,
    HEADER_CHARS,
    MAX_BLOCKS,
    SECTION_CHARS,
    TEXT_CHARS,
    SlackMessage,
    build_alert,
    build_group,
    build_group_reminder,
    build_group_reply,
    build_reminder_reply,
    build_thread_reply,
    escape,
    one_line,
)
from anomaly.config import Config, PartyConfig, load_config
from anomaly.errors import AnomalyError
from anomaly.ownership import ownership_periods
from anomaly.pipeline import derive_incidents
from tests.helpers import PROJECT

HANDOFF_ID = 2
CONTROL = ("<!", "<@", "<#", "<http")


@pytest.fixture(scope="module")
def project() -> tuple[Config, list]:
    """The embedded default: config.yaml and rules/."""
    return load_config(PROJECT / "config.yaml")


@pytest.fixture(scope="module")
def config(project) -> Config:
    return project[0]


@pytest.fixture(scope="module")
def demo(project) -> dict[dt.date, list]:
    """The demo portfolio's incidents as detected on Fri Jul 10 and Sun Jul 12 (the real code path)."""
    config, rules = project
    metrics, changes = sample.generate_metrics(), sample.generate_changes()
    periods = ownership_periods(config)
    return {day: derive_incidents(config, rules, periods, metrics, changes, day) for day in (sample.ONSET, sample.END)}


def _payload(incidents: list, campaign_name: str, incident_id: int, event: str) -> dict:
    incident = next(i for i in incidents if i.campaign_name == campaign_name)
    return {**incident.payload(), "incident_id": incident_id, "event": event}


@pytest.fixture(scope="module")
def handoff(demo) -> dict:
    """The Harbor Dental handoff incident as opened on its detection day."""
    return _payload(demo[sample.ONSET], sample.STORY_CAMPAIGN.campaign_name, HANDOFF_ID, "opened")


@pytest.fixture(scope="module")
def handoff_later(demo) -> dict:
    return _payload(demo[sample.END], sample.STORY_CAMPAIGN.campaign_name, HANDOFF_ID, "opened")


def _change(i: int = 0, **overrides) -> dict:
    at = dt.datetime(2026, 7, 9, 8, 0) + dt.timedelta(minutes=i)
    change = {
        "changed_at": at.isoformat(timespec="minutes"),
        "campaign_id": "1001",
        "user_email": "dana.kim@beaconreach.example",
        "party": "beacon",
        "resource_type": "CAMPAIGN",
        "operation": "UPDATE",
        "changed_fields": f"cpc_bid_micros: {i} -> {i + 1}",
        "client_type": "",
    }
    return {**change, **overrides}


def _made(**overrides) -> dict:
    """A payload built by hand with the keys of ``Incident.payload()`` (plus incident_id, event)."""
    payload = {
        "family": "cost_per_lead",
        "account_id": "1000",
        "account_name": "Acme Clinics",
        "campaign_id": "1001",
        "campaign_name": "Brand",
        "currency": "USD",
        "onset": "2026-07-10",
        "detected_on": "2026-07-10",
        "last_active": "2026-07-10",
        "resolved_on": None,
        "rule": "cpl-spike-1d",
        "opening_severity": "critical",
        "severity": "critical",
        "critical_on": "2026-07-10",
        "metric": "cpl",
        "observed": 400.0,
        "baseline": 100.0,
        "baseline_cpl": 100.0,
        "spend": 800.0,
        "leads": 2.0,
        "excess_cost": 600.0,
        "excess_by_party": {"beacon": 600.0},
        "managing_party": "beacon",
        "party_since": "2026-07-08",
        "changes": [_change()],
        "status": "open",
        "cpl": 400.0,
        "incident_id": 7,
        "event": "opened",
    }
    return {**payload, **overrides}


def assert_within_limits(message: SlackMessage) -> None:
    """Every Block Kit limit, and every block survives a round trip through the SDK's models."""
    assert isinstance(message.text, str) and 0 < len(message.text) <= TEXT_CHARS
    assert 0 < len(message.blocks) <= MAX_BLOCKS
    for block in message.blocks:
        model = Block.parse(block)
        model.validate_json()
        assert model.to_dict() == block
        if block["type"] == "header":
            assert block["text"]["type"] == "plain_text" and len(block["text"]["text"]) <= HEADER_CHARS
        if block["type"] == "section":
            assert "text" not in block or len(block["text"]["text"]) <= SECTION_CHARS
            assert len(block.get("fields", [])) <= 10
            assert all(len(f["text"]) <= FIELD_CHARS for f in block.get("fields", []))
        if block["type"] == "context":
            assert len(block["elements"]) <= 10
            assert all(len(e["text"]) <= SECTION_CHARS for e in block["elements"])


def _by_type(message: SlackMessage, kind: str) -> list[dict]:
    return [b for b in message.blocks if b["type"] == kind]


def _fields(message: SlackMessage) -> list[str]:
    return [f["text"] for f in _by_type(message, "section")[0]["fields"]]


# ---------------------------------------------------------------------------------------------
# The handoff incident, from the demo data


def test_handoff_alert_says_what_where_how_bad_who_and_what_to_do(handoff, config):
    message = build_alert("opened", handoff, config)

    assert _by_type(message, "header")[0]["text"]["text"] == "Critical: Cost per lead 5.6× baseline: fewer leads per click — Harbor Dental Group / Generic - Leads"
    assert _fields(message) == [
        "*Cost per lead*\n$561 vs $101 baseline (5.6×)",
        "*Spend / leads*\n$1,684 / 3 leads since onset, through Fri Jul 10",
        "*Excess cost*\n~$1,383 estimated\nthe clicks cost $1,098 less than usual · $2,481 from fewer leads per click",
        "*Managed by*\nBeacon Reach, since Jul 8 — 2 days before onset",
        "*Onset*\nFri Jul 10, detected the same day",
        "*Severity*\nCritical",
    ]
    changes, step = (b["text"]["text"] for b in _by_type(message, "section")[1:])
    assert changes.splitlines()[0] == "*Changes from the week before onset to detection (4)*"
    assert (
        "• Thu Jul 9 15:41 · dana.kim@beaconreach.example (Beacon Reach): "
        "Bid strategy: Maximize conversions → Maximize clicks ← may explain the fewer leads per click"
    ) in changes.splitlines()
    assert step.splitlines() == [
        "*Next step:* Review the bid strategy, keyword, ad and targeting changes Beacon Reach made before onset; roll back if it continues.",
        "<https://ads.google.com/aw/campaigns?campaignId=20118341&__e=4821937710|Open the campaign in Google Ads>",
    ]
    assert [e["text"] for e in _by_type(message, "context")[0]["elements"]] == [
        "cpl-spike-1d · cost_per_lead · critical · incident 2",
        "Google Ads · Harbor Dental Group (4821937710) / Generic - Leads (20118341)",
    ]
    assert message.text == (
        "[CRITICAL] Cost per lead 5.6× baseline: fewer leads per click — Harbor Dental Group / Generic - Leads: excess ~$1,383, managed by Beacon Reach"
    )
    assert message.as_kwargs() == {"text": message.text, "blocks": message.blocks}
    assert_within_limits(message)


def test_campaign_link_is_ours_with_the_url_percent_encoded(handoff, config):
    url = "https://ads.google.com/aw/overview?campaignId=20118341&ocid=4821937710&x=a|b <c>"
    message = build_alert("opened", handoff, config, campaign_url=url)

    step = _by_type(message, "section")[2]["text"]["text"]
    assert step.splitlines()[1] == (
        "<https://ads.google.com/aw/overview?campaignId=20118341&ocid=4821937710&x=a%7Cb%20%3Cc%3E|Open the campaign in Google Ads>"
    )
    assert_within_limits(message)


@pytest.mark.parametrize(
    "ids",
    [
        pytest.param({"account_id": "A-17"}, id="account-id-not-google-ads"),
        pytest.param({"campaign_id": "brand"}, id="campaign-id-not-numeric"),
        pytest.param({"campaign_id": ""}, id="account-total"),
    ],
)
def test_no_campaign_link_where_the_ids_are_not_google_ads_ids(handoff, config, ids):
    message = build_alert("opened", {**handoff, **ids}, config)

    step = _by_type(message, "section")[2]["text"]["text"]
    assert "ads.google.com" not in step and "<" not in step


def test_no_campaign_link_when_config_turns_it_off(handoff, config):
    off = config.model_copy(update={"alerts": config.alerts.model_copy(update={"campaign_url": None})})

    step = _by_type(build_alert("opened", handoff, off), "section")[2]["text"]["text"]

    assert step == "*Next step:* Review the bid strategy, keyword, ad and targeting changes Beacon Reach made before onset; roll back if it continues."


def test_mentions_from_the_route_ping_with_the_next_step_and_in_the_notification(handoff, config):
    payload = {**handoff, "mentions": ["U0DANA1", "S0BEACON", "here"]}

    message = build_alert("opened", payload, config)
    resolved = build_alert("resolved", {**payload, "status": "resolved", "resolved_on": "2026-07-12"}, config)
    reply = build_thread_reply("updated", payload, config)

    pings = "<@U0DANA1> <!subteam^S0BEACON> <!here>"
    step = _by_type(message, "section")[2]["text"]["text"]
    assert step.splitlines()[0].endswith(f"if it continues. {pings}")
    assert message.text.endswith(f"managed by Beacon Reach {pings}")
    assert reply.text.endswith(pings)
    assert "<@" not in json.dumps(resolved.blocks) and "<@" not in resolved.text


@pytest.mark.parametrize("mention", ["<!channel>", "U0DANA1> <!everyone", "everyone", "u0dana1", 7])
def test_a_mention_in_a_payload_that_config_would_refuse_is_dropped(handoff, config, mention):
    message = build_alert("opened", {**handoff, "mentions": [mention]}, config)

    text = json.dumps(message.blocks) + message.text
    assert "<!" not in text and "<@" not in text


def test_resolved_alert_is_rewritten_with_the_final_numbers(handoff_later, config):
    payload = {**handoff_later, "status": "resolved", "resolved_on": "2026-07-12", "event": "resolved"}
    message = build_alert("resolved", payload, config)

    header = _by_type(message, "header")[0]["text"]["text"]
    assert header == "RESOLVED: Cost per lead 9.0× baseline: fewer leads per click — Harbor Dental Group / Generic - Leads"
    assert "*Excess cost*\n~$5,617 estimated\nthe clicks cost $5,656 less than usual · $11,273 from fewer leads per click" in _fields(message)
    assert _by_type(message, "section")[2]["text"]["text"].splitlines()[0] == "*Resolved* Sun Jul 12"
    assert message.text.startswith("[RESOLVED] Cost per lead 9.0× baseline: fewer leads per click — Harbor Dental Group / Generic - Leads: excess ~$5,617")
    assert_within_limits(message)


def test_updated_alert_shows_when_severity_rose(demo, config):
    lakeside = _payload(demo[sample.END], sample.TRACKING_LOSS_CAMPAIGN.campaign_name, 1, "updated")
    message = build_alert("updated", lakeside, config)

    assert "*Severity*\nCritical since Sat Jul 11 (opened as warning)" in _fields(message)
    assert "*Managed by*\nNorthwind Digital" in _fields(message)
    assert message.text.startswith("[NOW CRITICAL] ")
    assert_within_limits(message)


def test_thread_replies_when_the_incident_worsens_and_resolves(demo, handoff_later, config):
    lakeside = _payload(demo[sample.END], sample.TRACKING_LOSS_CAMPAIGN.campaign_name, 1, "updated")
    worse = build_thread_reply("updated", lakeside, config)
    resolved = build_thread_reply("resolved", {**handoff_later, "status": "resolved", "resolved_on": "2026-07-12"}, config)

    assert worse.text == "Now critical: leads stopped while clicks go on, excess ~$4,733 so far"
    assert resolved.text == "Resolved on Sun Jul 12: excess ~$5,617 in all, $5,617 under Beacon Reach"
    for message in (worse, resolved):
        assert [b["type"] for b in message.blocks] == ["section"]
        assert message.blocks[0]["text"]["text"] == message.text
        assert_within_limits(message)


# ---------------------------------------------------------------------------------------------
# Hand-made payloads: variants, escaping, limits


@pytest.mark.parametrize(
    ("raw", "escaped"),
    [
        pytest.param("Brand & Co", "Brand &amp; Co", id="ampersand"),
        pytest.param("<!channel> Sale", "&lt;!channel&gt; Sale", id="mention"),
        pytest.param("&lt;", "&amp;lt;", id="ampersand-first"),
        pytest.param("*bold* _it_ ~x~ `c` \"q\" 'a'", "*bold* _it_ ~x~ `c` \"q\" 'a'", id="nothing-else"),
    ],
)
def test_escape_replaces_only_ampersand_and_angle_brackets(raw, escaped):
    assert escape(raw) == escaped


def test_untrusted_names_render_literally_and_never_as_mentions_or_links(config):
    nasty = config.model_copy(
        update={"parties": {"beacon": PartyConfig(name="<!subteam^S1> Reach", domains=["beaconreach.example"])}}
    )
    payload = _made(
        campaign_name="<!channel> Sale",
        account_name="<https://evil.example|Budget> & Co",
        rule="<#C123>",
        currency="<!everyone>",
        changes=[_change(user_email="<@U123>x@beaconreach.example", changed_fields="headline: <!here>")],
        excess_by_party={"beacon": 400.0, "northwind": 200.0},
    )
    url = "https://ads.google.com/aw/overview?campaignId=1001"
    ours = f"<{url}|Open the campaign>"  # the account id is not a Google Ads id: no platform to name
    messages = [
        build_alert("opened", payload, nasty, campaign_url=url),
        build_alert("resolved", {**payload, "status": "resolved", "resolved_on": "2026-07-11"}, nasty, campaign_url=url),
        build_thread_reply("updated", payload, nasty),
        build_thread_reply("resolved", {**payload, "resolved_on": "2026-07-11"}, nasty),
        build_group([payload, {**payload, "campaign_name": "<@U999>"}], nasty),
    ]
    assert ours in messages[0].blocks[3]["text"]["text"]
    for message in messages:
        sent = json.dumps(message.as_kwargs(), ensure_ascii=False).replace(ours, "")
        assert not [c for c in CONTROL if c in sent], sent
        assert_within_limits(message)
    alert = json.dumps(messages[0].blocks, ensure_ascii=False)
    for literal in (
        "&lt;!channel&gt; Sale",
        "&lt;https://evil.example|Budget&gt; &amp; Co",
        "&lt;@U123&gt;x@beaconreach.example",
        "Headline: &lt;!here&gt;",
        "&lt;!subteam^S1&gt; Reach",
        "&lt;#C123&gt;",
        "&lt;!everyone&gt;",
    ):
        assert literal in alert
    assert _by_type(messages[0], "header")[0]["text"]["text"].endswith("‹!channel› Sale")
    assert "&lt;!channel&gt; Sale" in messages[0].text


def test_a_500_character_campaign_name_is_cut_to_the_header_limit():
    message = build_alert("opened", _made(campaign_name="Leads " + "x" * 494))

    header = _by_type(message, "header")[0]["text"]["text"]
    assert len(header) == HEADER_CHARS and header.endswith("x…")
    assert header.startswith("Critical: Cost per lead 4.0× baseline — Acme Clinics / Leads xxx")
    assert _by_type(message, "context")[0]["elements"][1]["text"] == f"Acme Clinics (1000) / Leads {'x' * 494} (1001)"
    assert_within_limits(message)


def test_200_changes_show_the_latest_five_and_how_many_more():
    changes = [_change(i, changed_fields="keyword.text: " + "&<>" * 300) for i in range(200)]
    message = build_alert("opened", _made(changes=changes))

    text = _by_type(message, "section")[1]["text"]["text"]
    lines = text.splitlines()
    assert len(text) <= SECTION_CHARS
    assert lines[0] == "*Changes from the week before onset to detection (200)*"
    assert len(lines) == 1 + 5 + 1 and lines[-1] == "… and 195 more, earlier"
    for line in lines[1:-1]:  # each cut short, never inside an entity
        assert line.endswith("…") and line.rstrip("…").endswith((";", ": "))
    assert_within_limits(message)


def test_long_texts_are_cut_within_every_limit():
    huge = "&" * 5000
    payload = _made(
        account_name=huge,
        campaign_name=huge,
        currency=huge,
        rule=huge,
        excess_by_party={huge: 1.0, "beacon": 2.0},
        managing_party=huge,
        changes=[_change(user_email=huge, changed_fields=huge)],
    )
    for message in (
        build_alert("opened", payload, campaign_url="https://example.com/" + "a" * 4000),
        build_thread_reply("resolved", payload),
        build_group([payload] * 3),
    ):
        assert_within_limits(message)
        for text in [message.text, *(json.dumps(b) for b in message.blocks)]:
            assert "&am…" not in text and "&a…" not in text and "&…" not in text


def test_no_changes_and_no_leads():
    message = build_alert("opened", _made(changes=[], leads=0.0, cpl=None, excess_cost=800.0))

    assert "*Cost per lead*\nno leads vs $100 baseline" in _fields(message)
    assert _by_type(message, "section")[1]["text"]["text"] == "No changes recorded in the week before onset"
    assert _by_type(message, "section")[2]["text"]["text"].startswith("*Next step:* Check conversion tracking")
    assert _by_type(message, "header")[0]["text"]["text"] == "Critical: Spend with no leads — Acme Clinics / Brand"


def test_excess_is_split_by_party_when_more_than_one_managed_it(config):
    message = build_alert("opened", _made(excess_by_party={"northwind": 150.0, "beacon": 450.0}), config)

    assert "*Excess cost*\n~$600 estimated\nBeacon Reach $450 · Northwind Digital $150" in _fields(message)


def test_a_thread_reply_is_only_for_updates_and_resolutions():
    with pytest.raises(AnomalyError, match="got event 'opened'"):
        build_thread_reply("opened", _made())


def test_forty_incidents_of_one_account_make_one_grouped_message(config):
    payloads = [
        _made(campaign_name=f"Campaign {i:02d}", excess_cost=float(100 * i), incident_id=100 + i, severity="warning" if i % 2 else "critical")
        for i in range(1, 41)
    ]
    message = build_group(payloads, config)

    assert _by_type(message, "header")[0]["text"]["text"] == "40 cost-per-lead incidents — Acme Clinics"
    lines = _by_type(message, "section")[0]["text"]["text"].splitlines()
    assert len(lines) == 21 and lines[-1] == "… and 20 more"
    assert lines[0] == "• Campaign 40: cost per lead 4.0× baseline, excess ~$4,000 (critical)"
    assert _by_type(message, "section")[1]["text"]["text"] == "*Total excess:* ~$82,000 estimated across 40 incidents"
    assert _by_type(message, "context")[0]["elements"][0]["text"].startswith("cpl-spike-1d · cost_per_lead · critical · incidents 140, 139")
    assert message.text == "[CRITICAL] 40 cost-per-lead incidents — Acme Clinics: excess ~$82,000 in all"
    assert_within_limits(message)


def test_a_line_break_or_bidi_control_in_a_name_never_starts_or_reverses_a_line():
    name = "Brand\n> *Next step:* wire the budget\r\n• fake line\u2028x\u0085y\t\x00\u202eesrever\u202c \u2066iso\u2069"
    payload = _made(campaign_name=name, account_name=name, changes=[_change(user_email=name, changed_fields=name)])
    messages = [
        build_alert("opened", payload),
        build_thread_reply("updated", payload),
        build_group([payload, {**payload, "incident_id": 8}]),
        build_group_reply("reminder", payload),
    ]

    for message in messages:
        text = json.dumps(message.as_kwargs(), ensure_ascii=False)
        for forbidden in ("\\n&gt;", "\\n>", "\\n*Next step:* wire", "\\n• fake", "\\r", "\u2028", "\u0085", "\\t", "\\u0000", "\u202e", "\u2066"):
            assert forbidden not in text, forbidden
    flat = "Brand &gt; *Next step:* wire the budget • fake line x y esrever iso"
    assert f"— {flat} / {flat}: excess ~$600" in messages[0].text
    header = _by_type(messages[0], "header")[0]["text"]["text"]
    assert header.startswith("Critical: Cost per lead 4.0× baseline — Brand › *Next step:* wire the budget • fake line x y esrever iso / Brand ›")
    assert one_line("left\u200fright\u200b") == "left\u200fright\u200b"  # marks and zero-width characters reorder nothing


@pytest.mark.parametrize(
    "build",
    [
        pytest.param(lambda p: build_alert("opened", p), id="alert"),
        pytest.param(lambda p: build_thread_reply("updated", p), id="thread-reply"),
        pytest.param(lambda p: build_reminder_reply(p), id="reminder"),
        pytest.param(lambda p: build_group_reply("updated", p), id="group-reply"),
        pytest.param(lambda p: build_group_reply("reminder", p), id="group-reminder-reply"),
        pytest.param(lambda p: build_group([p, {**p, "incident_id": 8}]), id="group"),
        pytest.param(lambda p: build_group_reminder([p, {**p, "incident_id": 8}]), id="group-reminder"),
    ],
)
def test_names_that_fill_a_message_never_cut_the_routes_mentions(build):
    huge = "<!channel>" * 800
    payload = _made(
        account_name=huge, campaign_name=huge, currency=huge, family="spend", metric="spend", rule=huge,
        managing_party=huge, changes=[_change(party=huge)], mentions=["U0DANA1", "here"],
    )
    message = build(payload)

    assert message.text.endswith("<@U0DANA1> <!here>")
    sections = [b["text"]["text"] for b in _by_type(message, "section") if "text" in b]
    assert any(text.endswith("<@U0DANA1> <!here>") for text in sections)
    assert_within_limits(message)
