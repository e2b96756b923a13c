"""Which statements the console may run, judged by DuckDB's own parser.

The connection is read-only where DuckDB can enforce it (a `.duckdb` file), but a live run directory
is an in-memory database with views over Parquet, and even a read-only file accepts `CREATE TEMP
TABLE`. DuckDB's file fence cannot tell reading from writing either: a live run's part files must be
readable, so DuckDB would also let a `COPY` overwrite them. So every statement is classified with
`duckdb.extract_statements` before it runs and only reads (and `COPY ... TO` the export directory)
get through. Statements that run another statement are judged by what they run: `EXPLAIN ANALYZE`
executes the statement it explains, `COPY (query)` executes its query, and a SELECT may carry a
data-modifying CTE (`WITH x AS (INSERT ... RETURNING *) SELECT ...`), found in DuckDB's own parse
tree (`json_serialize_sql`).
"""

from __future__ import annotations

import json
import re
import threading
from dataclasses import dataclass
from pathlib import Path

import duckdb

READ_TYPES = frozenset({"SELECT", "EXPLAIN"})
"""Types that only read (DESCRIBE, SHOW, SUMMARIZE, FROM-first and VALUES parse as SELECT)."""

READ_QUERY_NODES = frozenset({"SELECT_NODE", "SET_OPERATION_NODE", "RECURSIVE_CTE_NODE",
                              "CTE_NODE"})
"""Query node types of DuckDB's parse tree that only read; any other (INSERT_QUERY_NODE, ...) in a
SELECT is a data-modifying CTE. A whitelist, so a node type new to DuckDB is refused, not run."""

_MAX_DEPTH = 4
"""How deep statements inside statements are followed (EXPLAIN of COPY of a query is 2)."""

_WRITE_WORDS = frozenset({"INSERT", "UPDATE", "DELETE", "MERGE", "COPY", "CREATE", "DROP",
                          "ALTER", "ATTACH", "DETACH", "INSTALL", "LOAD", "CHECKPOINT", "VACUUM"})
"""Keywords refused in a SELECT whose parse tree DuckDB cannot serialise (the fallback check)."""


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

    def as_subquery(self) -> str:
        """The statement in parentheses, safe to wrap in COPY (...) or SELECT * FROM (...).

        DuckDB keeps a statement's trailing `;` and comments in its text: the `;` is cut and the
        text goes on lines of its own, so a trailing `-- comment` cannot swallow the `)`.
        """
        return f"(\n{_without_semicolon(self.sql)}\n)"


def split_statements(sql: str) -> list[Statement]:
    """Parse `sql` into statements; a syntax error propagates as DuckDB's ParserException."""
    return [Statement(s.query, s.type.name) for s in duckdb.extract_statements(sql)]


def check_read_only(sql: str, export_dir: Path | None) -> list[Statement]:
    """Return the statements of `sql`, or raise RefusedStatement for the first that would write.

    `export_dir` is where `COPY ... TO` may write; None refuses every COPY.
    """
    statements = split_statements(sql)
    if not statements:
        raise RefusedStatement("nothing to run: the editor holds no SQL statement")
    for st in statements:
        _check(st, export_dir, depth=0)
    return statements


def _check(st: Statement, export_dir: Path | None, depth: int) -> None:
    if depth > _MAX_DEPTH:
        raise RefusedStatement("statements nested this deep are refused; run the inner one")
    if st.kind == "SELECT":
        _check_select(st.sql)
        return
    if st.kind == "EXPLAIN":
        _check_explain(st.sql, export_dir, depth)
        return
    if st.kind == "COPY":
        _check_copy(st.sql, export_dir, depth)
        return
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


_TOKEN = re.compile(
    r"""'(?:[^']|'')*'|"(?:[^"]|"")*"|--[^\n]*|/\*.*?\*/|[()]|[A-Za-z_]\w*|\S""", re.S
)


def _tokens(sql: str) -> list[re.Match[str]]:
    """Tokens of `sql` without comments (strings and quoted names stay whole)."""
    return [m for m in _TOKEN.finditer(sql) if not m.group().startswith(("--", "/*"))]


def _without_semicolon(sql: str) -> str:
    tokens = _tokens(sql)
    if tokens and tokens[-1].group() == ";":
        return sql[: tokens[-1].start()] + sql[tokens[-1].end():]
    return sql


def _matching_paren(tokens: list[re.Match[str]], open_at: int) -> int | None:
    """Index of the `)` closing the `(` at `open_at`, or None if it is never closed."""
    depth = 0
    for i in range(open_at, len(tokens)):
        tok = tokens[i].group()
        if tok == "(":
            depth += 1
        elif tok == ")":
            depth -= 1
            if depth == 0:
                return i
    return None


_SERIALIZER: duckdb.DuckDBPyConnection | None = None
_SERIALIZER_LOCK = threading.Lock()


def _parse_tree(sql: str) -> dict[str, object] | None:
    """DuckDB's JSON parse tree of a SELECT, or None where it cannot serialise the statement.

    One private in-memory connection serves every check (opening one costs tens of ms); it never
    sees user data and only parses, so sharing it behind a lock is safe.
    """
    global _SERIALIZER
    try:
        with _SERIALIZER_LOCK:
            if _SERIALIZER is None:
                con = duckdb.connect(":memory:")
                con.execute("SET autoinstall_known_extensions = false")
                _SERIALIZER = con
            row = _SERIALIZER.execute("SELECT json_serialize_sql(?)", [sql]).fetchone()
    except duckdb.Error:
        return None
    tree = json.loads(row[0]) if row and row[0] else None
    if not isinstance(tree, dict) or tree.get("error"):
        return None
    return tree


def _node_types(tree: object, found: set[str]) -> set[str]:
    if isinstance(tree, dict):
        for key, value in tree.items():
            if key == "type" and isinstance(value, str) and value.endswith("_NODE"):
                found.add(value)
            else:
                _node_types(value, found)
    elif isinstance(tree, list):
        for value in tree:
            _node_types(value, found)
    return found


def _check_select(sql: str) -> None:
    """Refuse a SELECT that writes through a data-modifying CTE."""
    tree = _parse_tree(sql)
    if tree is not None:
        writes = sorted(_node_types(tree, set()) - READ_QUERY_NODES)
        culprit = writes[0].removesuffix("_QUERY_NODE").removesuffix("_NODE") if writes else None
    else:  # no parse tree: refuse the keywords a write needs
        words = {m.group().upper() for m in _tokens(sql)}
        culprit = min(words & _WRITE_WORDS, default=None)
    if culprit is not None:
        raise RefusedStatement(
            f"this SELECT runs {culprit} (a data-modifying WITH clause) and is refused: the "
            "console is read-only. Keep only the reading part of the query."
        )


def _check_explain(sql: str, export_dir: Path | None, depth: int) -> None:
    """Judge the statement an EXPLAIN shows: `EXPLAIN ANALYZE` (or `EXPLAIN (ANALYZE)`) runs it.

    Where the explained statement starts is ambiguous in the text (`EXPLAIN (SELECT 1)` versus
    `EXPLAIN (FORMAT json) SELECT 1`), so every place it could start is tried and each reading that
    parses must pass; if none parses, the EXPLAIN is refused rather than guessed.
    """
    tokens = _tokens(sql)
    starts: list[int] = []
    i = 1  # tokens[0] is EXPLAIN
    while i < len(tokens):
        starts.append(tokens[i].start())
        word = tokens[i].group().upper()
        if word in ("ANALYZE", "ANALYSE", "VERBOSE"):
            i += 1
            continue
        if word == "(":
            close = _matching_paren(tokens, i)
            if close is not None and close + 1 < len(tokens):
                starts.append(tokens[close + 1].start())
        break
    readings = 0
    for start in starts:
        try:
            inner = split_statements(sql[start:])
        except duckdb.Error:
            continue
        if len(inner) != 1:
            continue
        readings += 1
        try:
            _check(inner[0], export_dir, depth + 1)
        except RefusedStatement as e:
            raise RefusedStatement(
                "EXPLAIN ANALYZE runs the statement it explains, so EXPLAIN gets the same "
                f"check: {e}"
            ) from None
    if readings == 0:
        raise RefusedStatement("cannot tell which statement this EXPLAIN explains; refused")


def copy_direction_and_target(sql: str) -> tuple[str, str | None]:
    """('TO' | 'FROM', target string literal or None) of a COPY statement, read at paren depth 0."""
    depth = 0
    direction: str | None = None
    for m in _tokens(sql):
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


def _check_copy(sql: str, export_dir: Path | None, depth: int) -> None:
    direction, target = copy_direction_and_target(sql)
    if direction != "TO":
        raise RefusedStatement(
            "COPY ... FROM and COPY FROM DATABASE write into the database and are refused: the "
            "console is read-only. Read files with SELECT * FROM read_parquet('...') instead."
        )
    if export_dir is None:
        raise RefusedStatement(
            "COPY is refused here: this session writes no files of its own. With opd-tui --query, "
            "give --output PATH to write the result of the final SELECT."
        )
    if target is None or not _inside(Path(target), export_dir):
        raise RefusedStatement(
            f"COPY may only write inside the export directory {export_dir}; "
            f"write to '{export_dir}/<name>.csv' (or .parquet, .jsonl) instead"
        )
    tokens = _tokens(sql)
    if len(tokens) > 1 and tokens[1].group() == "(":  # COPY (query) TO: the query runs too
        close = _matching_paren(tokens, 1)
        if close is None:
            raise RefusedStatement("COPY with an unclosed ( is refused")
        query = split_statements(sql[tokens[1].end(): tokens[close].start()])
        if len(query) != 1:
            raise RefusedStatement("COPY (...) must hold exactly one query")
        _check(query[0], export_dir, depth + 1)


def _inside(path: Path, directory: Path) -> bool:
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
