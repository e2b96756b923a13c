"""`opd-engine`: run the diagnostic, validate configs, merge parts, print summaries, build the toy.

Heavy imports (torch, transformers) happen inside the commands that need them, so `validate`,
`info` and `--help` answer instantly. User mistakes exit with status 2 and one message per
problem; nothing is started and nothing is written.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Annotated

import numpy as np
import typer
from rich.console import Console
from rich.table import Table

from engine.runfile.demo import how_to_get_demo, sample_data_dir

app = typer.Typer(
    add_completion=False, no_args_is_help=False, rich_markup_mode="rich",
    pretty_exceptions_show_locals=False,
    help="Per-token diagnostic of on-policy distillation: where each teacher helps or hurts.",
)
toy_app = typer.Typer(help="The offline toy world (tiny models trained here).")
app.add_typer(toy_app, name="toy")
err = Console(stderr=True, soft_wrap=True)
out = Console()

SAMPLE_DATA = sample_data_dir()  # the checkout's, $OPD_SAMPLE_DATA, ./sample_data or the user's
DEMO_CONFIG = SAMPLE_DATA / "demo.toml"
DEMO_LIMIT = 3


class UserError(Exception):
    """A problem the user can fix; printed without a traceback, exit status 2."""


def _user_errors() -> tuple[type[Exception], ...]:
    from engine.inputs.config import ConfigError
    from engine.inputs.datasets import DatasetError
    from engine.inputs.preflight import PreflightError
    from engine.runfile.schema import SchemaError
    from engine.runfile.store import RunDirError

    errs: list[type[Exception]] = [UserError, ConfigError, DatasetError, RunDirError, SchemaError,
                                   PreflightError]
    if "engine.models.loading" in sys.modules:
        from engine.inputs.prompts import TemplateError
        from engine.models.loading import ModelLoadError
        from engine.models.vocab import VocabMismatchError
        from engine.stages.param_check import ParamGroupError
        from engine.verify.verifiers import VerifierConfigError

        errs += [ModelLoadError, TemplateError, VerifierConfigError, VocabMismatchError,
                 ParamGroupError]
    return tuple(errs)


def _fail(e: Exception) -> None:
    from engine.inputs.config import ConfigError
    from engine.inputs.preflight import PreflightError

    if isinstance(e, (ConfigError, PreflightError)):
        err.print(f"[red]error:[/red] the config has {len(e.problems)} problem(s):")
        for p in e.problems:
            err.print(f"  - {p}", markup=False, highlight=False)
    else:
        err.print("[red]error:[/red] ", end="")
        err.print(str(e), markup=False, highlight=False)
    raise typer.Exit(2)


SetOption = Annotated[list[str] | None, typer.Option(
    "--set", metavar="SECTION.KEY=VALUE",
    help="override one config key (repeatable); the value is read as TOML, else as text: "
         "--set sampling.rollouts=8 --set nodes.strategy=entropy:16 "
         "--set teachers.strong.temperature=0.7")]


@app.command()
def run(
    config: Annotated[Path | None, typer.Argument(help="TOML config; default: the demo config "
                                                  "on a few of its questions")] = None,
    limit: Annotated[int, typer.Option(help="only the first N questions (0 = all)")] = 0,
    fresh: Annotated[bool, typer.Option(help="discard an existing run in the output dir")] = False,
    out_dir: Annotated[Path | None, typer.Option("--out", help="override output_dir")] = None,
    set_: SetOption = None,
) -> None:
    """Compute the diagnostic for every question and write the run's DuckDB file.

    [b]Examples[/b]

      opd-engine run                          # demo config, 3 questions, into runs/demo-*
      opd-engine run my.toml --limit 10       # first 10 questions
      opd-engine run my.toml                  # again: resumes, skipping finished questions
      opd-engine run my.toml --fresh          # start over
      opd-engine run my.toml --set sampling.rollouts=8 --out runs/g8   # one key changed
    """
    from engine.inputs.config import parse_config

    demo = config is None
    try:
        if demo:
            if not DEMO_CONFIG.exists():
                raise UserError(f"no config given, and {how_to_get_demo(DEMO_CONFIG)}; "
                                "or pass a config")
            config = DEMO_CONFIG
            limit = limit or DEMO_LIMIT
            if out_dir is None:
                out_dir = Path("runs") / time.strftime("demo-%Y%m%d-%H%M%S")
        assert config is not None
        cfg = parse_config(config, overrides=set_ or ())
        if out_dir is not None:
            cfg = cfg.model_copy(update={"output_dir": out_dir.resolve()})
        if cfg.nodes.kind == "adaptive":
            raise UserError("node strategy 'adaptive' is not implemented yet; use entropy:N, "
                            "stride:S or all")
        _run(cfg, limit=limit, fresh=fresh)
    except _user_errors() as e:
        _fail(e)
    if demo:
        shown = DEMO_CONFIG.relative_to(Path.cwd()) if DEMO_CONFIG.is_relative_to(Path.cwd()) \
            else DEMO_CONFIG
        out.print(f"\nThis was the demo config on its first {limit} questions. The full demo "
                  f"set: [b]opd-engine run {shown} --out runs/demo-full[/b]")


def _run(cfg, *, limit: int, fresh: bool, announce: bool = True) -> Path:  # noqa: ANN001
    """Check everything, load the models, and only then touch the output directory.

    Order matters for "nothing half-written": questions and everything checkable without
    weights (preflight), the directory (read-only), the models, every prompt; then the lock,
    recovery of what a killed run left, the previous run moved aside (--fresh) until the new
    run's tables are written, the questions, the merge. Progress and warnings also go to the
    run directory's run.log, from the moment the lock is held.
    """
    import signal

    from engine.inputs.preflight import preflight
    from engine.run import metadata
    from engine.run.log import RunLog
    from engine.run.world import load_run_questions, load_world, render_all_prompts
    from engine.runfile import store

    if limit < 0:
        raise UserError(f"--limit must be >= 0 (0 = all questions), got {limit}")
    questions = load_run_questions(cfg, limit)
    preflight(cfg, questions)
    store.check_run_dir(cfg.output_dir, cfg.fingerprint(), fresh=fresh)
    log = RunLog()
    log.line(f"opd-engine run {cfg.source}{' --fresh' if fresh else ''} (config "
             f"{cfg.fingerprint()})")
    _say(log, f"loading models for {len(questions)} questions -> {cfg.output_dir}")
    t0 = time.perf_counter()
    try:
        world = load_world(cfg)
    except KeyboardInterrupt:
        err.print("\n[yellow]interrupted[/yellow] while loading models: nothing was written")
        raise typer.Exit(130) from None
    results: list = []
    try:
        render_all_prompts(world, questions)
        env = metadata.environment(world)

        previous = {sig: signal.signal(sig, store.on_stop_signal)
                    for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            with store.run_lock(cfg.output_dir, "opd-engine run " + str(cfg.source)):
                log.open(cfg.output_dir)
                for line in store.recover_run_dir(cfg.output_dir):
                    _say(log, f"recovered: {line}")
                store.check_run_dir(cfg.output_dir, cfg.fingerprint(), fresh=fresh)
                trash = store.discard_previous(cfg.output_dir) if fresh else None
                store.write_run_tables(cfg.output_dir, metadata.run_tables(cfg, env))
                store.forget_discarded(trash)
                results = _run_questions(world, questions, cfg, log)
                wall = time.perf_counter() - t0
                db = store.merge(cfg.output_dir,
                                 extra_meta={"timings": metadata.timings_json(results, wall)},
                                 draws=cfg.bootstrap_draws, seed=cfg.seed)
                log.line(f"merged {db} ({wall:.1f}s)")
                _log_warnings(log, db)
        except KeyboardInterrupt:
            done = store.finished_parts(cfg.output_dir)
            ok = sum(1 for q in questions if done.get(q.id) == "ok")
            _say(log, f"\n[yellow]interrupted[/yellow]: {ok} of {len(questions)} questions are "
                 f"finished and saved in {cfg.output_dir / store.PARTS_DIR} (the one in "
                 "flight is lost). Run the same command again to resume: finished questions "
                 "are skipped.", console=err)
            raise typer.Exit(130) from None
        except OSError as e:
            done = store.finished_parts(cfg.output_dir) if cfg.output_dir.exists() else {}
            raise UserError(
                f"cannot write to {cfg.output_dir}: {e.strerror or e} ({e.filename or ''}). "
                f"The {sum(1 for v in done.values() if v == 'ok')} finished question(s) in "
                f"{cfg.output_dir / store.PARTS_DIR} are intact; free space (or fix the "
                "directory) and run the same command again to resume") from None
        finally:
            log.close()
            for sig, handler in previous.items():
                signal.signal(sig, handler)
    finally:
        world.close()
    _print_info(db)
    if announce:
        out.print(f"\nwrote {db}  ({wall:.1f}s)   explore it: [b]opd-tui {db}[/b]")
    return db


def _say(log, message: str, *, console: Console = out) -> None:  # noqa: ANN001
    """Print a line (rich markup) and append it, as plain text, to the run's run.log."""
    from rich.text import Text

    console.print(message, highlight=False)
    log.line(Text.from_markup(message).plain.strip("\n"))


def _log_warnings(log, db: Path) -> None:  # noqa: ANN001
    """The warnings the summary prints (unverifiable continuations), into run.log too."""
    from engine.runfile import schema
    from engine.runfile.report import unverifiable_warnings

    con = schema.open_run(db)
    try:
        for line in unverifiable_warnings(con):
            log.line(f"warning: {line}")
    finally:
        con.close()


def _run_questions(world, questions: list, cfg, log) -> list:  # noqa: ANN001
    """The question loop with its progress bar: questions, continuations/s, tokens/s, ETA."""
    from rich.markup import escape
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    from engine.run.orchestrate import run_questions
    from engine.runfile import store

    done_before = store.finished_parts(cfg.output_dir)
    skip = sum(1 for q in questions if done_before.get(q.id) == "ok")
    if skip:
        _say(log, f"resuming: {skip} question(s) already done")
    totals = {"cont": 0, "tok": 0}
    t_start = time.perf_counter()
    with Progress(
        TextColumn("[b]questions"), BarColumn(), MofNCompleteColumn(),
        TextColumn("{task.fields[rate]}"), TimeElapsedColumn(), TextColumn("ETA"),
        TimeRemainingColumn(), console=out, transient=False,
    ) as progress:
        task = progress.add_task("q", total=len(questions) - skip, rate="")

        def on_done(st, i: int, n: int) -> None:  # noqa: ANN001
            totals["cont"] += st.n_continuations
            totals["tok"] += st.generated_tokens
            el = max(time.perf_counter() - t_start, 1e-9)
            rate = f"{totals['cont'] / el:,.0f} cont/s  {totals['tok'] / el:,.0f} tok/s"
            if st.error:
                _say(log, f"[red]✗ {escape(st.question_id)}[/red] failed: {escape(st.error)}",
                     console=progress.console)
            else:
                _say(log, f"✓ {escape(st.question_id)}: {st.n_correct}/{st.n_rollouts} correct, "
                     f"{st.n_nodes} nodes, {st.n_continuations:,} continuations, "
                     f"{st.seconds:.1f}s", console=progress.console)
            progress.update(task, advance=1, rate=rate)

        results = run_questions(world, questions, cfg.output_dir, on_done)
    log.line(f"{len(results)} question(s) done, {sum(1 for r in results if r.error)} failed, "
             f"{totals['cont']:,} continuations, {totals['tok']:,} generated tokens")
    return results


def _print_info(path: Path, signals: tuple[str, ...] | None = None) -> None:
    from engine.runfile import schema
    from engine.runfile.report import print_summary, wide_console

    con = schema.open_run(path)
    try:
        schema.check_schema(con)
        print_summary(con, wide_console(), signals=signals)
    finally:
        con.close()


@app.command()
def plan(
    config: Annotated[Path, typer.Argument(help="TOML config")],
    sample: Annotated[int, typer.Option(help="questions seeded to count nodes (spread evenly)")]
    = 8,
    calibrate: Annotated[bool, typer.Option(help="time one full question on this device")] = True,
    set_: SetOption = None,
) -> None:
    """Before a long run: nodes, continuations, generated tokens, disk and an ETA.

    Seeds a sample of questions exactly as `run` would (same rollouts, same node selection),
    counts what the node strategy and budget select, and times one complete question on the
    actual device to turn token counts into hours.

    [b]Example[/b]:  opd-engine plan my.toml --sample 16
    """
    import tempfile

    from engine.inputs.config import parse_config
    from engine.run.orchestrate import process_question
    from engine.run.plan import plan_question
    from engine.run.world import load_run_questions, load_world
    from engine.runfile import store

    try:
        cfg = parse_config(config, overrides=set_ or ())
        questions = load_run_questions(cfg)
        world = load_world(cfg)
    except _user_errors() as e:
        _fail(e)
    n_q = len(questions)
    step = max(1, n_q // max(1, min(sample, n_q)))
    picked = questions[::step][:sample]
    plans = [plan_question(world, q) for q in picked]
    mean = {k: float(np.mean([getattr(p, k) for p in plans]))
            for k in ("rollout_tokens", "nodes", "continuations", "est_tokens", "seconds")}
    table = Table(title=f"Plan for {n_q} questions (from {len(plans)} seeded)")
    table.add_column("")
    table.add_column("per question", justify="right")
    table.add_column("whole run", justify="right")
    for label, key in (("rollout tokens", "rollout_tokens"), ("probed nodes", "nodes"),
                       ("continuations", "continuations"),
                       ("generated tokens (est.)", "est_tokens")):
        table.add_row(label, f"{mean[key]:,.0f}", f"{mean[key] * n_q:,.0f}")
    if calibrate and picked:
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.perf_counter()
            tables, st = process_question(world, picked[0])
            secs = time.perf_counter() - t0
            part = store.write_part(Path(tmp), 0, picked[0].id, tables)
            size = sum(f.stat().st_size for f in part.iterdir())
        ref = plans[0]
        rate = st.generated_tokens / max(secs - ref.seconds, 1e-6)
        eta = n_q * mean["seconds"] + n_q * mean["est_tokens"] / max(rate, 1e-9)
        disk = size / max(ref.nodes, 1) * mean["nodes"] * n_q
        table.add_row("disk (parts, est.)", f"{size / max(ref.nodes, 1) * mean['nodes'] / 1e6:,.2f}"
                      " MB", f"{disk / 1e9:,.2f} GB")
        table.add_row("time", f"{eta / n_q:,.1f} s", _duration(eta))
        out.print(table)
        out.print(f"calibration on {world.student.device}: {picked[0].id} took {secs:.1f}s, "
                  f"{st.n_continuations:,} continuations, {rate:,.0f} generated tokens/s")
    else:
        out.print(table)
    world.close()


def _duration(seconds: float) -> str:
    h, rem = divmod(int(seconds), 3600)
    m, s = divmod(rem, 60)
    return f"{h}h {m:02d}m" if h else f"{m}m {s:02d}s"


@app.command()
def validate(config: Annotated[Path, typer.Argument(help="TOML config to check")],
             set_: SetOption = None) -> None:
    """Check a config without loading weights: every problem is listed, exit 2 if any.

    Checks the config, the dataset, every template on every question, tokenizers, vocabulary
    compatibility, chat templates, the verifier, the device and the output directory.

    [b]Example[/b]:  opd-engine validate my.toml
    """
    from engine.inputs.config import parse_config

    try:
        cfg = parse_config(config, overrides=set_ or ())
        from engine.inputs.datasets import load_questions
        from engine.inputs.preflight import preflight
        from engine.runfile.store import check_run_dir

        qs = load_questions(Path(cfg.data.path), preset=cfg.data.preset, fields=cfg.data.fields,
                            limit=cfg.data.limit)
        preflight(cfg, qs)
        check_run_dir(cfg.output_dir, cfg.fingerprint(), fresh=False)
    except _user_errors() as e:
        _fail(e)
    teachers = ", ".join(f"{t.name} ({t.kind})" for t in cfg.all_teachers)
    out.print(f"config OK: {len(qs)} questions, teachers {teachers}, signals "
              f"{', '.join(cfg.signals.families)}, nodes {cfg.nodes.strategy}, "
              f"N {cfg.continuations.n}, G {cfg.sampling.rollouts}, output {cfg.output_dir}")


@app.command("config")
def config_(
    config: Annotated[Path | None, typer.Argument(help="TOML config to print with every value "
                                                  "it runs with")] = None,
    defaults: Annotated[bool, typer.Option(
        "--defaults", help="print every key with its default and its meaning")] = False,
    set_: SetOption = None,
) -> None:
    """Print a config as annotated TOML: the defaults, or what a config runs with.

    [b]Examples[/b]

      opd-engine config --defaults > my.toml   # then fill in the keys marked required
      opd-engine config my.toml --set sampling.rollouts=8   # the effective values
    """
    from engine.inputs.config import parse_config
    from engine.inputs.config_doc import defaults_toml, effective_toml

    try:
        if defaults == (config is not None):
            raise UserError("pass a config to print, or --defaults (not both)")
        if defaults:
            if set_:
                raise UserError("--set applies to a config, not to --defaults")
            text = defaults_toml()
        else:
            assert config is not None
            text = effective_toml(parse_config(config, overrides=set_ or ()),
                                  header=f"# {config}, every value it runs with\n")
    except _user_errors() as e:
        _fail(e)
    sys.stdout.write(text)


@app.command()
def info(
    path: Annotated[Path, typer.Argument(help="run .duckdb file or run directory")],
    signal: Annotated[list[str] | None, typer.Option(help="only these signals")] = None,
) -> None:
    """Print the summary of a run file (read-only, no models loaded).

    [b]Example[/b]:  opd-engine info sample_data/demo.duckdb --signal rkl
    """
    try:
        if not path.exists():
            raise UserError(f"{path} does not exist; pass a run .duckdb file or run directory")
        _print_info(path, tuple(signal) if signal else None)
    except _user_errors() as e:
        _fail(e)
    except Exception as e:  # a file that is not a DuckDB database at all
        if "duckdb" in type(e).__module__.lower() or isinstance(e, OSError):
            _fail(UserError(f"{path} is not a readable run database: {e}"))
        raise


@app.command()
def merge(run_dir: Annotated[Path, typer.Argument(help="run directory with parts/")]) -> None:
    """Consolidate a run directory's parts into its run.duckdb (also after an interrupted run).

    [b]Example[/b]:  opd-engine merge runs/demo
    """
    from engine.runfile import store

    try:
        if not run_dir.is_dir():
            raise UserError(f"{run_dir} is not a directory; pass a run directory")
        with store.run_lock(run_dir, f"opd-engine merge {run_dir}"):
            for line in store.recover_run_dir(run_dir):
                out.print(f"recovered: {line}")
            meta = store.read_run_meta(run_dir)
            if not meta:
                raise UserError(f"{run_dir} is not a run directory (no run/meta.parquet)")
            db = store.merge(run_dir, draws=int(meta.get("bootstrap_draws", 200)),
                             seed=int(meta.get("seed", 0)))
    except _user_errors() as e:
        _fail(e)
    out.print(f"wrote {db}")


@toy_app.command("build")
def toy_build(
    out_dir: Annotated[Path, typer.Option("--out", help="where to write the world")] = SAMPLE_DATA,
    mini: Annotated[bool, typer.Option(help="tiny, fast world for tests")] = False,
    demo_db: Annotated[bool, typer.Option(help="also compute demo.duckdb")] = True,
) -> None:
    """Train the toy world's models, write its questions and config, and compute the demo DB.

    [b]Example[/b]:  opd-engine toy build --out /tmp/world
    """
    from engine.toy.world import build_world

    def make_demo(config_path: Path) -> None:
        import shutil

        from engine.inputs.config import parse_config

        cfg = parse_config(config_path)
        work = out_dir / ".demo-run"
        cfg = cfg.model_copy(update={"output_dir": work.resolve()})
        _run(cfg, limit=0, fresh=True, announce=False).replace(out_dir / "demo.duckdb")
        shutil.rmtree(work, ignore_errors=True)

    t0 = time.perf_counter()
    build_world(out_dir, mini=mini, make_demo_db=make_demo if demo_db else None)
    out.print(f"\ntoy world built in {time.perf_counter() - t0:.0f}s: {out_dir}"
              + (f"   explore it: [b]opd-tui {out_dir / 'demo.duckdb'}[/b]" if demo_db else ""))


@toy_app.command("findings")
def toy_findings(
    path: Annotated[Path, typer.Argument(help="demo database")] = SAMPLE_DATA / "demo.duckdb",
) -> None:
    """What the toy demo shows: alignment per node class, specialist vs strong, switching.

    [b]Example[/b]:  opd-engine toy findings
    """
    from engine.runfile import schema
    from engine.runfile.report import wide_console
    from engine.toy.findings import print_findings

    try:
        if not path.exists():
            raise UserError(how_to_get_demo(path))
        con = schema.open_run(path)
        schema.check_schema(con)
    except _user_errors() as e:
        _fail(e)
    print_findings(con, wide_console())


def main() -> None:
    """The `opd-engine` entry point. Process-wide settings are applied here, once, and never by
    library calls: `tune_allocator` keeps full-vocabulary buffers from fragmenting the heap."""
    from engine.models.allocator import tune_allocator

    tune_allocator()
    app()


if __name__ == "__main__":
    main()
