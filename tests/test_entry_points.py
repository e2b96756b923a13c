"""How the project is used from outside: the Python API (`engine.open_run`, the README snippet),
the no-argument commands of an installed package, and process-wide settings kept to the CLI."""

from __future__ import annotations

import ast
import ctypes
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest
from synthetic_runs import write_fixture_db

import engine
from engine.runfile import schema

REPO = Path(__file__).resolve().parents[1]
DEMO = REPO / "sample_data" / "demo.duckdb"


@pytest.fixture(scope="module")
def run_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("api") / "run.duckdb"
    return write_fixture_db(path, questions=3, rollouts=2, min_len=5, max_len=15, draws=10)


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "OPD_SAMPLE_DATA")}
    return {**env, **extra}


def _python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                          timeout=300, env=_env(PYTHONPATH=str(REPO)))


def readme_snippet() -> str:
    """The first Python block of the README's "From Python / notebooks" section."""
    text = (REPO / "README.md").read_text()
    section = text.split("## From Python / notebooks", 1)[1].split("\n## ", 1)[0]
    found = re.search(r"```python\n(.*?)```", section, re.S)
    assert found, "the README section has no ```python block"
    return found.group(1)


def test_the_readme_snippet_runs_on_the_demo_without_torch() -> None:
    snippet = readme_snippet()
    assert 3 <= len(snippet.strip().splitlines()) <= 8 and ".pl()" in snippet
    done = _python(snippet + "import sys\nprint('torch loaded:', 'torch' in sys.modules)\n")
    assert done.returncode == 0, done.stderr
    assert "strong" in done.stdout and "mean_edge" in done.stdout
    assert "torch loaded: False" in done.stdout


def test_import_engine_and_open_run_load_no_torch(run_file: Path) -> None:
    code = f"""
import sys
import engine
light = sorted(m for m in ("duckdb", "numpy", "torch") if m in sys.modules)
con = engine.open_run({str(run_file)!r})
print(light, con.sql("SELECT count(*) FROM scores").fetchall()[0][0] > 0,
      sorted(m for m in ("torch", "transformers") if m in sys.modules))
"""
    done = _python(code)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["[]", "True", "[]"]


def test_open_run_reads_files_and_run_directories_read_only(run_file: Path,
                                                            tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    shutil.copy(run_file, run_dir / schema.RUN_DB_NAME)
    for path in (run_file, str(run_file), run_dir):
        con = engine.open_run(path)
        assert con.sql("SELECT count(*) FROM token_scores").fetchall()[0][0] > 0
        with pytest.raises(duckdb.Error):
            con.execute("CREATE TABLE mine (x INTEGER)")
        con.close()


def test_open_run_says_what_is_not_a_run(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no run file or run directory"):
        engine.open_run(tmp_path / "nope.duckdb")
    other = tmp_path / "other.duckdb"
    duckdb.connect(str(other)).close()
    with pytest.raises(schema.SchemaError, match="missing"):
        engine.open_run(other)


def test_the_open_run_docstring_example_runs(run_file: Path) -> None:
    doc = engine.open_run.__doc__ or ""
    lines = [line[8:] for line in doc.split("::\n", 1)[1].split("\n\n    Torch-free")[0]
             .splitlines()]
    code = "\n".join(lines).replace("sample_data/demo.duckdb", str(run_file))
    assert "pl.col" in code
    scope: dict[str, object] = {}
    exec(compile(code, "open_run docstring", "exec"), scope)  # noqa: S102
    scope["con"].close()  # type: ignore[attr-defined]


# ---------------------------------------------------------------------------------------------
# Process-wide settings: the CLI entry point's business, never a library call's


def test_only_the_cli_entry_point_calls_tune_allocator() -> None:
    calls = []
    for path in sorted((REPO / "engine").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "tune_allocator":
                calls.append(path.relative_to(REPO).as_posix())
    assert calls == ["engine/cli.py"]


class _FakeLibc:
    """Stands in for glibc: records mallopt calls instead of changing this process."""

    calls: list[tuple[int, int]] = []

    def __init__(self, name: str) -> None:
        pass

    def mallopt(self, param: int, value: int) -> int:
        self.calls.append((param, value))
        return 1


def test_loading_a_world_leaves_the_allocator_and_the_cli_tunes_it(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from tiny_world import make_world

    from engine import cli
    from engine.inputs.config import parse_config
    from engine.run.world import load_world

    monkeypatch.setattr(ctypes, "CDLL", _FakeLibc)
    monkeypatch.setattr(_FakeLibc, "calls", [])
    world = load_world(parse_config(make_world(tmp_path, questions=1)))
    world.close()
    assert _FakeLibc.calls == []  # the library path
    monkeypatch.setattr(sys, "argv", ["opd-engine", "--help"])
    with pytest.raises(SystemExit) as done:
        cli.main()
    assert done.value.code == 0
    assert _FakeLibc.calls == [(-3, 1 << 20)]  # M_MMAP_THRESHOLD = 1 MiB


# ---------------------------------------------------------------------------------------------
# An installed (non-editable) package has no sample_data/ beside it


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The package installed from a copy of the sources (pip's in-tree build would write into
    the checkout), without dependencies: they are this environment's."""
    root = tmp_path_factory.mktemp("installed")
    src = root / "src"
    src.mkdir()
    for name in ("engine", "opd_tui"):
        shutil.copytree(REPO / name, src / name, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, src / name)
    done = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps",
                           "--no-build-isolation", "--no-index", "--target",
                           str(root / "site"), str(src)], capture_output=True, text=True,
                          timeout=300)
    if done.returncode != 0:
        pytest.skip(f"cannot build the package here: {done.stderr[-500:]}")
    assert not (root / "site" / "sample_data").exists()
    return root


def _installed(root: Path, code: str, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """Python on the installed copy only (-P: the current directory is not put on sys.path)."""
    return subprocess.run([sys.executable, "-P", "-c", code], cwd=cwd, capture_output=True,
                          text=True, timeout=300,
                          env=_env(PYTHONPATH=str(root / "site"),
                                   XDG_DATA_HOME=str(root / "data"), **env))


TUI_DEMO = """
import opd_tui.cli, engine.cli
print(opd_tui.cli.__file__)
print(opd_tui.cli.resolve_path(None))
print(engine.cli.DEMO_CONFIG.exists())
"""


def test_an_installed_package_says_how_to_get_the_demo(installed: Path) -> None:
    elsewhere = installed / "elsewhere"
    elsewhere.mkdir()
    done = _installed(installed, TUI_DEMO, elsewhere)
    assert done.returncode != 0
    flat = " ".join(done.stderr.split())
    assert str(installed / "site") in _installed(
        installed, "import opd_tui.cli; print(opd_tui.cli.__file__)", elsewhere).stdout
    for hint in ("opd-tui: no path given", "ships with the source repository",
                 "OPD_SAMPLE_DATA", "opd-engine toy build", str(installed / "data"),
                 "opd-tui RUN.duckdb"):
        assert hint in flat, hint
    run = _installed(installed, "import sys; sys.argv = ['opd-engine', 'run']\n"
                     "import engine.cli; engine.cli.main()", elsewhere)
    assert run.returncode == 2
    flat = " ".join(run.stderr.split())
    assert "no config given" in flat and "opd-engine toy build" in flat, flat


@pytest.mark.parametrize("how", ["env", "cwd"])
def test_an_installed_package_finds_the_demo(installed: Path, how: str) -> None:
    if how == "env":
        done = _installed(installed, TUI_DEMO, installed,
                          OPD_SAMPLE_DATA=str(REPO / "sample_data"))
    else:  # a clone as the current directory
        done = _installed(installed, TUI_DEMO, REPO)
    assert done.returncode == 0, done.stderr
    module, demo, config = done.stdout.split()
    assert module.startswith(str(installed / "site"))
    assert Path(demo) == DEMO and config == "True"


def test_the_transformers_bound_is_what_the_decoder_needs() -> None:
    """engine/models/generation.py passes `cache=` to the decoder and reads `.cache` back, which
    transformers has since 5.24 (before: past_key_values): the bound in pyproject.toml says so."""
    import inspect
    from importlib.metadata import version

    from packaging.version import Version
    from transformers import LlamaModel

    bound = re.search(r'"transformers>=([\d.]+)', (REPO / "pyproject.toml").read_text())
    assert bound and Version(bound.group(1)) >= Version("5.24")
    assert Version(version("transformers")) >= Version(bound.group(1))
    assert "cache" in inspect.signature(LlamaModel.forward).parameters
