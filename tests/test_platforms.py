"""Which ad platform each incident's account is on: named in alerts, reports and exports, linked
into that platform's own interface, and a route can pick it."""

from __future__ import annotations

import contextlib
import datetime as dt
import io
import json
from pathlib import Path

import pytest

from anomaly import sample
from anomaly.alerts.render import render_text
from anomaly.alerts.routing import Router
from anomaly.alerts.slack_message import build_alert, campaign_link
from anomaly.analysis import Project
from anomaly.cli import main
from anomaly.config import RouteConfig
from anomaly.platforms import account_platforms, guess_platform
from anomaly.reports.scorecard import party_scorecard
from tests.helpers import copy_default_project
from tests.test_config import load_error, write_case

HARBOR, GENERIC = sample.STORY_CAMPAIGN.account_id, sample.STORY_CAMPAIGN.campaign_id


def _project_on(folder: Path, platform: str | None) -> Path:
    """The embedded default, its CSV source saying ``platform`` (None: saying nothing), run up to
    the demo's last day."""
    config = copy_default_project(folder)
    if platform is not None:
        text = config.read_text()
        config.write_text(text.replace("    type: csv\n", f"    type: csv\n    platform: {platform}\n", 1))
    sample.write_sample(folder / "sample")
    with contextlib.redirect_stdout(io.StringIO()):
        assert main(["--config", str(config), "run", "--today", str(sample.END + dt.timedelta(days=1))]) == 0
    return config


def _harbor_payload(config: Path) -> dict:
    sent = [json.loads(line) for line in (config.parent / "sample" / "alerts.jsonl").read_text().splitlines()]
    return next(s for s in sent if s["campaign_id"] == GENERIC and s["event"] == "opened")


@pytest.fixture(scope="module")
def on_microsoft(tmp_path_factory) -> Path:
    return _project_on(tmp_path_factory.mktemp("microsoft"), "microsoft_ads")


@pytest.fixture(scope="module")
def on_meta(tmp_path_factory) -> Path:
    return _project_on(tmp_path_factory.mktemp("meta"), "meta_ads")


def test_an_account_id_says_its_platform_only_where_its_shape_is_plain():
    assert guess_platform("4821937710") == "google_ads"
    assert guess_platform("act_1234567890") == "meta_ads"
    assert guess_platform("149083254") == ""  # could be Microsoft Advertising, or anything
    assert guess_platform("A-17") == ""
    sources = {"4821937710": "sample", "act_5": "meta", "149083254": "bing", "9999": "files"}
    said = {"sample": None, "meta": "meta_ads", "bing": "microsoft_ads", "files": None}
    assert account_platforms(sources, said) == {"4821937710": "google_ads", "act_5": "meta_ads", "149083254": "microsoft_ads", "9999": ""}


def test_the_embedded_default_is_google_ads_by_its_account_ids(demo_config):
    project = Project.open(demo_config)
    assert set(project.platforms().values()) == {"google_ads"}
    assert set(project.incidents()["platform"]) == {"google_ads"}


def test_an_alert_names_the_platform_and_links_the_campaign_in_its_interface(on_microsoft):
    config = Project.open(on_microsoft).config
    payload = _harbor_payload(on_microsoft)
    assert payload["platform"] == "microsoft_ads"

    message = build_alert("opened", payload, config)
    context = [e["text"] for block in message.blocks if block["type"] == "context" for e in block["elements"]]
    assert context[-1] == f"Microsoft Advertising · Harbor Dental Group ({HARBOR}) / Generic - Leads ({GENERIC})"
    step = message.blocks[3]["text"]["text"]
    assert step.splitlines()[-1] == (
        f"<https://ui.ads.microsoft.com/campaign/vnext/campaigns?aid={HARBOR}&campaignId={GENERIC}|Open the campaign in Microsoft Advertising>"
    )
    assert f"  Account      Harbor Dental Group ({HARBOR}) on Microsoft Advertising" in render_text("opened", payload, config).splitlines()


def test_a_meta_campaign_opens_in_ads_manager_with_the_bare_account_number(on_meta):
    config = Project.open(on_meta).config
    payload = _harbor_payload(on_meta)
    assert campaign_link(payload, config) == (
        f"https://adsmanager.facebook.com/adsmanager/manage/campaigns?act={HARBOR}&selected_campaign_ids={GENERIC}"
    )
    assert campaign_link({**payload, "account_id": f"act_{HARBOR}"}, config) == campaign_link(payload, config)
    off = config.model_copy(update={"alerts": config.alerts.model_copy(update={"campaign_url": {"meta_ads": None}})})
    assert campaign_link(payload, off) is None
    assert campaign_link({**payload, "platform": "google_ads"}, off) is not None  # a platform left out keeps its own


def test_one_template_is_google_ads_and_other_platforms_keep_theirs(on_meta):
    config = Project.open(on_meta).config
    mine = config.model_copy(update={"alerts": config.alerts.model_copy(update={"campaign_url": "https://ads.example/{account_id}/{campaign_id}"})})
    payload = _harbor_payload(on_meta)
    assert campaign_link({**payload, "platform": "google_ads"}, mine) == f"https://ads.example/{HARBOR}/{GENERIC}"
    assert campaign_link(payload, mine).startswith("https://adsmanager.facebook.com/")
    assert campaign_link({**payload, "platform": "", "account_id": "A-17"}, mine) is None  # an unknown platform has no link
    assert campaign_link({**payload, "campaign_id": ""}, mine) is None  # nor has an account total


def test_exports_and_the_backtest_say_the_platform(on_meta, capsys):
    capsys.readouterr()
    assert main(["--config", str(on_meta), "incidents", "--format", "json"]) == 0
    assert {r["platform"] for r in json.loads(capsys.readouterr().out)} == {"meta_ads"}
    assert main(["--config", str(on_meta), "backtest", "--format", "json"]) == 0
    records = json.loads(capsys.readouterr().out)
    assert records and {r["platform"] for r in records} == {"meta_ads"}
    assert set(Project.open(on_meta).backtest()["platform"]) == {"meta_ads"}
    assert main(["--config", str(on_meta), "incidents", "--format", "csv"]) == 0
    header, *rows = capsys.readouterr().out.splitlines()
    assert '"platform"' in header.split(",") and rows and all('"meta_ads"' in row for row in rows)


def test_the_scorecard_and_the_evidence_pack_name_the_platform(on_meta, capsys):
    project = Project.open(on_meta)
    card = party_scorecard(project, sample.END - dt.timedelta(days=11), sample.END)
    assert card.portfolio["platforms"] == "Meta"
    assert set(card.parties["platforms"]) <= {"Meta", ""} and "Meta" in set(card.parties["platforms"])
    assert set(card.accounts["platform"]) == {"Meta"}
    harbor = project.incidents()
    incident_id = int(harbor[harbor["campaign_id"] == GENERIC]["id"].iat[0])
    capsys.readouterr()
    assert main(["--config", str(on_meta), "report", str(incident_id), "--out", str(on_meta.parent / "reports")]) == 0
    markdown = next((on_meta.parent / "reports").glob(f"incident-{incident_id}*.md")).read_text()
    assert f"| Account | Harbor Dental Group ({HARBOR}) on Meta |" in markdown


def test_a_route_can_pick_a_platform(on_meta):
    config = Project.open(on_meta).config
    payload = _harbor_payload(on_meta)
    routed = config.alerts.model_copy(update={"routes": [RouteConfig(platform=["meta_ads"], sinks=["console"])], "default_sinks": []})
    names = [s.name for s in config.alerts.sinks]
    router = Router(routed, names)
    assert "console" in [t.sink for t in router.targets(payload)]
    assert "console" not in [t.sink for t in router.targets({**payload, "platform": "google_ads"})]


@pytest.mark.parametrize(
    "tail, line",
    [
        ("  campaign_url: {tiktok: 'https://ads.example/{campaign_id}'}\n",
         "config.yaml: alerts.campaign_url: expected platforms among google_ads, microsoft_ads, meta_ads, got 'tiktok'"),
        ("  campaign_url: {meta_ads: 'http://ads.example/{campaign_id}'}\n",
         "config.yaml: alerts.campaign_url: meta_ads: expected an https:// URL, got 'http://ads.example/{campaign_id}'"),
        ("  routes:\n    - {platform: bing, sinks: [console]}\n",
         "config.yaml: alerts.routes[0].platform[0]: input should be 'google_ads', 'microsoft_ads' or 'meta_ads', got 'bing'"),
    ],
)
def test_platform_settings_are_checked(tmp_path, tail, line):
    text = "alerts:\n  sinks:\n    - type: console\n" + tail
    error = load_error(write_case(tmp_path, text))
    assert line in str(error).replace(str(tmp_path.resolve()) + "/", "")


def test_a_csv_source_names_only_a_known_platform(tmp_path):
    text = "sources:\n  - {type: csv, name: s, metrics: [m.csv], platform: linkedin}\n"
    error = load_error(write_case(tmp_path, text))
    assert "config.yaml: sources[0].platform: input should be 'google_ads', 'microsoft_ads' or 'meta_ads', got 'linkedin'" in str(error).replace(
        str(tmp_path.resolve()) + "/", ""
    )
