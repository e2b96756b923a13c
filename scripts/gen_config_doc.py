"""Regenerate the config reference in README.md from the models of engine/inputs/config.py.

Only the block between the GENERATED markers is rewritten (it is `opd-engine config --defaults`
in a TOML code block); the prose around it is hand-written and kept. Run after changing a key,
a default or a doc line:

    .venv/bin/python scripts/gen_config_doc.py
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from generated import replace_block  # noqa: E402

from engine.inputs.config_doc import BEGIN, END, readme_block  # noqa: E402

README = Path(__file__).resolve().parents[1] / "README.md"


def main() -> int:
    return replace_block(README, BEGIN, END, readme_block())


if __name__ == "__main__":
    raise SystemExit(main())
