"""House rules that a refactor could quietly break: apsw (and so SQL) only in the store."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "litejobs"


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module.split(".")[0])
    return names


def test_only_the_store_package_imports_apsw() -> None:
    offenders = [str(p.relative_to(PACKAGE)) for p in PACKAGE.rglob("*.py")
                 if "apsw" in imported_modules(p) and p.parent.name != "store"]
    assert offenders == []
    assert "apsw" in imported_modules(PACKAGE / "store" / "__init__.py")


def test_import_litejobs_loads_its_names_at_first_use() -> None:
    # pytest loads the plugin, and so `litejobs`, in every run of a project that installed it
    import subprocess
    import sys

    code = ("import sys, litejobs\n"
            "print(sorted(m for m in sys.modules if m.startswith('litejobs.')))\n"
            "missing = [n for n in litejobs.__all__ if getattr(litejobs, n, None) is None]\n"
            "print(missing, litejobs.App.__module__, sorted(set(litejobs.__all__) - set(dir("
            "litejobs))))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=PACKAGE.parent).stdout.splitlines()
    assert out == ["[]", "[] litejobs.app []"]
