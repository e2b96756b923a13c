"""Replace the generated block between a doc's BEGIN/END markers (schema and config docs)."""

from __future__ import annotations

import sys
from pathlib import Path


def replace_block(doc: Path, begin: str, end: str, block: str) -> int:
    """Write `block` (markers included) over the old one; exit status 1 if a marker is gone."""
    text = doc.read_text()
    if begin not in text or end not in text:
        print(f"error: {doc} lacks the GENERATED markers; restore them from git", file=sys.stderr)
        return 1
    head, rest = text.split(begin, 1)
    _, tail = rest.split(end, 1)
    doc.write_text(head + block + tail)
    print(f"updated {doc}")
    return 0
