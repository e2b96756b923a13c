"""Console history that survives sessions, kept as JSON lines in the user's data directory.

One line per query (newest last) so an append is one write and a crash loses at most that line.
`platformdirs` honours XDG_DATA_HOME on Linux, which tests use to keep history out of $HOME.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import platformdirs

MAX_ENTRIES = 500


def history_path() -> Path:
    return Path(platformdirs.user_data_dir("opd-tui", appauthor=False)) / "sql_history.jsonl"


@dataclass
class History:
    """Queries run in the console, oldest first, with a cursor for up/down browsing."""

    path: Path
    entries: list[str]
    cursor: int = 0

    @classmethod
    def load(cls, path: Path | None = None) -> History:
        """Read the file; unreadable lines are skipped rather than failing the console."""
        p = path or history_path()
        entries: list[str] = []
        if p.exists():
            for line in p.read_text(encoding="utf-8", errors="replace").splitlines():
                try:
                    entries.append(str(json.loads(line)["sql"]))
                except (ValueError, KeyError, TypeError):
                    continue
        entries = entries[-MAX_ENTRIES:]
        return cls(p, entries, len(entries))

    def add(self, sql: str) -> None:
        """Append a query (consecutive duplicates are kept once) and persist it."""
        sql = sql.strip()
        if not sql:
            return
        if not self.entries or self.entries[-1] != sql:
            self.entries.append(sql)
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                with self.path.open("a", encoding="utf-8") as f:
                    f.write(json.dumps({"sql": sql, "at": time.time()}) + "\n")
            except OSError:
                pass  # history is a convenience: a read-only home must not break the console
        self.cursor = len(self.entries)

    def previous(self) -> str | None:
        if self.cursor == 0:
            return None
        self.cursor -= 1
        return self.entries[self.cursor]

    def next(self) -> str | None:
        if self.cursor >= len(self.entries) - 1:
            self.cursor = len(self.entries)
            return None
        self.cursor += 1
        return self.entries[self.cursor]
