"""Where the demo lives: the toy world's `sample_data/` (demo config, models, demo.duckdb).

It ships with the source repository, not inside the installed package (about 30 MB), so the
no-argument commands (`opd-tui`, `opd-engine run`) look for it in a few places, in order, and
when it is in none of them say how to get it. Here, in the run-file package, because both the
TUI and the engine need it and the TUI may import nothing else of `engine`.
"""

from __future__ import annotations

import os
from pathlib import Path

SAMPLE_DATA_ENV = "OPD_SAMPLE_DATA"
"""A `sample_data/` folder to use wherever the package is installed."""
DEMO_DB = "demo.duckdb"
DEMO_CONFIG = "demo.toml"

_SOURCE_ROOT = Path(__file__).resolve().parents[2]
"""The source checkout when running from one (editable install or `python -m`); for an installed
package this is site-packages, which holds no sample data."""


def _checkout() -> Path | None:
    return _SOURCE_ROOT if (_SOURCE_ROOT / "pyproject.toml").is_file() else None


def build_dir() -> Path:
    """Where `opd-engine toy build` writes by default: the checkout's `sample_data/`, else the
    user data dir (an installed package must not write into site-packages)."""
    root = _checkout()
    if root is not None:
        return root / "sample_data"
    import platformdirs

    return platformdirs.user_data_path("opd-diagnostics", appauthor=False) / "sample_data"


def sample_data_dirs() -> list[Path]:
    """Where sample data is looked for, in order: $OPD_SAMPLE_DATA, the checkout this code runs
    from, ./sample_data (a clone as the current directory), the `toy build` default."""
    out = [Path(os.environ[SAMPLE_DATA_ENV]).expanduser()] if os.environ.get(SAMPLE_DATA_ENV) \
        else []
    root = _checkout()
    if root is not None:
        out.append(root / "sample_data")
    out += [Path.cwd() / "sample_data", build_dir()]
    return list(dict.fromkeys(p.resolve() for p in out))


def sample_data_dir(needs: str = DEMO_CONFIG) -> Path:
    """The first place holding the file `needs`; else where `opd-engine toy build` writes it."""
    return next((d for d in sample_data_dirs() if (d / needs).is_file()), build_dir())


def how_to_get_demo(missing: Path) -> str:
    """What to do when the demo is nowhere: the message of both no-argument commands."""
    looked = ", ".join(str(d) for d in sample_data_dirs())
    return (f"{missing} does not exist (looked in: {looked}). The demo ships with the source "
            "repository, not the installed package: run from a clone of it, set "
            f"{SAMPLE_DATA_ENV} to its sample_data/ folder, or build the toy world with "
            f"`opd-engine toy build` (writes {build_dir()}; several minutes on a CPU)")
