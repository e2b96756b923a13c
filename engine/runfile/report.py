"""Human summary of a run file: what `opd-engine info` and the end of `opd-engine run` print.

Reads only the materialised summary tables (torch-free, instant on any file size).
"""

from __future__ import annotations

import json

import duckdb
from rich.console import Console
from rich.table import Table

from engine.runfile.schema import STAGES

_SIGNAL_NAMES = {"rkl": "reverse KL", "fkl": "forward KL", "jsd": "JSD",
                 "sampled": "sampled-token"}


def _fmt(mean: float | None, lo: float | None, hi: float | None, digits: int = 3) -> str:
    if mean is None:
        return "–"
    if lo is None or hi is None:
        return f"{mean:+.{digits}f}"
    return f"{mean:+.{digits}f} [{lo:+.{digits}f},{hi:+.{digits}f}]"


def wide_console() -> Console:
    """Summary tables need ~175 columns; wider than the terminal they wrap rather than crop."""
    probe = Console()
    return Console(width=max(probe.width, 175)) if not probe.is_terminal or probe.width < 175 \
        else probe


def _fmt_milli(mean: float | None, lo: float | None, hi: float | None) -> str:
    """Gains and advantages are small probabilities: shown in thousandths."""
    def scale(x: float | None) -> float | None:
        return None if x is None else 1e3 * x

    return _fmt(scale(mean), scale(lo), scale(hi), digits=2)


UNVERIFIABLE_ALARM = 0.5
"""Share of unverifiable verdicts above which a run is flagged: its S estimates rest on few
judged continuations, and a verifier that never judges would otherwise read as "0% correct"."""


def unverifiable_warnings(con: duckdb.DuckDBPyConnection) -> list[str]:
    """Loud lines for a run whose verifier could not judge most rollouts or continuations."""
    out = []
    # fetchall, not fetchone: a half-read result blocks the caller's next query on `con`
    [(n, bad)] = con.execute("SELECT count(*), count(*) FILTER (WHERE verdict = 'unverifiable') "
                             "FROM rollouts").fetchall()
    if n and bad / n > UNVERIFIABLE_ALARM:
        out.append(f"{bad / n:.0%} of rollouts ({bad} of {n}) are unverifiable: the verifier "
                   "could not judge them (timeouts, crashes, wrong return type); accuracy and S "
                   "are not meaningful. Check [verifier] on a few completions.")
    [(judged, unjudged)] = con.execute(
        "SELECT coalesce(sum(n), 0), coalesce(sum(n_unverifiable), 0) FROM candidates").fetchall()
    total = judged + unjudged
    if total and unjudged / total > UNVERIFIABLE_ALARM:
        out.append(f"{unjudged / total:.0%} of continuations ({unjudged} of {total}) are "
                   "unverifiable: most nodes have no S (null_reason 'unverifiable').")
    return out


def stage_summary(con: duckdb.DuckDBPyConnection) -> str | None:
    """Mean seconds per question in each stage (question_stages), or None when nothing is timed
    (a file from before the table existed has failed the schema check already)."""
    mean = dict(con.execute("SELECT stage, avg(seconds) FROM question_stages GROUP BY stage"
                            ).fetchall())
    if not mean:
        return None
    parts = [f"{stage} {mean[stage]:.2f}" for stage in STAGES if stage in mean]
    return f"seconds per question: {'  '.join(parts)}  (mean over {_n_timed(con)} questions)"


def _n_timed(con: duckdb.DuckDBPyConnection) -> int:
    return con.execute("SELECT count(DISTINCT question_id) FROM question_stages").fetchone()[0]


def print_summary(con: duckdb.DuckDBPyConnection, console: Console | None = None,
                  signals: tuple[str, ...] | None = None) -> None:
    """Header facts, the headline alignment table, best teachers and the oracle gain."""
    console = console or Console()
    meta = dict(con.execute("SELECT key, value FROM meta").fetchall())
    q = con.execute("""SELECT count(*), count(*) FILTER (WHERE status = 'failed'),
                              sum(n_rollouts), sum(n_correct), sum(n_nodes), sum(n_continuations)
                       FROM questions""").fetchone()
    env = json.loads(meta.get("environment", "{}") or "{}")
    console.print(f"[b]run[/b] schema v{meta.get('schema_version')} engine "
                  f"{meta.get('engine_version')}  student {meta.get('student_model', '?')}  "
                  f"device {env.get('device', '?')} {env.get('dtype', '')}")
    acc = (q[3] or 0) / q[2] if q[2] else float("nan")
    console.print(f"questions {q[0]} ({q[1]} failed)  rollouts {q[2] or 0}  accuracy {acc:.1%}  "
                  f"probed nodes {q[4] or 0}  continuations {q[5] or 0}  "
                  f"strategy {meta.get('node_strategy', '?')}  "
                  f"N {meta.get('continuations_n', '?')}")
    stage_line = stage_summary(con)
    if stage_line:
        console.print(stage_line, highlight=False)
    for line in unverifiable_warnings(con):
        console.print(f"[bold red]warning:[/bold red] {line}", highlight=False)
    rows = con.execute("""
        SELECT teacher, is_control, signal, correctness, nodes, metric, n, null_share, mean, lo,
               hi, helps, hurts, neutral, n_labelled
        FROM summary_alignment WHERE correctness IN ('correct', 'incorrect')
        ORDER BY is_control, teacher, signal, correctness""").fetchall()
    cell: dict[tuple, dict] = {}
    keys: list[tuple] = []
    for t, ctrl, sig, corr, nodes, metric, *vals in rows:
        if signals and sig not in signals:
            continue
        k = (ctrl, t, sig, corr)
        if k not in cell:
            keys.append(k)
            cell[k] = {}
        cell[k][(nodes, metric)] = tuple(vals)
    by_signal: dict[str, list[tuple]] = {}
    for k in keys:
        by_signal.setdefault(k[2], []).append(k)
    order = [sg for sg in ("rkl", "fkl", "jsd", "sampled") if sg in by_signal]
    empty = (0, None, None, None, None, None, None, None, None)
    sharp_t = meta.get("sharpened_temperature", "0.5")
    for sig in order:
        note = "" if sig == "rkl" else f" (edge against the student at T={sharp_t})"
        table = Table(title=f"{_SIGNAL_NAMES.get(sig, sig)}{note}: mean [90% question-bootstrap "
                      "CI]", title_justify="left")
        for col in ("teacher", "rollouts", "n", "edge", "decisive", "edge at decisive",
                    "cos (plain)", "advantage ×1e-3 at decisive", "helps/hurts of labelled"):
            table.add_column(col, no_wrap=True)
        last_ctrl = None
        for k in by_signal[sig]:
            ctrl, t, _, corr = k
            c = cell[k]
            if last_ctrl is False and ctrl:
                table.add_section()
            last_ctrl = ctrl
            edge, edge_d = c.get(("all", "edge"), empty), c.get(("decisive", "edge"), empty)
            cos, adv_d = c.get(("all", "cos"), empty), c.get(("decisive", "advantage"), empty)
            hh = "–" if edge_d[5] is None else \
                f"{edge_d[5]:.2f}/{edge_d[6]:.2f} of {edge_d[8]}"
            table.add_row(f"{t}*" if ctrl else t, corr, str(edge[0]), _fmt(*edge[2:5]),
                          str(edge_d[0]), _fmt(*edge_d[2:5]), _fmt(*cos[2:5]),
                          _fmt_milli(*adv_d[2:5]), hh)
        console.print(table)
    console.print("edge = cos(g, d) - cos(g, d_sharp): what a teacher knows beyond making the "
                  "student surer (0: no better than confidence). Labels exist only at decisive "
                  "nodes (stakes >= tau).", highlight=False)
    console.print("* control: the baseline a teacher must beat (sharpened student: no knowledge; "
                  "softened teacher: same knowledge, less confident)")
    best = con.execute("""SELECT scope, key, best_teacher, best_mean, runner_up, margin, n
                          FROM summary_best WHERE scope IN ('run', 'family')
                          ORDER BY scope DESC, key""").fetchall()
    if best:
        bt = Table(title="Best configuration (mean edge at decisive nodes, rank signal)")
        for col in ("scope", "key", "best", "mean", "runner-up", "margin", "n"):
            bt.add_column(col)
        for scope, key, b, m, ru, mg, n in best:
            bt.add_row(scope, key or "–", b or "–", _fmt(m, None, None), ru or "–",
                       _fmt(mg, None, None), str(n))
        console.print(bt)
    orc = con.execute("""SELECT unit, oracle_mean, best_single, best_single_mean, oracle_gain,
                                lo, hi, n, switch_rate, n_pairs FROM summary_oracle""").fetchall()
    for unit, om, bs, bsm, og, lo, hi, n, sw, pairs in orc:
        console.print(
            f"oracle ({unit}): per-node best {_fmt(om, None, None)} vs best single "
            f"{bs} {_fmt(bsm, None, None)}: gain {_fmt(og, lo, hi)} over {n} decisive nodes; "
            f"confident best-teacher switches {sw if sw is None else f'{sw:.1%}'} of "
            f"{pairs} pairs of consecutive decisive nodes")
