"""Charts of the evidence pack and the notebooks, drawn on a matplotlib ``Axes``.

Each function draws one thing on the axes it is given, from the frames of ``anomaly.analysis``,
so a notebook can put it in a grid and a report can turn it into inline SVG (``svg``). Parties keep
one colour everywhere (``party_colors``). No text from data is parsed as math: a ``$`` in a name
stays a dollar sign. This module leaves the matplotlib backend alone (Jupyter keeps its inline
plots); the report commands choose Agg.
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterable, Mapping

import matplotlib.dates as mdates
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.text import Text

from anomaly.alerts.render import money

#: Colour-blind-safe (Okabe–Ito), in the order parties are listed.
PALETTE = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#F0E442", "#999999")
STYLE = {"text.parse_math": False, "svg.fonttype": "path", "svg.hashsalt": "anomaly-report", "font.size": 9}
CPL_COLOR, BASELINE_COLOR, BAND_COLOR = "#B2182B", "#2166AC", "#92C5DE"


def party_colors(parties: Iterable[str]) -> dict[str, str]:
    """One colour per party key, stable for a given list of parties."""
    return {party: PALETTE[i % len(PALETTE)] for i, party in enumerate(dict.fromkeys(parties))}


def new_figure(rows: int = 1, *, height: float = 2.8, width: float = 9.0) -> tuple[Figure, np.ndarray]:
    """A figure of ``rows`` axes sharing the date axis, in the reports' style."""
    with plt.rc_context(STYLE):
        figure, axes = plt.subplots(rows, 1, figsize=(width, height * rows), sharex=True, squeeze=False)
    return figure, axes[:, 0]


def shade_ownership(ax: Axes, daily: pd.DataFrame, colors: Mapping[str, str], names: Mapping[str, str] | None = None) -> None:
    """Shade each run of days one party managed, in its colour, labelled once per party."""
    if daily.empty:
        return
    days = daily.sort_values("date")
    runs = (days["managing_party"] != days["managing_party"].shift()).cumsum()
    labelled: set[str] = set()
    for _, run in days.groupby(runs):
        party = run["managing_party"].iat[0]
        start, end = run["date"].iat[0] - pd.Timedelta(hours=12), run["date"].iat[-1] + pd.Timedelta(hours=12)
        label = None if party in labelled else f"managed by {(names or {}).get(party, party)}"
        labelled.add(party)
        ax.axvspan(start, end, color=colors.get(party, "#999999"), alpha=0.08, linewidth=0, label=label)


def draw_cost_per_lead(
    ax: Axes,
    daily: pd.DataFrame,
    *,
    colors: Mapping[str, str] | None = None,
    names: Mapping[str, str] | None = None,
    incidents: pd.DataFrame | None = None,
    currency: str = "USD",
) -> None:
    """One campaign's daily cost per lead against its baseline and ±30% band (``daily`` as from
    ``Project.daily`` for one campaign), ownership shaded, and each incident's onset to last day
    marked. A day with spend and no leads shows as a triangle at the top."""
    days = daily.sort_values("date")
    if colors is not None:
        shade_ownership(ax, days, colors, names)
    ax.fill_between(days["date"], days["band_low"], days["band_high"], color=BAND_COLOR, alpha=0.45, linewidth=0, label="baseline ±30%")
    ax.plot(days["date"], days["baseline_cpl"], color=BASELINE_COLOR, linewidth=1.4, label="baseline")
    ax.plot(days["date"], days["cpl"], color=CPL_COLOR, marker="o", markersize=2.5, linewidth=1.2, label="cost per lead")
    known = pd.concat([days["cpl"], days["band_high"]]).replace([np.inf, -np.inf], np.nan).dropna()
    top = float(known.max()) * 1.12 if len(known) else 1.0
    no_leads = days[(days["leads"] == 0) & (days["spend"] > 0)]
    if len(no_leads):
        ax.scatter(no_leads["date"], np.full(len(no_leads), top), marker="v", color=CPL_COLOR, zorder=3, s=18, label="spend, no leads")
    for incident in (incidents.itertuples() if incidents is not None else []):
        _mark_incident(ax, incident, top)
    ax.set_ylim(0, top * 1.06)
    ax.yaxis.set_major_formatter(_money_ticks(currency))
    ax.set_ylabel("cost per lead")
    _finish(ax)


def _mark_incident(ax: Axes, incident, top: float) -> None:
    """An incident (a row of ``Project.incidents`` or ``Project.backtest``) as a bar from onset to
    its end across the top, and a dashed line at onset."""
    ends = [getattr(incident, name, pd.NaT) for name in ("resolved_on", "last_active", "detected_on")]
    end = next((e for e in ends if not pd.isna(e)), incident.onset)
    ax.axvspan(incident.onset - pd.Timedelta(hours=12), end + pd.Timedelta(hours=12), ymin=0.97, ymax=1.0, color=CPL_COLOR, alpha=0.8, linewidth=0)
    ax.axvline(incident.onset, color="#333333", linestyle="--", linewidth=0.9)
    name = f"incident {incident.id}" if hasattr(incident, "id") else getattr(incident, "rule", "incident")
    ax.annotate(name, (incident.onset, top), xytext=(3, -10), textcoords="offset points", fontsize=7)


def draw_spend(
    ax: Axes,
    daily: pd.DataFrame,
    *,
    colors: Mapping[str, str] | None = None,
    names: Mapping[str, str] | None = None,
    currency: str = "USD",
) -> None:
    """Daily spend as bars in the managing party's colour, against the spend usual for that weekday."""
    days = daily.sort_values("date")
    bar_colors = [(colors or {}).get(p, "#777777") for p in days["managing_party"]]
    ax.bar(days["date"], days["spend"], color=bar_colors, width=0.8, alpha=0.85, label="spend")
    ax.plot(days["date"], days["expected_spend"], color="#333333", linewidth=1.2, linestyle="-", label="usual for the weekday")
    ax.yaxis.set_major_formatter(_money_ticks(currency))
    ax.set_ylabel("spend")
    ax.set_ylim(bottom=0)
    _finish(ax)


def draw_excess(ax: Axes, excess: pd.DataFrame, *, colors: Mapping[str, str] | None = None, currency: str = "USD") -> None:
    """An incident's excess cost by day (``Project.excess_by_day``), each bar in the colour of
    the party managing that day, with the running total."""
    days = excess.sort_values("date")
    ax.bar(days["date"], days["excess"], color=[(colors or {}).get(p, "#777777") for p in days["managing_party"]], width=0.8)
    twin = ax.twinx()
    twin.plot(days["date"], days["excess"].cumsum(), color="#333333", marker="o", markersize=2.5, linewidth=1.2, label="running total")
    for axis in (ax, twin):
        axis.yaxis.set_major_formatter(_money_ticks(currency))
    twin.set_ylim(bottom=min(0.0, float(days["excess"].cumsum().min())) if len(days) else 0.0)
    twin.spines["top"].set_visible(False)
    twin.tick_params(labelsize=STYLE["font.size"])
    ax.set_ylabel("excess per day")
    twin.set_ylabel("running total")
    ax.axhline(0, color="#333333", linewidth=0.6)
    _finish(ax)


def _money_ticks(currency: str):
    """Axis labels in whole money: ``$0``, ``$250``, ``$1,500``."""
    return lambda value, _pos: money(value, currency).replace(".00", "")


def _finish(ax: Axes) -> None:
    ax.grid(alpha=0.25, linewidth=0.6)
    first, last = ax.get_xlim()
    # a short span gets one tick a day: the automatic locator would put ticks at noon, labelled twice
    ax.xaxis.set_major_locator(mdates.DayLocator() if last - first <= 10 else mdates.AutoDateLocator(minticks=4, maxticks=10))
    ax.xaxis.set_major_formatter(mdates.DateFormatter("%b %d"))
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    handles, labels = ax.get_legend_handles_labels()
    if handles:  # above the plot, where it hides no data
        ax.legend(handles, labels, fontsize=7, loc="lower left", bbox_to_anchor=(0, 1.0), frameon=False, ncol=min(len(handles), 4), borderaxespad=0.2)
    plain_text(ax.figure)


def plain_text(figure: Figure) -> None:
    """Draw every text of ``figure`` as written: names from data may hold ``$``."""
    for text in figure.findobj(Text):
        text.set_parse_math(False)


def svg(figure: Figure) -> str:
    """The figure as an inline ``<svg>`` element (no XML prolog, no external reference), then closed."""
    buffer = io.StringIO()
    plain_text(figure)
    try:
        with plt.rc_context(STYLE):
            figure.savefig(buffer, format="svg", bbox_inches="tight", metadata={"Date": None, "Creator": None})
    finally:
        plt.close(figure)
    text = buffer.getvalue()
    return re.sub(r"^.*?(?=<svg)", "", text, count=1, flags=re.S)


def draw_party_cpl(ax: Axes, parties: pd.DataFrame, portfolio_cpl: float, *, colors: Mapping[str, str] | None = None, currency: str = "USD") -> None:
    """Each party's cost per lead as a horizontal bar (``name``, ``party``, ``cpl`` columns), with
    the portfolio's as a line: a bar past the line is dearer than the portfolio."""
    rows = parties.dropna(subset=["cpl"]).iloc[::-1]
    ax.barh(rows["name"], rows["cpl"], color=[(colors or {}).get(p, "#777777") for p in rows["party"]], height=0.6)
    if portfolio_cpl == portfolio_cpl:  # not NaN
        ax.axvline(portfolio_cpl, color="#333333", linestyle="--", linewidth=1)
        ax.annotate(f"portfolio {money(portfolio_cpl, currency)}", (portfolio_cpl, 1.0), xycoords=("data", "axes fraction"),
                    xytext=(0, 3), textcoords="offset points", ha="center", va="bottom", fontsize=8)
    for y, value in enumerate(rows["cpl"]):
        ax.annotate(money(value, currency), (value, y), xytext=(4, 0), textcoords="offset points", va="center", fontsize=8)
    ax.xaxis.set_major_formatter(_money_ticks(currency))
    ax.set_xlabel("cost per lead")
    ax.grid(alpha=0.25, linewidth=0.6, axis="x")
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
