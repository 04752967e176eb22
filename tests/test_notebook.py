"""docs/example.ipynb runs from top to bottom in a fresh Jupyter kernel (nbclient), on the bundled
qemu-6.1-2node capture, and shows what it says it shows: its own checks (the last cell's asserts) pass,
its tables hold the policies' figures, and its figure is drawn."""

from __future__ import annotations

import os
from pathlib import Path

import nbformat
from jupyter_client.manager import KernelManager
from nbclient import NotebookClient

NOTEBOOK = Path(__file__).resolve().parent.parent / "docs" / "example.ipynb"


def _text(output) -> str:
    return output.get("text") or output.get("data", {}).get("text/plain", "")


def test_the_example_notebook_runs(tmp_path, monkeypatch):
    monkeypatch.setenv("THPREPLAY_NOTEBOOK_OUT", str(tmp_path))
    nb = nbformat.read(NOTEBOOK, as_version=4)
    assert not any(c.get("outputs") for c in nb.cells if c.cell_type == "code"), "commit the notebook without outputs"
    km = KernelManager(kernel_name="python3", transport="ipc", ip=str(tmp_path / "kernel"))
    NotebookClient(nb, km=km, timeout=120, resources={"metadata": {"path": str(NOTEBOOK.parent)}}).execute()
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    text = "\n".join(_text(o) for o in outputs)
    assert "no-local-reclaim-7.0: 14 of 14 figures within tolerance" in text
    assert "│ local-only-4.8     ┆ 27         ┆ 0           ┆ 261      │" in text  # the comparison table
    assert any("image/png" in o.get("data", {}) for o in outputs)  # the figure
    assert (tmp_path / "qemu-6.1-2node" / "simulation").is_dir() and (tmp_path / "qemu-6.1-2node.html").is_file()
