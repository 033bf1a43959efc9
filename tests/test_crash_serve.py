"""SIGKILL ``anomaly serve`` at every kind of point of a run of cycles, restart it, and find the
store consistent and every alert delivered exactly once (``benchmarks.crash_serve`` runs 100)."""

from __future__ import annotations

from benchmarks.crash_serve import PHASES, crash_run


def test_kills_at_every_point_lose_and_repeat_nothing(tmp_path):
    result = crash_run(tmp_path, cycles=10, accounts=6, seed=1)
    kills = result.pop("kills")
    assert sum(kills.values()) == 10 and set(kills) <= set(PHASES)
    assert kills.get("send", 0) >= 1, f"no kill landed while Slack held a stored message: {kills}"
    assert kills.get("ingest", 0) >= 1 and kills.get("detect", 0) >= 1
    assert result["exit_code"] == 0  # the last run stops cleanly on SIGTERM
    assert result["integrity"] == "ok"
    assert result["metric_mismatches"] == 0  # the store holds the export exactly: no ingest half applied
    assert result["incidents"] > 0 and result["incidents_unlike_replay"] == 0  # as one clean replay finds them
    assert result["notifications"] > 0 and result["not_sent"] == 0
    assert result["slack_messages"] > 0 and result["jsonl_lines"] == result["slack_messages"]
    lost_or_repeated = {k: v for k, v in result.items() if k.endswith(("_lost", "_duplicated", "_unrecorded")) and v}
    assert lost_or_repeated == {}, result
