"""Worker processes for verifiers that may hang, crash or need the main thread (signal alarms).

Why not `multiprocessing.Pool` / `ProcessPoolExecutor`: neither can kill one hung task without
losing the rest of its batch. Here each worker gets one batch of a question's answers, streams
back one result per answer, and the parent holds a per-answer deadline: an answer that runs past
`timeout_s` (or kills its worker) is marked unverifiable, the worker is killed and replaced, and
the rest of the batch goes to the fresh worker. Workers are spawned (never forked from a parent
that may hold CUDA or threads) and are daemonic, so none outlives the run.
Spawned workers re-import the `__main__` script: a script that builds a pooled verifier needs
the `if __name__ == "__main__":` guard (console entry points such as `opd-engine` have it).
"""

from __future__ import annotations

import contextlib
import importlib
import multiprocessing as mp
import os
import time
import weakref
from collections import deque
from collections.abc import Callable, Sequence
from multiprocessing.connection import Connection, wait
from typing import Any

Result = tuple[bool | None, str]
STARTUP_TIMEOUT_S = 120.0  # importing a verifier (SymPy, ...) is not the verified call


def _as_result(value: Any) -> Result:
    """A callable may return a bool (or 0/1, numpy bool) or a (bool | None, detail) pair."""
    if isinstance(value, tuple) and len(value) == 2:
        correct, detail = value
        return (None if correct is None else _as_bool(correct)), str(detail)
    return _as_bool(value), f"returned {value!r}"


def _as_bool(value: Any) -> bool:
    if isinstance(value, bool) or (isinstance(value, int) and value in (0, 1)):
        return bool(value)
    if getattr(getattr(value, "dtype", None), "kind", "") == "b":
        return bool(value)
    raise TypeError(f"verifier returned {value!r} ({type(value).__name__}); expected a bool")


def _worker_main(conn: Connection, target: str) -> None:
    """Import the target once, then check batches: ("batch", question, [(i, text), ...]).

    Ctrl-C in the terminal reaches the whole process group: workers ignore it and let the
    parent decide (it stops them), instead of each printing a traceback.
    """
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        module_name, _, attr = target.partition(":")
        fn: Callable[..., Any] = getattr(importlib.import_module(module_name), attr)
    except BaseException as e:
        conn.send(("error", f"cannot load verifier {target!r}: {type(e).__name__}: {e}"))
        return
    conn.send(("ready",))
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):
            return
        if message is None:
            return
        _, question, items = message
        for i, text in items:
            try:
                correct, detail = _as_result(fn(text, question))
            except BaseException as e:  # SystemExit from user code included
                correct, detail = None, f"{type(e).__name__}: {e}"
            conn.send(("done", i, correct, detail))


class _Worker:
    """One process, the answers it still owes, and when the current one is overdue."""

    def __init__(self, ctx: Any, target: str) -> None:
        self.conn, child = ctx.Pipe(duplex=True)
        self.proc = ctx.Process(target=_worker_main, args=(child, target), daemon=True)
        self.proc.start()
        child.close()  # so the parent sees EOF when the worker dies
        self.ready = False
        self.owed: deque[tuple[int, str]] = deque()
        self.deadline = time.monotonic() + STARTUP_TIMEOUT_S

    def send_batch(self, question: Any, timeout_s: float) -> None:
        self.deadline = time.monotonic() + timeout_s
        with contextlib.suppress(OSError):  # a dead worker shows up as EOF and is replaced
            self.conn.send(("batch", question, list(self.owed)))

    def kill(self) -> None:
        if self.proc.is_alive():
            self.proc.kill()
        self.proc.join(timeout=5)
        self.conn.close()


def _shutdown(workers: list[_Worker]) -> None:
    for w in workers:
        w.kill()
    workers.clear()


class VerifierPool:
    """`run(question, texts)` -> one (correct, detail) per text, hung or crashed ones None."""

    def __init__(self, target: str, *, timeout_s: float, workers: int = 0) -> None:
        self.target = target
        self.timeout_s = timeout_s
        self.size = workers if workers > 0 else min(4, os.cpu_count() or 1)
        self.restarts = 0
        self._ctx = mp.get_context("spawn")
        self._workers: list[_Worker] = []
        self._finalizer = weakref.finalize(self, _shutdown, self._workers)

    def run(self, question: Any, texts: Sequence[str]) -> list[Result]:
        results: list[Result | None] = [None] * len(texts)
        n_workers = min(self.size, len(texts))
        for k, w in enumerate(self._workers):
            if not w.proc.is_alive():  # died while idle (OOM killer, ...): not any answer's fault
                w.kill()
                self._workers[k] = _Worker(self._ctx, self.target)
        while len(self._workers) < n_workers:
            self._workers.append(_Worker(self._ctx, self.target))
        chunk = -(-len(texts) // max(n_workers, 1))
        busy: list[_Worker] = []
        for k, w in enumerate(self._workers[:n_workers]):
            w.owed.extend((i, texts[i]) for i in range(k * chunk, min((k + 1) * chunk, len(texts))))
            if w.owed:
                busy.append(w)
                if w.ready:
                    w.send_batch(question, self.timeout_s)
        while busy:
            now = time.monotonic()
            wait([w.conn for w in busy], timeout=max(0.0, min(w.deadline for w in busy) - now))
            for w in list(busy):
                replacement = self._service(w, question, results)
                if replacement is not w:
                    busy.remove(w)
                    if replacement is not None:
                        busy.append(replacement)
                elif not w.owed:
                    busy.remove(w)
        return [r if r is not None else (None, "no result") for r in results]

    def _service(self, w: _Worker, question: Any, results: list[Result | None]) -> _Worker | None:
        """Drain w's messages; replace it if dead or overdue. Returns who now owes its work."""
        try:
            while w.conn.poll():
                message = w.conn.recv()
                if message[0] == "ready":
                    w.ready = True
                    w.send_batch(question, self.timeout_s)
                elif message[0] == "done":
                    i, correct, detail = message[1:]
                    w.owed.popleft()
                    results[i] = (correct, detail)
                    w.deadline = time.monotonic() + self.timeout_s
                else:  # "error": the target failed to import in the worker
                    reason = message[1]
                    return self._replace(w, question, results, reason, give_up=True)
        except (EOFError, OSError):
            w.proc.join(timeout=1)
            return self._replace(w, question, results, "verifier worker died "
                                 f"(exit code {w.proc.exitcode}) on this completion",
                                 give_up=not w.ready)
        if w.owed and time.monotonic() >= w.deadline:
            if not w.ready:
                return self._replace(w, question, results, "verifier worker did not start within "
                                     f"{STARTUP_TIMEOUT_S:.0f} s", give_up=True)
            return self._replace(w, question, results, f"timed out after {self.timeout_s:g} s")
        return w

    def _replace(self, w: _Worker, question: Any, results: list[Result | None], reason: str,
                 *, give_up: bool = False) -> _Worker | None:
        """Kill w; its current answer gets `reason` and a fresh worker takes the rest.

        With give_up (the worker could not even start) every answer it owed gets `reason` and
        no replacement is started: a broken verifier must not respawn once per answer.
        """
        w.kill()
        self.restarts += 1
        owed = w.owed
        for _ in range(len(owed) if give_up else 1):
            i, _text = owed.popleft()
            results[i] = (None, reason)
        if give_up or not owed:
            self._workers.remove(w)
            return None
        fresh = _Worker(self._ctx, self.target)
        self._workers[self._workers.index(w)] = fresh
        fresh.owed = owed
        return fresh

    def close(self) -> None:
        """Kill every worker now (also done when the pool is collected or at exit)."""
        _shutdown(self._workers)
