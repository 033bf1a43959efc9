"""Reports for people who settle incidents: the evidence pack of one incident and the party scorecard.

``anomaly report ID`` writes a self-contained HTML file (charts inlined as SVG, no script, no
external resource) and a Markdown summary; ``anomaly report --party KEY --from D --to D`` the same
for a party's scorecard. Both read the store through ``anomaly.analysis``.
"""
