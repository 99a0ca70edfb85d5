"""The analysis notebooks run from top to bottom (small size, ``BRAINALIGN_SMOKE=1``).

Notebooks are kept as jupytext percent-format ``.py`` files (reviewable diffs); each is turned
into a notebook and executed by a real Jupyter kernel, as a user would run it.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("[0-9]*.py"))


def test_there_are_notebooks():
    assert NOTEBOOKS, "notebooks/ holds no numbered notebook"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs(path, tmp_path, monkeypatch):
    jupytext = pytest.importorskip("jupytext")
    nbclient = pytest.importorskip("nbclient")
    from jupyter_client.kernelspec import KernelSpecManager

    monkeypatch.setenv("BRAINALIGN_SMOKE", "1")
    monkeypatch.setenv("BRAINALIGN_CACHE", str(tmp_path / "cache"))
    # the kernel's own inline backend shows the figures (CI sets Agg for everything else)
    monkeypatch.delenv("MPLBACKEND", raising=False)
    notebook = jupytext.read(path)
    # the kernel must be this interpreter (the one brainalign is installed in), not whatever
    # "python3" kernel the machine may have registered
    spec = KernelSpecManager().get_kernel_spec("python3")
    assert Path(spec.argv[0]).resolve() == Path(sys.executable).resolve() or spec.argv[0] in (
        "python",
        "python3",
        "{python}",
    ), f"the python3 kernel runs {spec.argv[0]}, not {sys.executable}"
    client = nbclient.NotebookClient(
        notebook,
        timeout=600,
        kernel_name="python3",
        resources={"metadata": {"path": str(tmp_path)}},
    )
    client.execute()
    errors = [
        output
        for cell in notebook.cells
        if cell.cell_type == "code"
        for output in cell.get("outputs", [])
        if output.get("output_type") == "error"
    ]
    assert not errors
    images = [
        output
        for cell in notebook.cells
        if cell.cell_type == "code"
        for output in cell.get("outputs", [])
        if "image/png" in output.get("data", {})
    ]
    assert images, f"{path.name} shows no figure"
