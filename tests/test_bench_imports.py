"""The benchmark scripts import mtnlp names inside their functions, where nothing runs them in the test
suite: a renamed or moved name would surface only when someone next measures. Checked statically here."""

import ast
import importlib
import importlib.util
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"


def mtnlp_imports(path: Path) -> list[tuple[str, str | None, int]]:
    """(module, name or None for `import module`, line) for every import of mtnlp in a script."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "mtnlp":
            found += [(node.module, alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.Import):
            found += [(alias.name, None, node.lineno) for alias in node.names if alias.name.split(".")[0] == "mtnlp"]
    return found


@pytest.mark.parametrize("script", sorted(BENCH.glob("*.py")), ids=lambda p: p.name)
def test_every_mtnlp_name_a_benchmark_imports_exists(script):
    for module, name, line in mtnlp_imports(script):
        imported = importlib.import_module(module)
        if name is not None:
            assert hasattr(imported, name) or (hasattr(imported, "__path__")  # (a package's submodule)
                                               and importlib.util.find_spec(f"{module}.{name}")), \
                f"{script.name}:{line}: from {module} import {name}: no such name"


def test_the_check_sees_imports_inside_functions_and_names_a_missing_one(tmp_path):
    script = tmp_path / "bench.py"
    script.write_text("def main():\n    from mtnlp.readers import no_such_reader\n    import mtnlp.spec\n")
    assert mtnlp_imports(script) == [("mtnlp.readers", "no_such_reader", 2), ("mtnlp.spec", None, 3)]
    with pytest.raises(AssertionError, match="bench.py:2: from mtnlp.readers import no_such_reader: no such name"):
        test_every_mtnlp_name_a_benchmark_imports_exists(script)
    (tmp_path / "ok.py").write_text("from mtnlp import precision, MultiTaskModel\nfrom mtnlp.tasks import base\n")
    test_every_mtnlp_name_a_benchmark_imports_exists(tmp_path / "ok.py")  # submodules and names both exist
