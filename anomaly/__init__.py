"""Paid-media anomaly detection and alerting.

Data flows connectors → store → detect → incidents → alerts; see DESIGN.md.
"""

__version__ = "0.1.0"
