"""Render the evidence pack and the scorecard to self-contained HTML and Markdown, and write them.

HTML comes from Jinja2 templates with autoescaping, so every name, email and changed value from
the data is text, never markup; the charts are inline SVG drawn here. The page loads nothing: no
script, no stylesheet, font or image from elsewhere. Markdown escapes what would change its
meaning (``|``, ``*``, ``_``, brackets, ``<``). Files are written whole (a temporary file renamed
into place) under the output folder only.
"""

from __future__ import annotations

import datetime as dt
import math
import os
import re
import tempfile
from pathlib import Path

import matplotlib
import pandas as pd
from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape
from markupsafe import Markup

from anomaly.alerts.render import WHAT_BROKE, excess_split, headline, money
from anomaly.analysis import Project
from anomaly.errors import AnomalyError
from anomaly.platforms import platform_label

matplotlib.use("Agg")  # reports are drawn off screen, on any machine

from anomaly.reports import charts  # noqa: E402 - after the backend
from anomaly.reports.evidence import IncidentEvidence  # noqa: E402
from anomaly.reports.scorecard import Scorecard  # noqa: E402

_MARKDOWN_SPECIAL = re.compile(r"([\\`*_\[\]<>|~])")


def _md(value) -> str:
    """Text for a Markdown table cell or line: special characters escaped, line breaks folded."""
    text = "" if value is None else str(value)
    return _MARKDOWN_SPECIAL.sub(r"\\\1", " ".join(text.split()))


def _money(amount, currency: str = "USD") -> str:
    if amount is None or (isinstance(amount, float) and math.isnan(amount)):
        return "n/a"
    return money(float(amount), currency)


def _number(value, digits: int = 1) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{value:,.{digits}f}"


def _day(value) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NaT:
        return "–"
    return f"{pd.Timestamp(value):%a %Y-%m-%d}"


def _environment() -> Environment:
    env = Environment(
        loader=PackageLoader("anomaly.reports", "templates"),
        autoescape=select_autoescape(enabled_extensions=("html", "html.j2"), default_for_string=False),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters.update(md=_md, money=_money, number=_number, day=_day)
    return env


ENV = _environment()


def _context(project: Project) -> dict:
    return {
        "generated_at": f"{dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC",
        "store": project.store.describe(),
        "config": str(project.config_path or ""),
        "party_name": project.party_name,
    }


# -- the incident ---------------------------------------------------------------------------------


def incident_charts(evidence: IncidentEvidence, project: Project) -> dict[str, Markup]:
    """The pack's two figures as inline SVG: cost per lead and spend around the incident, and the
    excess cost by day in the managing party's colour."""
    colors = charts.party_colors([*project.config.parties, *evidence.days["managing_party"].unique()])
    names = {key: project.party_name(key) for key in colors}
    incident = pd.DataFrame([evidence.incident])
    figure, (cpl_axes, spend_axes) = charts.new_figure(2)
    charts.draw_cost_per_lead(cpl_axes, evidence.days, colors=colors, names=names, incidents=incident, currency=evidence.currency)
    charts.draw_spend(spend_axes, evidence.days, colors=colors, names=names, currency=evidence.currency)
    around = Markup(charts.svg(figure))  # noqa: S704 - drawn here by matplotlib, which escapes any text it writes
    figure, (excess_axes,) = charts.new_figure(1, height=2.4)
    charts.draw_excess(excess_axes, evidence.excess, colors=colors, currency=evidence.currency)
    excess = Markup(charts.svg(figure))  # noqa: S704
    return {"around": around, "excess": excess, "colors": colors}


def incident_facts(evidence: IncidentEvidence, project: Project) -> dict[str, str]:
    """The short phrases the pack's summary shows, worded as the alert words them."""
    i, currency = evidence.incident, evidence.currency
    onset, detected = i["onset"].date(), i["detected_on"].date()
    lag = (detected - onset).days
    last = i["resolved_on"] if not pd.isna(i["resolved_on"]) else None
    since = i["party_since"]
    managed = ""
    if not pd.isna(since):
        gap = (onset - since.date()).days
        managed = f"since {since:%Y-%m-%d} ({'on the day of onset' if gap == 0 else f'{gap} day' + ('s' if gap != 1 else '') + ' before onset'})"
    ratio = i["cpl"] / i["baseline_cpl"] if i["cpl"] and i["baseline_cpl"] else None
    settlement = evidence.settlement
    terms = ""
    if settlement is not None:
        shares = "; ".join(
            f"what {project.party_name(b)} bears is shared " + ", ".join(f"{project.party_name(p)} {v:g}%" for p, v in split.items())
            for b, split in settlement.shares.items()
        )
        bears = "each day's excess falls to the party managing that day" if settlement.bears == "managing_party" else (
            "the excess falls to the parties whose people made the changes before detection, by their number"
        )
        terms = f"{bears}" + (f"; {shares}." if shares else ".")
    return {
        "status": f"Resolved {last:%a %Y-%m-%d}" if last is not None else "Open",
        "account": f"{i['account_name']} ({i['account_id']})" + (f" on {platform}" if (platform := platform_label(i.get("platform"))) else ""),
        "scope": f"{i['campaign_name']} ({i['campaign_id']})" if i["campaign_id"] else "all campaigns of the account",
        "detected_note": "detected the same day" if lag == 0 else f"detected {i['detected_on']:%a %Y-%m-%d}, {lag} day{'s' if lag != 1 else ''} later",
        "cpl": money(i["cpl"], currency) if i["cpl"] else "no leads",
        "cpl_note": f"since onset, against {money(i['baseline_cpl'], currency)} baseline" + (f" ({ratio:.1f}×)" if ratio else ""),
        "managed_note": managed,
        "excess_span": f"{len(evidence.excess)} day{'s' if len(evidence.excess) != 1 else ''} from onset",
        "terms": terms,
        "what_broke": _what_broke(evidence.payload, currency),
    }


def _what_broke(payload: dict, currency: str) -> str:
    """``Fewer leads per click (…): $X from dearer clicks · $Y from fewer leads per click``, or ""
    for an incident without a diagnosis."""
    what = WHAT_BROKE.get(payload.get("mechanism"))
    if what is None:
        return ""
    split = excess_split({**payload, "currency": currency}, money)
    return f"{what}: {split}" if split else what


def render_incident(evidence: IncidentEvidence, project: Project) -> tuple[str, str]:
    """The evidence pack as (HTML, Markdown)."""
    context = {
        **_context(project),
        "e": evidence,
        "i": evidence.incident,
        "headline": headline(evidence.payload),
        "currency": evidence.currency,
        "facts": incident_facts(evidence, project),
    }
    html = ENV.get_template("incident.html.j2").render(**context, charts=incident_charts(evidence, project))
    markdown = ENV.get_template("incident.md.j2").render(**context)
    return html, markdown


# -- the scorecard --------------------------------------------------------------------------------


def scorecard_chart(card: Scorecard, project: Project) -> Markup:
    colors = charts.party_colors([*project.config.parties, *card.parties["party"]])
    figure, (axes,) = charts.new_figure(1, height=0.5 + 0.45 * max(len(card.parties), 1), width=7.0)
    charts.draw_party_cpl(axes, card.parties, card.portfolio["cpl"], colors=colors, currency=card.portfolio["currency"])
    return Markup(charts.svg(figure))  # noqa: S704


def render_scorecard(card: Scorecard, project: Project) -> tuple[str, str]:
    """The party scorecard as (HTML, Markdown)."""
    context = {**_context(project), "card": card, "currency": card.portfolio["currency"]}
    html = ENV.get_template("scorecard.html.j2").render(**context, chart=scorecard_chart(card, project))
    markdown = ENV.get_template("scorecard.md.j2").render(**context)
    return html, markdown


# -- files ----------------------------------------------------------------------------------------

_STEM = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,150}$")


class ReportError(AnomalyError):
    """A report could not be written."""


def write_report(folder: Path, stem: str, html: str, markdown: str) -> tuple[Path, Path]:
    """Write ``stem.html`` and ``stem.md`` into ``folder`` (created if missing), each whole or not
    at all. ``stem`` is made by this package from ids, party keys and dates; one that could name a
    place outside ``folder`` is refused."""
    folder = Path(folder)
    if not _STEM.fullmatch(stem) or ".." in stem:
        raise ReportError(f"refusing the report name {stem!r}: expected lower-case letters, digits, '-', '_' and '.'")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        paths = []
        for suffix, text in ((".html", html), (".md", markdown)):
            target = (folder / f"{stem}{suffix}").resolve()
            if target.parent != folder.resolve():
                raise ReportError(f"refusing to write {target}: outside {folder.resolve()}")
            _write_whole(target, text)
            paths.append(target)
    except OSError as exc:
        raise ReportError(f"cannot write the report into {folder}: {exc.strerror or exc}") from None
    return paths[0], paths[1]


def _write_whole(target: Path, text: str) -> None:
    handle, temporary = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            out.write(text)
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
