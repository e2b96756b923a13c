"""The package boundary, enforced: the TUI reads run files through `engine.runfile` only, and
that package (with what it imports) never loads torch or transformers."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RUNFILE_MAY_IMPORT = ("engine.runfile", "engine.rng")
"""What engine.runfile may import from the engine: itself and the keyed randomness (numpy)."""


def engine_imports(path: Path) -> list[tuple[int, str]]:
    """Every `engine...` module a file imports, at any depth (function-level imports too)."""
    out = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names if a.name.split(".")[0] == "engine"]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module and (
                node.module.split(".")[0] == "engine"):
            if node.module == "engine":  # from engine import x: x is the module
                out += [(node.lineno, f"engine.{a.name}") for a in node.names]
            else:
                out.append((node.lineno, node.module))
    return out


def _within(module: str, allowed: tuple[str, ...]) -> bool:
    return any(module == a or module.startswith(a + ".") for a in allowed)


def test_the_tui_imports_only_the_run_file_package() -> None:
    bad = [f"{p.relative_to(REPO)}:{line} imports {m}"
           for p in sorted((REPO / "opd_tui").rglob("*.py"))
           for line, m in engine_imports(p) if not _within(m, ("engine.runfile",))]
    assert not bad, "\n".join(bad)


def test_the_run_file_package_stays_inside_its_boundary() -> None:
    files = sorted((REPO / "engine" / "runfile").glob("*.py"))
    assert {p.stem for p in files} >= {"schema", "store", "summaries", "report"}
    bad = [f"{p.relative_to(REPO)}:{line} imports {m}" for p in files
           for line, m in engine_imports(p) if not _within(m, RUNFILE_MAY_IMPORT)]
    assert not bad, "\n".join(bad)


def test_importing_every_tui_module_loads_no_torch_and_no_other_engine_part() -> None:
    """The transitive check the AST one cannot make: import all of opd_tui in a fresh process,
    then list what got loaded (polars only probes for torch with find_spec, never imports it)."""
    script = f"""
import importlib, pkgutil, sys
sys.path.insert(0, {str(REPO)!r})
import opd_tui
for m in pkgutil.walk_packages(opd_tui.__path__, "opd_tui."):
    importlib.import_module(m.name)
print("\\n".join(sorted(n for n in sys.modules if n.split(".")[0] in ("engine", "torch",
                                                                    "transformers"))))
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    loaded = done.stdout.split()
    assert "engine.runfile.schema" in loaded
    assert all(m == "engine" or _within(m, RUNFILE_MAY_IMPORT) for m in loaded), loaded


def test_every_engine_stage_folder_says_what_it_holds() -> None:
    for pkg in ("inputs", "models", "verify", "stages", "run", "runfile"):
        doc = ast.get_docstring(ast.parse((REPO / "engine" / pkg / "__init__.py").read_text()))
        assert doc and len(doc) > 40, pkg
    flat = sorted(p.name for p in (REPO / "engine").glob("*.py"))
    assert len(flat) <= 8, flat  # was 25 flat modules
