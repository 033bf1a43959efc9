"""Every file the service reads is a regular file within its size limit, or a clear error: a device,
a named pipe, a directory or a file of hundreds of megabytes is refused at once, never read.

A reader that hung on a named pipe or read ``/dev/zero`` without end would hang the test run, so
the cases that could do that run in a child process with a deadline and a memory cap; the
oversize files are sparse (no real bytes are written)."""

from __future__ import annotations

import datetime as dt
import json
import os
import resource
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from anomaly.config import MAX_YAML_BYTES, GoogleAdsSourceConfig
from anomaly.errors import AnomalyError
from anomaly.files import MAX_CSV_BYTES, MB, FileReadError, describe_size, read_limited

REPO = Path(__file__).resolve().parent.parent
DEADLINE_SECONDS = 20
OVERSIZE = 600 * MB  # over every limit: 512 MB for CSV files, 1 MB for YAML files

KINDS = ["dev-zero", "fifo", "directory", "oversize"]
REASONS = {
    "dev-zero": "is a character device, not a regular file; expected {expected}",
    "fifo": "is a named pipe (FIFO), not a regular file; expected {expected}",
    "directory": "is a directory, not a regular file; expected {expected}",
    "oversize": "is 600 MB, over the {limit} limit for {expected}",
}


def make_special(kind: str, path: Path) -> Path:
    """Put a file of ``kind`` at ``path``: /dev/zero (through a symlink), a named pipe, a folder, or
    a sparse file of ``OVERSIZE`` bytes."""
    if kind == "dev-zero":
        path.symlink_to("/dev/zero")
    elif kind == "fifo":
        os.mkfifo(path)
    elif kind == "directory":
        path.mkdir()
    else:
        with path.open("wb") as file:
            file.truncate(OVERSIZE)
    return path


def reason(kind: str, expected: str, limit: int) -> str:
    return REASONS[kind].format(expected=expected, limit=describe_size(limit))


def run_child(args: list[str]) -> subprocess.CompletedProcess:
    """Run Python with ``args`` from the project folder, with a deadline and 4 GB of address space:
    a reader that waits on a pipe or reads a device without end fails the test instead of hanging
    it or exhausting the machine's memory."""

    def cap_memory() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (4 * 2**30, 4 * 2**30))

    try:
        return subprocess.run(
            [sys.executable, *args], cwd=REPO, capture_output=True, text=True, timeout=DEADLINE_SECONDS, preexec_fn=cap_memory
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"still reading after {DEADLINE_SECONDS} s: {args}")


# ----------------------------------------------------------------------------------------------
# the shared reader


@pytest.mark.parametrize("kind", KINDS)
def test_read_limited_refuses_what_is_no_regular_file_within_its_limit(tmp_path: Path, kind: str) -> None:
    path = make_special(kind, tmp_path / "data.csv")
    with pytest.raises(FileReadError) as caught:
        read_limited(path, expected="a CSV file", limit=MAX_CSV_BYTES)
    assert str(caught.value) == f"{path}: {reason(kind, 'a CSV file', MAX_CSV_BYTES)}"
    assert caught.value.reason == reason(kind, "a CSV file", MAX_CSV_BYTES)


@pytest.mark.parametrize(
    "size, limit, message",
    [
        pytest.param(5, 5, None, id="at-the-limit"),
        pytest.param(6, 5, "is 6 bytes, over the 5 bytes limit for a CSV file", id="one-byte-over"),
        pytest.param(1_000_003, MB, "is 1.0 MB (1,000,003 bytes), over the 1 MB limit for a CSV file", id="just-over-a-megabyte"),
        pytest.param(3_200_000_000, 512 * MB, "is 3.2 GB (3,200,000,000 bytes), over the 512 MB limit for a CSV file", id="gigabytes"),
    ],
)
def test_read_limited_reads_up_to_the_limit(tmp_path: Path, size: int, limit: int, message: str | None) -> None:
    path = tmp_path / "data.csv"
    with path.open("wb") as file:
        file.truncate(size)
    if message is None:
        assert read_limited(path, expected="a CSV file", limit=limit) == b"\0" * size
    else:
        with pytest.raises(FileReadError) as caught:
            read_limited(path, expected="a CSV file", limit=limit)
        assert caught.value.reason == message


def test_read_limited_says_a_file_is_missing(tmp_path: Path) -> None:
    with pytest.raises(FileReadError) as caught:
        read_limited(tmp_path / "nope.csv", expected="a CSV file", limit=MB)
    assert str(caught.value) == f"{tmp_path / 'nope.csv'}: file not found"


# ----------------------------------------------------------------------------------------------
# `anomaly check` with such an ownership file (the case that hung)


def write_project(folder: Path, ownership_file: str) -> Path:
    (folder / "rules").mkdir()
    (folder / "rules" / "a.yaml").write_text("rules:\n  - {name: r1, type: cpl_ratio, warning: 2}\n", encoding="utf-8")
    (folder / "metrics.csv").write_text("date,account_id,campaign_id,spend,clicks,leads\n", encoding="utf-8")
    path = folder / "config.yaml"
    path.write_text(
        textwrap.dedent(
            f"""\
            sources:
              - {{type: csv, name: exports, metrics: [metrics.csv]}}
            ownership: {{file: {ownership_file}}}
            """
        ),
        encoding="utf-8",
    )
    return path


@pytest.mark.parametrize("kind", KINDS)
def test_check_refuses_an_ownership_file_that_is_no_regular_file_within_its_limit(tmp_path: Path, kind: str) -> None:
    target = "/dev/zero" if kind == "dev-zero" else str(make_special(kind, tmp_path / "ownership.csv"))
    config = write_project(tmp_path, target)

    done = run_child(["-m", "anomaly.cli", "--config", str(config), "check"])

    assert (done.returncode, done.stdout) == (1, "")
    assert done.stderr == f"{target}: {reason(kind, 'a CSV file', MAX_CSV_BYTES)}\n1 problem found.\n"


# ----------------------------------------------------------------------------------------------
# every reader: config.yaml, a rules file, metrics, change history, ownership, Google Ads credentials


def read_everything(folder: str) -> dict[str, str]:
    """What each reader says of the special file of the same name in ``folder``. Runs in the child."""
    from anomaly.config import load_config, load_rules
    from connectors.csv_files import CsvConnector, read_ownership_csv
    from connectors.google_ads import load_client

    base = Path(folder)
    day = dt.date(2026, 7, 1)
    readers = {
        "config": lambda: load_config(base / "config.yaml", environ={}),
        "rules": lambda: load_rules(base / "rules"),
        "metrics": lambda: CsvConnector("exports", [base / "metrics.csv"]).fetch(day, day),
        "changes": lambda: CsvConnector("exports", [str(base / "none-*.csv")], [base / "changes.csv"]).fetch(day, day),
        "ownership": lambda: read_ownership_csv(base / "ownership.csv", ["a"]),
        "credentials": lambda: load_client(
            GoogleAdsSourceConfig(type="google_ads", name="ads", credentials=str(base / "google-ads.yaml"), login_customer_id="1234567890")
        ),
    }
    said = {}
    for name, read in readers.items():
        try:
            read()
            said[name] = "read without an error"
        except AnomalyError as exc:
            said[name] = str(exc)
    return said


@pytest.mark.parametrize("kind", KINDS)
def test_every_file_the_service_reads_is_refused_when_it_is_no_regular_file_within_its_limit(tmp_path: Path, kind: str) -> None:
    (tmp_path / "rules").mkdir()
    paths = {
        name: make_special(kind, tmp_path / file)
        for name, file in [
            ("config", "config.yaml"), ("rules", "rules/x.yaml"), ("metrics", "metrics.csv"), ("changes", "changes.csv"),
            ("ownership", "ownership.csv"), ("credentials", "google-ads.yaml"),
        ]
    }
    config_file = paths["config"].resolve()  # load_config names the file it was given, resolved

    done = run_child(["-c", f"import json; from tests.test_files import read_everything; print(json.dumps(read_everything({str(tmp_path)!r})))"])

    assert done.returncode == 0, done.stderr
    yaml_file = ("a YAML file", MAX_YAML_BYTES)
    csv_file = ("a CSV file", MAX_CSV_BYTES)
    assert json.loads(done.stdout) == {
        "config": f"{config_file}: {reason(kind, *yaml_file)}",
        "rules": f"{paths['rules']}: {reason(kind, *yaml_file)}",
        "metrics": f"{paths['metrics']}: {reason(kind, *csv_file)}",
        "changes": f"{paths['changes']}: {reason(kind, *csv_file)}",
        "ownership": f"{paths['ownership']}: {reason(kind, *csv_file)}",
        "credentials": f"source 'ads': cannot read the credentials file {paths['credentials']}: {reason(kind, 'a google-ads.yaml file', MAX_YAML_BYTES)}",
    }

