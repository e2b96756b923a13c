"""Which statements the console may run, judged by DuckDB's own parser.

The connection is read-only where DuckDB can enforce it (a `.duckdb` file), but a live run directory
is an in-memory database with views over Parquet files DuckDB may also write, and even a read-only
file accepts `CREATE TEMP TABLE`. So every statement is classified with `duckdb.extract_statements`
before it runs and only reads (and `COPY ... TO` the export directory) get through. `EXPLAIN
ANALYZE` executes the statement it explains, so an EXPLAIN is judged by what it explains.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import duckdb

READ_TYPES = frozenset({"SELECT", "EXPLAIN"})
"""Types that only read (DESCRIBE, SHOW, SUMMARIZE, FROM-first and VALUES parse as SELECT)."""


class RefusedStatement(Exception):
    """A statement the read-only console will not run; the message says why and what to do."""


@dataclass(frozen=True)
class ErrorPosition:
    """Where in the SQL text an error points: 1-based line and column."""

    line: int
    column: int


@dataclass(frozen=True)
class Statement:
    """One parsed statement: its text and DuckDB statement type name."""

    sql: str
    kind: str


def split_statements(sql: str) -> list[Statement]:
    """Parse `sql` into statements; a syntax error propagates as DuckDB's ParserException."""
    return [Statement(s.query, s.type.name) for s in duckdb.extract_statements(sql)]


def check_read_only(sql: str, export_dir: Path | None) -> list[Statement]:
    """Return the statements of `sql`, or raise RefusedStatement for the first that would write."""
    statements = split_statements(sql)
    if not statements:
        raise RefusedStatement("nothing to run: the editor holds no SQL statement")
    for st in statements:
        if st.kind == "EXPLAIN":
            _check_explained(st.sql)
            continue
        if st.kind in READ_TYPES:
            continue
        if st.kind == "COPY":
            _check_copy(st.sql, export_dir)
            continue
        if st.kind == "MULTI":
            raise RefusedStatement(
                "this statement expands into several (PIVOT without an IN list creates a type); "
                "name the pivot values explicitly: PIVOT t ON col IN ('a', 'b')"
            )
        raise RefusedStatement(
            f"{st.kind} statements are refused: the console is read-only and never changes the "
            "run database. Use SELECT to read, or COPY (SELECT ...) TO '<export dir>/file' to "
            "export."
        )
    return statements


def _check_explained(sql: str) -> None:
    """Refuse an EXPLAIN unless every reading of what it explains is a plain read.

    `EXPLAIN [ANALYZE] (options) stmt` and `EXPLAIN (SELECT ...)` look alike at the token level,
    so both readings of a leading parenthesis are tried; each one that parses must be all reads.
    """
    tokens = [m for m in _TOKEN.finditer(sql) if not m.group().startswith(("--", "/*"))]
    i = 0
    if i < len(tokens) and tokens[i].group().upper() == "EXPLAIN":
        i += 1
    if i < len(tokens) and tokens[i].group().upper() in ("ANALYZE", "ANALYSE"):
        i += 1
    starts = [tokens[i].start()] if i < len(tokens) else []
    if i < len(tokens) and tokens[i].group() == "(":
        depth = 0
        for j in range(i, len(tokens)):
            depth += {"(": 1, ")": -1}.get(tokens[j].group(), 0)
            if depth == 0:
                if j + 1 < len(tokens):
                    starts.append(tokens[j + 1].start())
                break
    readings = 0
    for start in starts:
        try:
            inner = split_statements(sql[start:])
        except duckdb.Error:
            continue
        if not inner:
            continue
        readings += 1
        for st in inner:
            if st.kind == "EXPLAIN":
                _check_explained(st.sql)
            elif st.kind not in READ_TYPES:
                raise RefusedStatement(
                    f"EXPLAIN {st.kind} is refused: EXPLAIN ANALYZE runs the statement it "
                    "explains, and the console is read-only. EXPLAIN a SELECT instead."
                )
    if readings == 0:
        raise RefusedStatement("EXPLAIN needs a statement to explain: EXPLAIN SELECT ...")


_TOKEN = re.compile(
    r"""'(?:[^']|'')*'|"(?:[^"]|"")*"|--[^\n]*|/\*.*?\*/|[()]|[A-Za-z_]\w*|\S""", re.S
)


def copy_direction_and_target(sql: str) -> tuple[str, str | None]:
    """('TO' | 'FROM', target string literal or None) of a COPY statement, read at paren depth 0."""
    depth = 0
    direction: str | None = None
    for m in _TOKEN.finditer(sql):
        tok = m.group()
        if tok == "(":
            depth += 1
        elif tok == ")":
            depth -= 1
        elif depth == 0 and direction is None and tok.upper() in ("TO", "FROM"):
            direction = tok.upper()
        elif depth == 0 and direction is not None and tok.startswith("'"):
            return direction, tok[1:-1].replace("''", "'")
        elif depth == 0 and direction is not None and tok.upper() == "DATABASE":
            return "DATABASE", None
    return direction or "?", None


def _check_copy(sql: str, export_dir: Path | None) -> None:
    direction, target = copy_direction_and_target(sql)
    if direction != "TO":
        raise RefusedStatement(
            "COPY ... FROM and COPY FROM DATABASE write into the database and are refused: the "
            "console is read-only. Read files with SELECT * FROM read_parquet('...') instead."
        )
    if export_dir is None:
        raise RefusedStatement(
            "COPY is refused here: --query writes its result with --output PATH "
            "(--format csv|json|parquet), so end with the SELECT and name the file there"
        )
    if target is None or not within(Path(target), export_dir):
        raise RefusedStatement(
            f"COPY may only write inside the export directory {export_dir}; "
            f"write to '{export_dir}/<name>.csv' (or .parquet, .jsonl) instead"
        )


def within(path: Path, directory: Path) -> bool:
    """Whether `path` is `directory` or lies inside it, symlinks and `..` resolved."""
    try:
        path.expanduser().resolve().relative_to(directory.resolve())
    except ValueError:
        return False
    return True


_LINE = re.compile(r"^LINE (\d+): (.*)$")
_QUOTED_NAME = re.compile(r'name "([^"]+)"|column "([^"]+)"|with name ([^\s!]+)')


def error_position(message: str, sql: str) -> ErrorPosition | None:
    """Recover the position DuckDB marks with `LINE n:` and a caret line in an error message.

    DuckDB quotes the offending line (possibly trimmed) and puts `^` under the error; the column in
    the original text is found by locating the quoted fragment in that line.
    """
    lines = message.splitlines()
    for i, text in enumerate(lines[:-1]):
        m = _LINE.match(text)
        if not m:
            continue
        line_no = int(m.group(1))
        caret = lines[i + 1].find("^")
        if caret < 0:
            return ErrorPosition(line_no, 1)
        prefix = len(text) - len(m.group(2))
        fragment = m.group(2)
        src_lines = sql.splitlines() or [""]
        src = src_lines[min(line_no, len(src_lines)) - 1]
        offset = src.find(fragment.strip("."))  # DuckDB elides long lines with '...'
        offset = max(offset, 0)
        return ErrorPosition(line_no, offset + caret - prefix + 1)
    return _position_of_named_thing(message, sql)


def _position_of_named_thing(message: str, sql: str) -> ErrorPosition | None:
    """Binder and catalog errors often carry no LINE marker but name the culprit: find it."""
    m = _QUOTED_NAME.search(message)
    if m is None:
        return None
    name = next(g for g in m.groups() if g)
    for line_no, text in enumerate(sql.splitlines(), start=1):
        found = re.search(rf"(?<![\w.]){re.escape(name)}(?!\w)", text)
        if found:
            return ErrorPosition(line_no, found.start() + 1)
    return None
