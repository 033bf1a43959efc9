"""The analyst notebooks run top to bottom on the demo portfolio and show its story; the repo keeps them stripped."""

from __future__ import annotations

from pathlib import Path

import nbclient
import nbformat
import pytest

from tests.helpers import PROJECT

NOTEBOOKS_DIR = PROJECT / "notebooks"
EXPECTED = ["01_portfolio_overview.ipynb", "02_tune_a_rule.ipynb", "03_incident_deep_dive.ipynb"]
#: Cell metadata that records a run (timings, collapsed or scrolled output) rather than the notebook.
RUN_STATE = {"execution", "ExecuteTime", "collapsed", "scrolled", "jupyter"}


def _execute(name: str, config: Path, monkeypatch) -> nbformat.NotebookNode:
    """Run one notebook from notebooks/ against ``config``; raises CellExecutionError on a failing cell."""
    # The kernel inherits this process's environment when it starts; it draws inline, as in Jupyter.
    monkeypatch.setenv("ANOMALY_CONFIG", str(config))
    monkeypatch.delenv("MPLBACKEND", raising=False)
    nb = nbformat.read(NOTEBOOKS_DIR / name, as_version=4)
    client = nbclient.NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(NOTEBOOKS_DIR)}})
    client.execute()
    return nb


def _outputs(nb) -> list[dict]:
    return [output for cell in nb.cells if cell.cell_type == "code" for output in cell.outputs]


def _text(nb) -> str:
    """Everything the notebook printed or displayed as text, in order."""
    parts = []
    for output in _outputs(nb):
        if output.output_type == "stream":
            parts.append(output.text)
        for mime in ("text/plain", "text/html"):
            parts.append(output.get("data", {}).get(mime, ""))
    return "\n".join(parts)


def _images(nb) -> int:
    return sum("image/png" in output.get("data", {}) for output in _outputs(nb))


def _errors(nb) -> list[str]:
    return [f"{o.ename}: {o.evalue}" for o in _outputs(nb) if o.output_type == "error"]


def _summary_row(nb, side: str) -> list[str]:
    """The ``side`` row ("before"/"after") of the displayed backtest comparison summary."""
    for output in _outputs(nb):
        plain = output.get("data", {}).get("text/plain", "")
        if "alerts_per_week" in plain:
            return next(line.split() for line in plain.splitlines() if line.startswith(side + " "))
    raise AssertionError("no backtest summary was displayed")


def test_the_three_notebooks_exist():
    assert set(EXPECTED) <= {p.name for p in NOTEBOOKS_DIR.glob("*.ipynb")}


@pytest.mark.parametrize("path", sorted(NOTEBOOKS_DIR.glob("*.ipynb")), ids=lambda p: p.name)
def test_notebook_is_stored_stripped(path):
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    code = [cell for cell in nb.cells if cell.cell_type == "code"]
    assert code, "a notebook without code"
    assert all(cell.outputs == [] and cell.execution_count is None for cell in code), "clear the outputs before committing"
    assert set(nb.metadata) <= {"kernelspec", "language_info"}, f"keep notebook metadata minimal, found {sorted(nb.metadata)}"
    assert nb.metadata.get("kernelspec", {}).get("name") == "python3"
    left = {key for cell in nb.cells for key in cell.metadata} & RUN_STATE
    assert not left, f"cell metadata from a run left in: {sorted(left)}"


@pytest.mark.parametrize("name", EXPECTED, ids=EXPECTED)
def test_notebook_runs_on_the_demo(name, demo_config, monkeypatch):
    nb = _execute(name, demo_config, monkeypatch)
    text = _text(nb)
    assert _errors(nb) == []

    if name == "01_portfolio_overview.ipynb":
        assert str(demo_config.parent) in text, "the notebook did not open $ANOMALY_CONFIG's project"
        for campaign in ("Generic - Leads", "Personal Injury", "Water Heaters - Search"):
            assert campaign in text
        assert "Harbor Dental Group" in text and "Beacon Reach" in text and "Northwind Digital" in text
        assert "all campaigns" not in text  # account totals stay out of the per-campaign views
        assert _images(nb) == 1
    elif name == "02_tune_a_rule.ipynb":
        assert _summary_row(nb, "before")[1] == "2"  # alerts with the shipped rules: the two demo incidents
        assert int(_summary_row(nb, "after")[1]) > 2  # the looser rules alert more often
        assert "max_p_value" in text and "0.05" in text
        assert _images(nb) == 1
    else:
        assert "Beacon Reach" in text and "Harbor Dental Group" in text and "Generic - Leads" in text
        assert "Excess cost since onset: 5,617 USD" in text
        assert "dana.kim@beaconreach.example" in text  # the partner's changes in the window
        assert "opened" in text  # the notification sent when the incident opened
        assert _images(nb) == 1
