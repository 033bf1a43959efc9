"""The chart that goes with an alert: daily cost per lead against the baseline, as a PNG.

From three weeks before onset to the incident's last day: the daily cost per lead (a day with
spend and no leads is drawn at the top of the chart, marked), the baseline it was compared with
and a band of ±30% around it, the onset, and the day the managing party changed when that falls
inside the chart. Drawn with matplotlib's Agg backend: no display needed.
"""

from __future__ import annotations

import datetime as dt
import io

import matplotlib

matplotlib.use("Agg")

import matplotlib.dates as mdates  # noqa: E402 - the backend is chosen first
import matplotlib.pyplot as plt  # noqa: E402

from anomaly.alerts.render import BASELINE_BAND as BAND, money  # noqa: E402


def cost_per_lead_chart(payload: dict, party_name: str | None = None) -> bytes | None:
    """A PNG of the incident's daily cost per lead against baseline; None without a series."""
    series = payload.get("series") or []
    if not series:
        return None
    days = [dt.date.fromisoformat(day) for day, *_ in series]
    cpl = [spend / leads if leads > 0 else None for _, spend, leads, _ in series]
    baseline = [base for *_, base in series]
    known = [v for v in cpl + baseline if v]
    top = max(known) * 1.15 if known else 1.0
    no_leads = [(day, top) for day, (_, spend, leads, _) in zip(days, series) if leads == 0 and spend > 0]

    figure, axes = plt.subplots(figsize=(8, 3.2), dpi=100)
    try:
        axes.fill_between(days, [b * (1 - BAND) if b else None for b in baseline], [b * (1 + BAND) if b else None for b in baseline],
                          color="#9ecae1", alpha=0.4, label="baseline ±30%")
        axes.plot(days, baseline, color="#3182bd", linewidth=1.5, label="baseline")
        axes.plot(days, cpl, color="#de2d26", marker="o", markersize=3, linewidth=1.5, label="cost per lead")
        if no_leads:
            axes.scatter(*zip(*no_leads), marker="v", color="#de2d26", zorder=3, label="spend, no leads")
        onset = dt.date.fromisoformat(payload["onset"])
        axes.axvline(onset, color="#444444", linestyle="--", linewidth=1)
        axes.annotate("onset", (onset, top), xytext=(3, -12), textcoords="offset points", fontsize=8)
        since = payload.get("party_since")
        if since and days[0] <= dt.date.fromisoformat(since) <= days[-1]:
            axes.axvline(dt.date.fromisoformat(since), color="#756bb1", linestyle=":", linewidth=1.5)
            axes.annotate(f"{party_name or payload['managing_party']} takes over", (dt.date.fromisoformat(since), top),
                          xytext=(-3, -12), textcoords="offset points", fontsize=8, color="#756bb1", ha="right")
        axes.set_ylim(0, top * 1.05)
        axes.yaxis.set_major_formatter(lambda value, _pos: money(value, payload.get("currency", "USD")))
        axes.xaxis.set_major_formatter(mdates.DateFormatter("%b %d"))
        axes.set_title(f"{payload['account_name']} / {payload['campaign_name']}: cost per lead by day", fontsize=10)
        axes.legend(fontsize=7, loc="upper left")
        axes.grid(alpha=0.3)
        figure.autofmt_xdate()
        buffer = io.BytesIO()
        figure.savefig(buffer, format="png", bbox_inches="tight")
        return buffer.getvalue()
    finally:
        plt.close(figure)
