"""`run.log` in the run directory: the progress and warning lines the console showed, kept after
the terminal is gone (a run of hours outlives its ssh session). Appended, one flush per line, so
a resumed run adds to the same file and a killed one loses nothing it had printed."""

from __future__ import annotations

import contextlib
import time
from pathlib import Path
from typing import TextIO

LOG_NAME = "run.log"


class RunLog:
    """Timestamped lines appended to `<run_dir>/run.log`. Lines logged before the directory
    may be written (models still loading, lock not yet held) wait and go in when it opens."""

    def __init__(self) -> None:
        self._file: TextIO | None = None
        self._pending: list[str] = []
        self._broken = False

    def open(self, run_dir: Path) -> None:
        self._file = (Path(run_dir) / LOG_NAME).open("a", encoding="utf-8")
        pending, self._pending = self._pending, []
        for line in pending:
            self._write(line)

    def line(self, text: str) -> None:
        stamped = [f"{time.strftime('%Y-%m-%d %H:%M:%S')}  {part}" for part in
                   text.splitlines() or [""]]
        for line in stamped:
            if self._broken:
                return
            if self._file is None:
                self._pending.append(line)
            else:
                self._write(line)

    def _write(self, line: str) -> None:
        assert self._file is not None
        try:
            self._file.write(line + "\n")
            self._file.flush()
        except OSError:  # a full disk fails the run's own writes; the log never fails it
            self._broken = True
            self.close()

    def close(self) -> None:
        if self._file is not None:
            with contextlib.suppress(OSError):
                self._file.close()
            self._file = None
