"""Notebooks are committed without outputs (so diffs stay readable and no data leaks into git)."""

import nbformat
import pytest

from tests.project_copy import PROJECT_ROOT

NOTEBOOKS = sorted((PROJECT_ROOT / "notebooks").glob("*.ipynb"))


def test_the_three_notebooks_exist_in_order():
    assert [p.stem for p in NOTEBOOKS] == ["01-data-and-validation", "02-compare-runs", "03-inspect-champion"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_committed_without_outputs(path):
    notebook = nbformat.read(path, as_version=4)
    nbformat.validate(notebook)
    for cell in notebook.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, f"{path.name}: clear outputs before committing"
