"""The pure core must run on a cluster node with no orchestration library installed."""

import ast
from pathlib import Path

import pytest

CORE = ["models", "losses", "data", "train", "eval", "config", "curation"]
FORBIDDEN = {"kedro", "mlflow", "optuna", "great_expectations", "kubernetes", "dvc"}
SRC = Path(__file__).resolve().parents[1] / "src" / "dinoflow"


def imported_roots(path: Path) -> set[str]:
    roots = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            roots |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            roots.add(node.module.split(".")[0])
            if node.module.startswith("dinoflow."):
                roots.add(node.module)
    return roots


@pytest.mark.parametrize("package", CORE)
def test_core_imports_no_orchestration_library(package):
    for path in (SRC / package).rglob("*.py"):
        roots = imported_roots(path)
        assert not roots & FORBIDDEN, f"{path} imports {roots & FORBIDDEN}"
        integration = {
            r
            for r in roots
            if r.split(".")[1:2]
            and r.split(".")[1] in {"tracking", "validation", "versioning", "launch", "registry", "pipelines"}
        }
        assert not integration, f"{path} imports integration modules {integration}"


def test_checker_sees_a_forbidden_import(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("import mlflow\nfrom kedro.pipeline import Node\n")
    assert imported_roots(bad) >= {"mlflow", "kedro"}


def test_training_entry_point_imports_with_orchestration_libraries_blocked():
    """Import the core's entry points while kedro, mlflow, ... are made unimportable."""
    import subprocess
    import sys

    code = f"""
import sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in {sorted(FORBIDDEN)!r}:
            raise ImportError('blocked: ' + name)
sys.meta_path.insert(0, Block())
import dinoflow.train.__main__, dinoflow.eval.suite, dinoflow.data.manifest, dinoflow.data.synthetic
print('ok')
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


def test_building_the_pipeline_graph_imports_no_heavy_library():
    """`kedro run` imports every node module to build its graph (and to validate the parameters):
    a run that stops before training, or a bad parameter, must not wait for torch, timm, optuna."""
    import subprocess
    import sys

    code = """
import sys
from kedro.framework.project import configure_project
configure_project('dinoflow')
from dinoflow.pipeline_registry import register_pipelines
register_pipelines()
print(sorted(m for m in ('torch', 'timm', 'torchvision', 'matplotlib', 'optuna', 'faiss') if m in sys.modules))
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=SRC.parents[1])
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "[]"
