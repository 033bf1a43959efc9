"""`anomaly incidents --format csv` opened in a spreadsheet: names and ids from data never run as
formulas (OWASP's CSV-injection guidance), and numbers stay numbers."""

from __future__ import annotations

import contextlib
import csv
import io
from pathlib import Path

import pandas as pd
import pytest

from anomaly import sample
from anomaly.cli import main, write_csv
from tests.helpers import copy_default_project

HYPERLINK = '=HYPERLINK("http://evil.example/?x","click")'


def run(config: Path, *argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["--config", str(config), *argv])
    return code, out.getvalue(), err.getvalue()


def test_names_and_ids_from_data_are_exported_as_text_a_spreadsheet_does_not_run(tmp_path: Path) -> None:
    path = copy_default_project(tmp_path)
    sample.write_sample(tmp_path / "sample")
    metrics = pd.read_csv(tmp_path / "sample" / "metrics.csv", dtype=str, keep_default_na=False)
    harbor = metrics["account_id"] == sample.STORY_CAMPAIGN.account_id
    story = metrics["campaign_id"] == sample.STORY_CAMPAIGN.campaign_id
    metrics.loc[harbor, "account_name"] = HYPERLINK
    metrics.loc[story, "campaign_name"] = "+1;=2+3"
    lakeside = metrics["account_name"] == "Lakeside Law"
    metrics.loc[lakeside, "account_name"] = "@SUM(1+1)*cmd|' /C calc'!A0"
    metrics.loc[lakeside, "campaign_name"] = "-2+3"
    metrics.loc[metrics["campaign_id"] == "47220091", "campaign_id"] = "-47220091"
    metrics.to_csv(tmp_path / "sample" / "metrics.csv", index=False)
    assert run(path, "run", "--today", str(sample.END))[0] == 0

    code, out, _ = run(path, "incidents", "--format", "csv")

    assert code == 0
    lakeside_row, harbor_row = csv.DictReader(io.StringIO(out))
    assert harbor_row["account_name"] == "'" + HYPERLINK
    assert harbor_row["campaign_name"] == "'+1;=2+3"
    assert lakeside_row["account_name"] == "'@SUM(1+1)*cmd|' /C calc'!A0"
    assert lakeside_row["campaign_name"] == "'-2+3"
    assert lakeside_row["campaign_id"] == "'-47220091"  # an id is text, even when it looks like a number
    assert (harbor_row["campaign_id"], harbor_row["party_name"]) == (sample.STORY_CAMPAIGN.campaign_id, "Beacon Reach")
    # every text cell is quoted, so a separator inside a name (a ';' for a spreadsheet that splits
    # on it) cannot start a new cell; numbers are written bare
    line = next(line for line in out.splitlines() if "HYPERLINK" in line)
    assert f',"\'=HYPERLINK(""http://evil.example/?x"",""click"")",' in line and ',"\'+1;=2+3",' in line
    assert f",{float(harbor_row['observed'])!r}," in line


@pytest.mark.parametrize(
    ("value", "written"),
    [
        pytest.param(HYPERLINK, '"\'=HYPERLINK(""http://evil.example/?x"",""click"")"', id="equals"),
        pytest.param("+1+1", "\"'+1+1\"", id="plus"),
        pytest.param("-1+1", "\"'-1+1\"", id="minus"),
        pytest.param("@SUM(A1:A2)", "\"'@SUM(A1:A2)\"", id="at"),
        pytest.param("\t=1+1", "\"'\t=1+1\"", id="tab"),
        pytest.param("\r=1+1", "\"'\r=1+1\"", id="carriage-return"),
        pytest.param("-12.5", "\"'-12.5\"", id="negative-number-as-text"),
        pytest.param("Harbor Dental Group", '"Harbor Dental Group"', id="plain-text"),
        pytest.param("a=b", '"a=b"', id="formula-character-inside"),
        pytest.param(-12.5, "-12.5", id="negative-number"),
        pytest.param(0, "0", id="zero"),
        pytest.param(None, '""', id="none"),
    ],
)
def test_each_cell_is_written_safe_for_a_spreadsheet(value: object, written: str) -> None:
    out = io.StringIO()
    write_csv(out, ["id", "value"], [{"id": 1, "value": value}])
    assert out.getvalue() == f'"id","value"\n1,{written}\n'
