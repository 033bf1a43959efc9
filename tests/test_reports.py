"""The evidence pack and the party scorecard: figures, escaping, self-containment, files."""

from __future__ import annotations

import contextlib
import csv
import io
import json
import re
from html.parser import HTMLParser
from pathlib import Path

import matplotlib.image
import pandas as pd
import pytest

from anomaly import sample
from anomaly.analysis import Project
from anomaly.cli import main
from anomaly.config import SettlementConfig
from anomaly.reports.evidence import propose_split
from anomaly.reports.render import ReportError, write_report
from tests.browser import find_chromium, open_page
from tests.helpers import copy_default_project

HANDOFF_INCIDENT = 2


def run(config: Path, *argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["--config", str(config), *argv])
    return code, out.getvalue(), err.getvalue()


def sample_metrics(config: Path) -> pd.DataFrame:
    frame = pd.read_csv(config.parent / "sample" / "metrics.csv", dtype={"account_id": str, "campaign_id": str})
    frame["date"] = pd.to_datetime(frame["date"])
    return frame


@pytest.fixture(scope="module")
def pack(demo_config: Path, tmp_path_factory) -> dict:
    """`anomaly report 2` on the demo: its printout and the two files it wrote."""
    out = tmp_path_factory.mktemp("reports")
    code, printed, _ = run(demo_config, "report", str(HANDOFF_INCIDENT), "--out", str(out))
    assert code == 0
    html_path, md_path = out / "incident-2.html", out / "incident-2.md"
    return {"printed": printed, "html_path": html_path, "html": html_path.read_text(), "md": md_path.read_text(), "out": out}


def story_excess_by_day() -> dict[str, float]:
    """Each spike day's spend minus its leads at the story's pre-onset cost per lead, from the
    numbers the sample writes: the alert's $101 baseline."""
    baseline = 100.5158  # the cost per lead before 2026-07-10 the service derived, shown in the alert
    return {
        day.isoformat(): spend - leads * baseline
        for day, (spend, _clicks, leads) in sample.STORY_DAYS.items()
        if day >= sample.ONSET
    }


# -- the evidence pack of the handoff incident ---------------------------------------------------


def test_pack_names_the_partner_the_dates_and_the_excess(pack):
    text = _text(pack["html"])
    assert "Cost per lead 9.0× baseline: fewer leads per click — Harbor Dental Group / Generic - Leads" in text
    assert "Managed at onset by Beacon Reach since 2026-07-08 (2 days before onset)" in text
    assert "Onset Fri 2026-07-10 detected the same day" in text
    assert "Excess cost ~$5,617" in text
    assert "data through Sun 2026-07-12" in text


def test_pack_timeline_runs_from_handoff_to_each_alert(pack):
    timeline = re.search(r'<ol class="timeline">(.*?)</ol>', pack["html"], re.S).group(1)
    events = [_text(item) for item in re.findall(r"<li[^>]*>(.*?)</li>", timeline, re.S)]
    assert events[:4] == [
        "Wed 2026-07-08 · Beacon Reach takes over — from Northwind Digital",
        "Fri 2026-07-10 · Onset — the first day of the worse rate, the most likely changepoint in the data",
        "Fri 2026-07-10 · Detected by cpl-spike-1d — cost per lead $561 against a $101 baseline, the day of onset",
        "Sun 2026-07-12 · Still open — last bad day 2026-07-12; the store's data ends here",
    ]
    sent = [e for e in events if " sent — delivered" in e]
    # the demo's two sinks each got the alert and its "excess past $5,000" update
    assert sorted(e.split(" · ", 1)[1].split(" to ")[0] for e in sent) == ["Alert", "Alert", "Update", "Update"]
    # where a person saw them, not the sinks' names or file paths
    assert sorted({e.split(" to ", 1)[1].split(" sent")[0] for e in sent}) == ["the alert log alerts.jsonl", "the console"]


@pytest.mark.parametrize(
    ("sink", "seen"),
    [
        ("console", "the console"),
        ("jsonl:/srv/anomaly/logs/alerts.jsonl", "the alert log alerts.jsonl"),
        ("slack:C0ALERTS", "Slack C0ALERTS"),
        ("slack:#media-alerts", "Slack #media-alerts"),
        ("slack-webhook:media-alerts", "Slack (webhook media-alerts)"),
    ],
)
def test_the_timeline_says_where_a_person_saw_each_notification(sink, seen):
    from anomaly.reports.evidence import where_seen

    assert where_seen(sink) == seen


def test_pack_excess_by_day_adds_up_to_the_incident_and_the_sample(pack, demo_config):
    rows = _table(pack["html"], "excess-by-day")
    assert [r[0] for r in rows] == ["Fri 2026-07-10", "Sat 2026-07-11", "Sun 2026-07-12"]
    assert {r[1] for r in rows} == {"Beacon Reach"}
    expected = story_excess_by_day()
    assert [r[5] for r in rows] == [f"${v:,.0f}" for v in expected.values()]
    assert rows[-1][6] == "$5,617"  # the running total ends at the incident's excess
    project = Project.open(demo_config)
    excess = project.excess_by_day(HANDOFF_INCIDENT)
    assert excess["excess"].sum() == pytest.approx(sum(expected.values()), abs=0.01)
    assert excess["excess"].sum() == pytest.approx(project.incident(HANDOFF_INCIDENT)["excess_cost"], abs=0.01)
    assert _table(pack["html"], "excess-by-party") == [["Beacon Reach", "3", "$6,321", "7.0", "$5,617"]]


def test_pack_proposes_the_contract_split(pack):
    split = re.search(r'<h2 id="split">.*?<table>(.*?)</table>', pack["html"], re.S).group(1)
    rows = [[_text(c) for c in re.findall(r"<td[^>]*>(.*?)</td>", r, re.S)] for r in re.findall(r"<tr[^>]*>(.*?)</tr>", split, re.S)][1:]
    assert [r[:3] for r in rows] == [["Beacon Reach", "$4,494", "80%"], ["Northwind Digital", "$1,123", "20%"], ["Total", "$5,617", "100%"]]
    assert "20% of Beacon Reach's part under its contract" in rows[1][3]
    assert "Proposed split (settlement in config.yaml):" in pack["printed"]
    assert re.search(r"Northwind Digital\s+\$1,123\s+20\.0%", pack["printed"])


def test_pack_lists_every_change_in_the_window_with_its_party(pack):
    md = pack["md"]
    section = md.split("## Changes from Fri 2026-06-19 to Sun 2026-07-12 (4)", 1)[1]
    assert "| 2026-07-08 10:00 | tom.reed@northwind-digital.example | Northwind Digital | account | CUSTOMER\\_USER\\_ACCESS CREATE |" in section
    assert "| 2026-07-09 15:41 | dana.kim@beaconreach.example | Beacon Reach | 20118341 | CAMPAIGN UPDATE |" in section
    assert "| 2026-07-09 16:07 | ops@beaconreach.example | Beacon Reach | 20118341 | CAMPAIGN\\_BUDGET UPDATE |" in section


def test_pack_markdown_carries_the_same_figures(pack):
    md = pack["md"]
    assert md.startswith("# Incident 2: Cost per lead 9.0× baseline: fewer leads per click — Harbor Dental Group / Generic - Leads\n")
    assert "| **Excess cost** | **~$5,617**, 3 days from onset |" in md
    assert "| Managed at onset by | Beacon Reach, since 2026-07-08 \\(2 days before onset\\) |" not in md  # parentheses stay plain
    assert "| Managed at onset by | Beacon Reach, since 2026-07-08 (2 days before onset) |" in md
    assert "| Beacon Reach | $4,494 | 80% |" in md and "| Northwind Digital | $1,123 | 20% |" in md
    assert "| Fri 2026-07-10 | Beacon Reach | $1,684 | 3.0 | $561 | $1,383 |" in md
    assert "| Beacon Reach | the whole account | Wed 2026-07-08 | now | config.yaml |" in md


def test_pack_prints_where_it_wrote_and_the_alert(pack):
    assert pack["printed"].startswith("[CRITICAL] Cost per lead 9.0× baseline: fewer leads per click — Harbor Dental Group / Generic - Leads\n")
    assert f"Written: {pack['html_path']}" in pack["printed"]
    assert sorted(p.name for p in pack["out"].iterdir()) == ["incident-2.html", "incident-2.md"]


# -- self-contained: nothing loads from elsewhere ------------------------------------------------

FETCHING_ATTRIBUTES = {"src", "href", "xlink:href", "srcset", "action", "formaction", "poster", "data", "background", "manifest"}


class _References(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags: set[str] = set()
        self.references: list[str] = []
        self.styles: list[str] = []
        self._in_style = False

    def handle_starttag(self, tag, attrs):
        self.tags.add(tag)
        self._in_style = tag == "style"
        for name, value in attrs:
            if name in FETCHING_ATTRIBUTES:
                self.references.append(value or "")
            if name == "style":
                self.styles.append(value or "")

    handle_startendtag = handle_starttag

    def handle_data(self, data):
        if self._in_style:
            self.styles.append(data)


def test_pack_references_nothing_outside_itself(pack):
    found = _References()
    found.feed(pack["html"])
    assert not found.tags & {"script", "link", "iframe", "object", "embed", "img", "base"}
    assert all(ref.startswith("#") for ref in found.references), found.references
    css = "\n".join(found.styles)
    assert "@import" not in css and "@font-face" not in css
    assert not re.search(r"url\(", css)
    assert found.tags >= {"svg", "table"}
    # and the page itself forbids any load, should anything slip in
    assert "Content-Security-Policy\" content=\"default-src 'none'" in pack["html"]


def test_pack_renders_offline_in_a_browser(pack):
    """In headless Chromium where it is installed (CI installs Debian's package), else by parsing:
    the page shows its figures and draws both charts, and the page asks for nothing but itself."""
    chromium = find_chromium()
    if chromium is None:
        found = _References()
        found.feed(pack["html"])
        text, charts, requests = _text(pack["html"]), pack["html"].count("<svg"), [pack["html_path"].as_uri(), *found.references]
        requests = [r for r in requests if not r.startswith("#")]
    else:
        page = open_page(pack["html_path"], chromium, {"excess": "document.getElementById('excess-total').textContent"})
        text, charts, requests = page.text, page.svg_count, page.requests
        assert page.values["excess"] == "~$5,617"
        assert page.failed == []
        image = matplotlib.image.imread(io.BytesIO(page.screenshot), format="png")
        assert image.shape[0] >= 600 and image.std() > 0.05  # a rendered page, not a blank one
    assert requests == [pack["html_path"].as_uri()]
    assert charts == 2
    assert "Beacon Reach" in text and "$4,494" in text and "Fri 2026-07-10" in text


# -- escaping: names and changes from data stay text -----------------------------------------------


@pytest.fixture(scope="module")
def hostile(tmp_path_factory) -> dict:
    """The demo with markup and Markdown in a campaign name, a user's email and a changed value."""
    folder = tmp_path_factory.mktemp("hostile")
    config = copy_default_project(folder)
    sample.write_sample(folder / "sample")
    name = "<img src=x onerror=alert(1)> | *Leads* [x](http://evil.example)"
    metrics = pd.read_csv(folder / "sample" / "metrics.csv", dtype=str, keep_default_na=False)
    metrics.loc[metrics["campaign_id"] == sample.STORY_CAMPAIGN.campaign_id, "campaign_name"] = name
    metrics.to_csv(folder / "sample" / "metrics.csv", index=False)
    changes = pd.read_csv(folder / "sample" / "changes.csv", dtype=str, keep_default_na=False)
    changes.loc[changes["user_email"] == "ops@beaconreach.example", "changed_fields"] = "</td><script>alert(2)</script> `code` _x_"
    changes.to_csv(folder / "sample" / "changes.csv", index=False)
    assert run(config, "run", "--today", str(sample.END))[0] == 0
    out = folder / "reports"
    incidents = Project.open(config).incidents()
    incident = int(incidents.loc[incidents["campaign_id"] == sample.STORY_CAMPAIGN.campaign_id, "id"].iloc[0])
    assert run(config, "report", str(incident), "--out", str(out))[0] == 0
    return {"html": (out / f"incident-{incident}.html").read_text(), "md": (out / f"incident-{incident}.md").read_text(), "name": name}


def test_markup_from_data_is_escaped_in_the_html(hostile):
    html = hostile["html"]
    assert "<img" not in html and "<script" not in html and "</td><script>" not in html
    assert "&lt;img src=x onerror=alert(1)&gt; | *Leads* [x](http://evil.example)" in html
    assert "&lt;/td&gt;&lt;script&gt;alert(2)&lt;/script&gt;" in html
    found = _References()
    found.feed(html)
    assert all(ref.startswith("#") for ref in found.references)


def test_markdown_from_data_is_escaped_in_the_summary(hostile):
    md = hostile["md"]
    assert "\\<img src=x onerror=alert(1)\\> \\| \\*Leads\\* \\[x\\](http://evil.example)" in md
    assert "\\</td\\>\\<script\\>alert(2)\\</script\\> \\`code\\` \\_x\\_" in md
    # every table row of the changes keeps its six cells: no "|" from data splits one
    section = md.split("## Changes", 1)[1]
    rows = [line for line in section.splitlines() if line.startswith("| 20")]
    assert rows and all(len(re.split(r"(?<!\\)\|", row)) == 8 for row in rows)


# -- the proposed split, as a table of cases -----------------------------------------------------

BEACON_80_20 = {"beacon": {"beacon": 80, "northwind": 20}}


@pytest.mark.parametrize(
    ("excess", "changes", "settlement", "expected"),
    [
        pytest.param({"beacon": 1000.0}, [], {"shares": BEACON_80_20}, {"beacon": 800.0, "northwind": 200.0}, id="contract-shares"),
        pytest.param({"beacon": 1000.0}, [], {}, {"beacon": 1000.0}, id="no-shares-the-manager-bears-it"),
        pytest.param(
            {"northwind": 300.0, "beacon": 700.0}, [], {"shares": BEACON_80_20}, {"beacon": 560.0, "northwind": 440.0}, id="across-a-handoff"
        ),
        pytest.param({"beacon": 1000.0, "northwind": 0.0}, [], {}, {"beacon": 1000.0}, id="a-party-with-no-excess-pays-nothing"),
        pytest.param(
            {"beacon": 1000.0},
            [{"party": "beacon"}, {"party": "beacon"}, {"party": "northwind"}, {"party": "automated"}, {"party": "unattributed"}],
            {"bears": "changed_by"},
            {"beacon": 666.67, "northwind": 333.33},
            id="changed-by-counts-people-not-tools",
        ),
        pytest.param({"beacon": 1000.0}, [{"party": "automated"}], {"bears": "changed_by"}, {"beacon": 1000.0}, id="changed-by-no-people-the-manager"),
        pytest.param(
            {"beacon": 1000.0},
            [{"party": "beacon"}],
            {"bears": "changed_by", "shares": {"beacon": {"beacon": 50, "northwind": 50}}},
            {"beacon": 500.0, "northwind": 500.0},
            id="changed-by-then-contract",
        ),
    ],
)
def test_propose_split(excess, changes, settlement, expected):
    lines = propose_split(excess, changes, "beacon", SettlementConfig(**settlement))
    assert {line.party: round(line.amount, 2) for line in lines} == expected
    assert sum(line.percent for line in lines) == pytest.approx(100.0)
    assert [line.amount for line in lines] == sorted((line.amount for line in lines), reverse=True)


# -- the party scorecard -------------------------------------------------------------------------


def test_scorecard_of_the_partner_over_the_handoff(demo_config, tmp_path):
    code, printed, _ = run(demo_config, "report", "--party", "Beacon Reach", "--from", "2026-07-01", "--to", "2026-07-12", "--out", str(tmp_path))
    assert code == 0
    metrics = sample_metrics(demo_config)
    period = metrics[(metrics["date"] >= "2026-07-01") & (metrics["date"] <= "2026-07-12")]
    theirs = period[(period["account_id"] == sample.HARBOR[0]) & (period["date"] >= pd.Timestamp(sample.HANDOFF))]
    spend, cpl = theirs["spend"].sum(), theirs["spend"].sum() / theirs["leads"].sum()
    portfolio = period["spend"].sum() / period["leads"].sum()
    row = next(line for line in printed.splitlines() if line.startswith("Beacon Reach"))
    cells = re.split(r"\s{2,}", row)
    assert cells == ["Beacon Reach", "1", "3", f"${spend:,.0f}", f"${cpl:,.0f}", f"{cpl / portfolio:.2f}×", "1 (1 open)", "0", "–", "$5,617"]
    assert f"portfolio cost per lead ${portfolio:,.0f}" in printed
    md = (tmp_path / "scorecard-beacon-2026-07-01-2026-07-12.md").read_text()
    assert "| #2 cpl-spike-1d | Harbor Dental Group / Generic - Leads | Fri 2026-07-10 | Fri 2026-07-10 | open | critical | $5,617 |" in md
    assert "Accounts managed: Harbor Dental Group (4821937710, Google Ads, 5 days," in md
    html = (tmp_path / "scorecard-beacon-2026-07-01-2026-07-12.html").read_text()
    assert 'id="party-beacon"' in html and "<script" not in html


def test_scorecard_of_every_party_adds_up_to_the_portfolio(demo_config, tmp_path):
    code, printed, _ = run(demo_config, "report", "--out", str(tmp_path))  # the 30 days up to the last day with data
    assert code == 0
    assert printed.startswith("Party scorecard 2026-06-13 to 2026-07-12")
    project = Project.open(demo_config)
    from anomaly.reports.scorecard import party_scorecard

    card = party_scorecard(project, pd.Timestamp("2026-06-13").date(), sample.END)
    assert card.parties["spend"].sum() == pytest.approx(card.portfolio["spend"])
    assert card.parties["incidents"].tolist() == [1, 1] and card.parties["party"].tolist() == ["northwind", "beacon"]
    assert card.party("northwind")["excess_cost"] == pytest.approx(4732.80, abs=0.01)  # Lakeside Law's lost tracking
    assert card.portfolio["excess_cost"] == pytest.approx(4732.80 + 5617.44, abs=0.02)
    assert (tmp_path / "scorecard-all-2026-06-13-2026-07-12.html").exists()


def test_a_scorecard_of_many_long_named_parties_gets_a_short_file_name(tmp_path):
    config = copy_default_project(tmp_path)
    long_keys = [f"partner-{n}-{'x' * 50}" for n in range(3)]
    text = config.read_text().replace("parties:\n", "parties:\n" + "".join(f"  {k}: {{name: Partner {n}}}\n" for n, k in enumerate(long_keys)), 1)
    config.write_text(text)
    with contextlib.redirect_stdout(io.StringIO()):
        assert main(["--config", str(config), "demo"]) == 0
    argv = [a for k in long_keys for a in ("--party", k)]
    code, printed, err = run(config, "report", *argv, "--out", str(tmp_path / "out"))
    assert (code, err) == (0, "")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["scorecard-3-parties-2026-06-13-2026-07-12.html", "scorecard-3-parties-2026-06-13-2026-07-12.md"]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        pytest.param(["--party", "acme"], "command line: --party: no party is called 'acme' (defined: northwind (Northwind Digital), beacon (Beacon Reach))", id="unknown-party"),
        pytest.param(["--from", "2026-07-10", "--to", "2026-07-01"], "command line: --to 2026-07-01 is before --from 2026-07-10", id="backwards"),
        pytest.param(["2", "--party", "beacon"], "command line: --party, --from and --to make a party scorecard: give them without an incident id", id="both"),
    ],
)
def test_report_refuses_bad_arguments(demo_config, tmp_path, argv, message):
    code, _, err = run(demo_config, "report", *argv, "--out", str(tmp_path))
    assert code == 1 and err.strip() == message
    assert not any(tmp_path.iterdir())


def test_report_of_an_unknown_incident(demo_config, tmp_path):
    code, _, err = run(demo_config, "report", "99", "--out", str(tmp_path))
    assert code == 1 and err.strip() == "no incident 99; `anomaly incidents` lists them"


# -- anomaly incidents: filters and formats -------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "ids"),
    [
        pytest.param([], [1, 2], id="all"),
        pytest.param(["--party", "beacon"], [2], id="party-key"),
        pytest.param(["--party", "NORTHWIND DIGITAL"], [1], id="party-name-any-case"),
        pytest.param(["--account", "3307714460", "--account", "4821937710"], [1, 2], id="accounts"),
        pytest.param(["--account", "6150048821"], [], id="quiet-account"),
        pytest.param(["--to", "2026-07-09"], [1], id="begun-by"),
        pytest.param(["--from", "2026-07-12", "--to", "2026-07-12"], [1, 2], id="still-open-then"),
        pytest.param(["--status", "resolved"], [], id="status"),
    ],
)
def test_incidents_filters(demo_config, argv, ids):
    code, out, _ = run(demo_config, "incidents", *argv, "--format", "json")
    assert code == 0
    assert [r["id"] for r in json.loads(out)] == ids


def test_incidents_as_json_and_csv(demo_config):
    _, out, _ = run(demo_config, "incidents", "--party", "beacon", "--format", "json")
    (record,) = json.loads(out)
    assert {k: record[k] for k in ("id", "status", "severity", "onset", "detected_on", "resolved_on", "managing_party", "party_name", "party_since")} == {
        "id": 2, "status": "open", "severity": "critical", "onset": "2026-07-10", "detected_on": "2026-07-10", "resolved_on": None,
        "managing_party": "beacon", "party_name": "Beacon Reach", "party_since": "2026-07-08",
    }
    assert record["excess_cost"] == pytest.approx(5617.44) and record["excess_by_party"] == {"beacon": pytest.approx(5617.44, abs=0.01)}
    assert record["campaign_name"] == "Generic - Leads" and record["changes"] == 4 and record["announced"] is True
    _, out, _ = run(demo_config, "incidents", "--format", "csv")
    rows = list(csv.DictReader(io.StringIO(out)))
    assert [r["id"] for r in rows] == ["1", "2"]
    assert rows[0]["account_name"] == "Lakeside Law" and rows[0]["resolved_on"] == "" and rows[1]["excess_by_party"] == "Beacon Reach: 5617.44"


def test_incidents_table_and_bad_filters(demo_config):
    _, out, _ = run(demo_config, "incidents", "--party", "beacon")
    assert out.splitlines()[2].split() == ["2", "open", "critical", "2026-07-10", "2026-07-10", "Harbor", "Dental", "Group", "Generic", "-", "Leads", "cpl-spike-1d", "Beacon", "Reach", "$5,617"]
    code, _, err = run(demo_config, "incidents", "--from", "2026-07-12", "--to", "2026-07-01")
    assert code == 1 and err.strip() == "command line: --to 2026-07-01 is before --from 2026-07-12"


# -- writing files -------------------------------------------------------------------------------


@pytest.mark.parametrize("stem", ["../escape", "a/b", "/etc/passwd", "Incident", "", ".hidden", "x..y"])
def test_a_report_name_that_could_leave_the_folder_is_refused(tmp_path, stem):
    with pytest.raises(ReportError, match="refusing the report name"):
        write_report(tmp_path / "out", stem, "<p>", "text")
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_a_report_replaces_the_old_one_whole(tmp_path):
    write_report(tmp_path, "incident-1", "old", "old")
    html, md = write_report(tmp_path, "incident-1", "<p>new</p>", "new")
    assert html.read_text() == "<p>new</p>" and md.read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["incident-1.html", "incident-1.md"]  # no temporary left


def test_an_unwritable_folder_is_a_clear_error(tmp_path):
    blocker = tmp_path / "reports"
    blocker.write_text("a file where the folder should be")
    with pytest.raises(ReportError, match=rf"cannot write the report into {re.escape(str(blocker))}: "):
        write_report(blocker, "incident-1", "<p>", "text")


# -- helpers -------------------------------------------------------------------------------------


def _text(html: str) -> str:
    """Visible text of an HTML fragment, whitespace folded, entities decoded."""
    import html as html_lib

    without_svg = re.sub(r"<svg.*?</svg>", " ", html, flags=re.S)
    without_style = re.sub(r"<style.*?</style>", " ", without_svg, flags=re.S)
    return " ".join(html_lib.unescape(re.sub(r"<[^>]+>", " ", without_style)).split())


def _table(html: str, table_id: str) -> list[list[str]]:
    body = re.search(rf'<table id="{table_id}">.*?<tbody>(.*?)</tbody>', html, re.S).group(1)
    return [[_text(c) for c in re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)] for row in re.findall(r"<tr[^>]*>(.*?)</tr>", body, re.S)]

