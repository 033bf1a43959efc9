"""Data sources. Each connector is stateless: ``fetch(start, end)`` returns canonical frames.

The scheduler (or ``anomaly run``) owns the cursor and the restatement look-back.
"""
