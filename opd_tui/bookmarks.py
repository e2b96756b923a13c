"""Token bookmarks that survive sessions, kept as one JSON file in the user's data directory.

Bookmarks are keyed by the run file's resolved path; nothing is ever written inside the run
(it is opened read-only). The file is rewritten atomically (temp file + `os.replace`) and
re-read before every change, so two sessions lose at most a simultaneous edit. A file that
cannot be parsed is renamed aside (`bookmarks.json.corrupt`) rather than overwritten, and the
store starts empty with a warning. Like the SQL history, it follows `platformdirs`, which
honours XDG_DATA_HOME on Linux (tests use it to keep bookmarks out of $HOME).
"""

from __future__ import annotations

import datetime
import json
import os
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import platformdirs

from engine.runfile.schema import RUN_DB_NAME

VERSION = 1


class BookmarkError(Exception):
    """The bookmarks file could not be written; the message says why."""


def bookmarks_path() -> Path:
    return Path(platformdirs.user_data_dir("opd-tui", appauthor=False)) / "bookmarks.json"


def run_key(run: str | os.PathLike[str]) -> str:
    """The key of a run in the file: its resolved absolute path."""
    return str(Path(run).expanduser().resolve())


@dataclass(frozen=True)
class Bookmark:
    """One bookmarked token; `added` is a local ISO timestamp (seconds)."""

    question_id: str
    rollout: int
    pos: int
    token_text: str
    added: str

    @property
    def key(self) -> tuple[str, int, int]:
        return (self.question_id, self.rollout, self.pos)


def _parse(text: str) -> dict[str, list[Bookmark]]:
    """The file's bookmarks by run key; ValueError/TypeError/KeyError if it is malformed."""
    data = json.loads(text)
    if not isinstance(data, dict) or not isinstance(data.get("runs"), dict):
        raise ValueError("not a bookmarks file")
    out: dict[str, list[Bookmark]] = {}
    for run, entries in data["runs"].items():
        if not isinstance(entries, list):
            raise ValueError(f"bookmarks of {run} are not a list")
        out[str(run)] = [
            Bookmark(str(e["question_id"]), int(e["rollout"]), int(e["pos"]),
                     str(e.get("token_text") or ""), str(e.get("added") or ""))
            for e in entries
        ]
    return out


def _protected_root(run: Path) -> Path:
    """What must never be written into: a run directory, or the run file (and the directory
    of a merged `run.duckdb`, which is the run directory)."""
    run = run.expanduser().resolve()
    return run.parent if run.is_file() and run.name == RUN_DB_NAME else run


def _inside(path: Path, root: Path) -> bool:
    try:
        path.expanduser().resolve().relative_to(root)
    except ValueError:
        return False
    return True


class BookmarkStore:
    """Read and change the bookmarks file. After each call, `warning` holds a message for the
    user (e.g. a corrupt file was moved aside) or None."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path or bookmarks_path()
        self.warning: str | None = None

    def read(self) -> dict[str, list[Bookmark]]:
        """All bookmarks by run key. A missing file is empty; a corrupt one is renamed aside."""
        self.warning = None
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return {}
        except OSError as e:
            self.warning = f"cannot read bookmarks {self.path}: {e.strerror or e}"
            raise BookmarkError(self.warning) from e
        try:
            return _parse(raw.decode("utf-8"))
        except (ValueError, TypeError, KeyError, AttributeError):
            aside = self._aside()
            try:
                os.replace(self.path, aside)
            except OSError as e:
                self.warning = (f"bookmarks file {self.path} is corrupt and could not be moved "
                                f"aside ({e.strerror or e}): bookmarks are not saved")
                raise BookmarkError(self.warning) from e
            self.warning = f"bookmarks file was corrupt: moved to {aside}, starting empty"
            return {}

    def _aside(self) -> Path:
        aside = self.path.with_name(self.path.name + ".corrupt")
        n = 1
        while aside.exists():  # never overwrite an earlier corrupt file
            aside = self.path.with_name(f"{self.path.name}.{n}.corrupt")
            n += 1
        return aside

    def for_run(self, run: str | os.PathLike[str]) -> list[Bookmark]:
        """The run's bookmarks, sorted by question, rollout and position."""
        return sorted(self.read().get(run_key(run), []), key=lambda b: b.key)

    def toggle(self, run: str | os.PathLike[str], question_id: str, rollout: int, pos: int,
               token_text: str = "") -> bool:
        """Bookmark the token, or remove its bookmark; True if it is now bookmarked."""
        data = self.read()
        entries = data.setdefault(run_key(run), [])
        kept = [b for b in entries if b.key != (question_id, rollout, pos)]
        added = len(kept) == len(entries)
        if added:
            now = datetime.datetime.now().isoformat(sep=" ", timespec="seconds")
            kept.append(Bookmark(question_id, int(rollout), int(pos), token_text, now))
        data[run_key(run)] = kept
        self._write(data, Path(run))
        return added

    def remove(self, run: str | os.PathLike[str], question_id: str, rollout: int,
               pos: int) -> bool:
        """Delete one bookmark; False if there was none."""
        data = self.read()
        entries = data.get(run_key(run), [])
        kept = [b for b in entries if b.key != (question_id, rollout, pos)]
        if len(kept) == len(entries):
            return False
        data[run_key(run)] = kept
        self._write(data, Path(run))
        return True

    def _write(self, data: dict[str, list[Bookmark]], run: Path) -> None:
        """Replace the file atomically; never inside the run."""
        if _inside(self.path, _protected_root(run)):
            raise BookmarkError(f"the bookmarks file {self.path} lies inside the run: not "
                                "writing there (set XDG_DATA_HOME elsewhere)")
        payload: dict[str, Any] = {
            "version": VERSION,
            "runs": {k: [asdict(b) for b in v] for k, v in data.items() if v},
        }
        tmp = None
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=".bookmarks-", suffix=".tmp", dir=self.path.parent)
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump(payload, f, indent=1, ensure_ascii=False)
                f.write("\n")
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
        except OSError as e:
            if tmp is not None and os.path.exists(tmp):
                os.unlink(tmp)
            raise BookmarkError(f"cannot save bookmarks to {self.path}: {e.strerror or e}") from e
