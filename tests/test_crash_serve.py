"""SIGKILL ``anomaly serve`` at every kind of point of a run of cycles, restart it, and find the
store consistent and every alert delivered exactly once (``benchmarks.crash_serve`` runs 100); and
run a cycle longer than its schedule, which keeps the lock and lets the alerts out meanwhile."""

from __future__ import annotations

from benchmarks.crash_serve import PHASES, crash_run, slow_run


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


def test_a_cycle_longer_than_its_schedule_keeps_the_lock_and_delivers_meanwhile(tmp_path):
    result = slow_run(tmp_path, seconds=6, accounts=6, seed=1)
    assert result["cycle_seconds"] >= 6
    assert result["heartbeat_oldest_in_cycle"] < result["stale_after_seconds"]
    assert result["heartbeat_oldest_stopping"] < result["stale_after_seconds"]  # while SIGTERM waits for the next slow cycle
    assert result["second_instance"] == "refused while detecting"
    assert result["slack_pending_before"] > 0 and result["slack_posts_while_detecting"] > 0
    assert result["slack_sent_while_detecting"] == result["slack_pending_before"]  # Slack came back while the cycle detected
    assert result["runs_skipped"].get("pull:export", 0) >= 1 and result["detections_at_once"] == 1
    assert result["exit_code"] == 0 and result["integrity"] == "ok" and result["incidents_unlike_replay"] == 0
    assert result["not_sent"] == 0 and result["jsonl_lines"] == result["slack_messages"]
    lost_or_repeated = {k: v for k, v in result.items() if k.endswith(("_lost", "_duplicated", "_unrecorded")) and v}
    assert lost_or_repeated == {}, result
