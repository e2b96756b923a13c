"""Which weights a run used, for its meta table: local directories and hub models alike.

A local directory is recorded with its path, bytes and (up to 2 GB) a sha256 of its safetensors
files. A hub id is recorded with its revision, the commit it resolved to in the local hub cache
(where transformers put it), and the same bytes and sha256 of that cached snapshot: two runs that
name `org/model` read the same weights exactly when these agree.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from engine.inputs.config import ModelTable, RunConfig

HASH_LIMIT = 2 << 30
"""Weights larger than this are recorded by size (and commit) only: hashing them takes minutes."""


def run_models(cfg: RunConfig) -> list[tuple[str, str, ModelTable]]:
    """(name in meta, path or hub id, its table) of every model a run loads."""
    out: list[tuple[str, str, ModelTable]] = [("student", cfg.student.model, cfg.student)]
    out += [(t.name, t.model, t) for t in cfg.teachers if t.model]
    out += [(f"context {c.name}", c.model, c) for c in cfg.contexts if c.model != "student"]
    return out


def model_fingerprints(cfg: RunConfig) -> dict[str, dict[str, Any]]:
    """Weights each configuration used: path, bytes, sha256; hub ids also revision and commit."""
    out: dict[str, dict[str, Any]] = {}
    for name, path, table in run_models(cfg):
        entry: dict[str, Any] = {"path": path}
        folder = Path(path)
        if not folder.is_dir():  # a hub id: the snapshot transformers cached
            commit, folder = _hub_snapshot(path, table.revision)
            entry["commit"] = commit
        entry.update(_files(folder) if folder is not None else {"bytes": 0})
        for key in ("revision", "trust_remote_code"):
            if getattr(table, key):
                entry[key] = getattr(table, key)
        out[name] = entry
    return out


def _files(folder: Path) -> dict[str, Any]:
    files = sorted(folder.glob("*.safetensors")) if folder.is_dir() else []
    size = sum(f.stat().st_size for f in files)
    entry: dict[str, Any] = {"bytes": size}
    if files and size <= HASH_LIMIT:
        h = hashlib.sha256()
        for f in files:
            h.update(f.read_bytes())
        entry["sha256"] = h.hexdigest()
    return entry


def _hub_snapshot(repo_id: str, revision: str | None) -> tuple[str | None, Path | None]:
    """(commit, snapshot folder) of a hub model in the local cache; (None, None) if not there.

    Offline: reads only the cache (refs/<revision> names the commit, snapshots/<commit> holds
    the files), never the network.
    """
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return None, None
    try:
        found = try_to_load_from_cache(repo_id, "config.json", revision=revision)
    except Exception:  # an id the hub library refuses (malformed): nothing cached under it
        return None, None
    if not isinstance(found, str):
        return None, None
    snapshot = Path(found).parent
    return snapshot.name, snapshot
