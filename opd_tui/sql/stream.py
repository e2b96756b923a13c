"""Run a console query and stream its result in Arrow batches, never materialising it whole.

`start_query` checks the SQL, runs every statement but the last, and returns a `ResultStream` over
the last one. The stream reads DuckDB's Arrow reader lazily, enforces the hard row limit with a
probe row (so the UI can say "10,000 of >10,000"), and can be cancelled from another thread with
the cursor's `interrupt()`. `RowWindow` turns it into rows addressable by index for a grid, keeping
a bounded number of pages in memory so scrolling a 10-million-row result keeps memory flat.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from dataclasses import dataclass

import duckdb
import pyarrow as pa

from opd_tui.sql.sandbox import Sandbox
from opd_tui.sql.statements import Statement, check_read_only

DEFAULT_BATCH_ROWS = 2048
DEFAULT_ROW_LIMIT = 100_000


@dataclass(frozen=True)
class QueryTiming:
    """Seconds from submit to DuckDB's first batch, measured inside the stream."""

    first_batch_s: float


class ResultStream:
    """Forward-only batches of one statement's result, cut at `row_limit` (+1 probe row)."""

    def __init__(
        self,
        cursor: duckdb.DuckDBPyConnection,
        statement: Statement,
        *,
        row_limit: int = DEFAULT_ROW_LIMIT,
        batch_rows: int = DEFAULT_BATCH_ROWS,
    ) -> None:
        self.cursor = cursor
        self.statement = statement
        self.row_limit = row_limit
        self.rows_fetched = 0
        self.exhausted = False
        self.truncated = False
        """True when the probe found rows beyond `row_limit`."""
        started = time.perf_counter()
        rel = cursor.sql(statement.sql)
        if rel is None:  # a statement that returns nothing (no rows, no columns)
            self._reader: pa.RecordBatchReader | None = None
            self.schema = pa.schema([])
            self.exhausted = True
        else:
            self._reader = rel.to_arrow_reader(batch_rows)
            self.schema = self._reader.schema
        self._first: pa.RecordBatch | None = self._read() if self._reader is not None else None
        self.timing = QueryTiming(time.perf_counter() - started)

    def _read(self) -> pa.RecordBatch | None:
        assert self._reader is not None
        while True:
            try:
                batch = self._reader.read_next_batch()
            except StopIteration:
                return None
            if batch.num_rows:
                return batch

    @property
    def more_available(self) -> bool:
        """Rows remain to be fetched (within the limit) or lie beyond it."""
        return not self.exhausted or self.truncated

    def next_batch(self) -> pa.RecordBatch | None:
        """The next batch within the limit, or None when done (limit reached or result drained)."""
        if self.exhausted:
            return None
        batch = self._first if self._first is not None else self._read()
        self._first = None
        if batch is None:
            self._finish(truncated=False)
            return None
        room = self.row_limit - self.rows_fetched
        if batch.num_rows > room:
            self._finish(truncated=True)
            batch = batch.slice(0, room)
        elif batch.num_rows == room:
            probe = self._read()  # the probe row: is there anything beyond the limit?
            self._finish(truncated=probe is not None)
        self.rows_fetched += batch.num_rows
        return batch if batch.num_rows else None

    def _finish(self, *, truncated: bool) -> None:
        self.exhausted = True
        self.truncated = truncated
        self.close()

    def cancel(self) -> None:
        """Interrupt the running query; safe to call from any thread."""
        self.cursor.interrupt()

    def close(self) -> None:
        if self._reader is not None:
            self._reader.close()
            self._reader = None


def start_query(
    sandbox: Sandbox,
    sql: str,
    *,
    row_limit: int = DEFAULT_ROW_LIMIT,
    batch_rows: int = DEFAULT_BATCH_ROWS,
    cursor: duckdb.DuckDBPyConnection | None = None,
) -> ResultStream:
    """Check `sql`, run all statements but the last, and stream the last.

    Pass `cursor` (from `sandbox.cursor()`) to be able to interrupt the earlier statements too.
    """
    statements = check_read_only(sql, sandbox.export_dir)
    if any(st.kind == "COPY" for st in statements):
        sandbox.ensure_export_dir()
    cur = cursor if cursor is not None else sandbox.cursor()
    for st in statements[:-1]:
        cur.execute(st.sql).fetchall()
    return ResultStream(cur, statements[-1], row_limit=row_limit, batch_rows=batch_rows)


class RowWindow:
    """Rows of a stream by index, cached in fixed-size pages with a bounded page budget.

    Pages are filled forward from the stream. When the budget is exceeded the page furthest from
    the most recent request is dropped; a dropped page of a SELECT is fetched again with
    `LIMIT .. OFFSET ..` on a fresh cursor (DuckDB keeps insertion order, so the rows are the same).
    `rows()` never blocks on DuckDB and is meant for the UI thread; `ensure()` fetches and is
    meant for a worker thread.
    """

    def __init__(
        self,
        sandbox: Sandbox,
        stream: ResultStream,
        *,
        page_rows: int = DEFAULT_BATCH_ROWS,
        max_pages: int = 64,
    ) -> None:
        self.sandbox = sandbox
        self.stream = stream
        self.page_rows = page_rows
        self.max_pages = max_pages
        self.schema = stream.schema
        self._pages: OrderedDict[int, pa.RecordBatch] = OrderedDict()
        self._pending: list[pa.RecordBatch] = []
        self._filled = 0  # rows that have been cut into complete pages
        self._lock = threading.Lock()
        self._fetch_lock = threading.Lock()

    @property
    def known_rows(self) -> int:
        """Rows fetched from the stream so far (the grid's current height)."""
        return self.stream.rows_fetched

    @property
    def column_names(self) -> list[str]:
        return list(self.schema.names)

    def cached_pages(self) -> list[int]:
        with self._lock:
            return sorted(self._pages)

    def rows(self, start: int, stop: int) -> list[tuple[object, ...] | None]:
        """Rows start..stop-1 as tuples, None for a row not in memory right now."""
        out: list[tuple[object, ...] | None] = []
        row = start
        with self._lock:
            while row < min(stop, self.known_rows):
                page_no, offset = divmod(row, self.page_rows)
                page = self._page_or_pending(page_no)
                if page is None:
                    out.append(None)
                    row += 1
                    continue
                take = min(stop - row, page.num_rows - offset)
                cols = [c.to_pylist() for c in page.slice(offset, take).columns]
                out.extend(zip(*cols, strict=True) if cols else [() for _ in range(take)])
                row += take
        return out

    def _page_or_pending(self, page_no: int) -> pa.RecordBatch | None:
        page = self._pages.get(page_no)
        if page is not None:
            return page
        if page_no * self.page_rows == self._filled and self._pending:
            return pa.Table.from_batches(self._pending).combine_chunks().to_batches()[0]
        return None

    def ensure(self, start: int, stop: int) -> None:
        """Make rows start..stop-1 resident: read the stream forward, refetch dropped pages."""
        with self._fetch_lock:
            while self.known_rows < stop and not self.stream.exhausted:
                batch = self.stream.next_batch()
                if batch is None:
                    break
                self._add(batch)
            if self.stream.exhausted:
                self._flush_pending()
            first, last = start // self.page_rows, max(start, stop - 1) // self.page_rows
            for page_no in range(first, last + 1):
                if page_no * self.page_rows >= self._filled:
                    break
                with self._lock:
                    missing = page_no not in self._pages
                if missing:
                    self._store(page_no, self._refetch(page_no))
            self._evict(center=first)

    def _add(self, batch: pa.RecordBatch) -> None:
        with self._lock:
            self._pending.append(batch)
            held = sum(b.num_rows for b in self._pending)
            if held < self.page_rows:
                return
            merged = pa.Table.from_batches(self._pending)
            self._pending = []
            while merged.num_rows >= self.page_rows:
                self._pages[self._filled // self.page_rows] = _one_batch(
                    merged.slice(0, self.page_rows), self.schema
                )
                self._filled += self.page_rows
                merged = merged.slice(self.page_rows)
            if merged.num_rows:
                self._pending = [_one_batch(merged, self.schema)]

    def _flush_pending(self) -> None:
        with self._lock:
            if self._pending:
                table = pa.Table.from_batches(self._pending)
                self._pages[self._filled // self.page_rows] = _one_batch(table, self.schema)
                self._filled += table.num_rows
                self._pending = []

    def _store(self, page_no: int, page: pa.RecordBatch) -> None:
        with self._lock:
            self._pages[page_no] = page

    def _refetch(self, page_no: int) -> pa.RecordBatch:
        if self.stream.statement.kind != "SELECT":
            raise RuntimeError("only SELECT results can drop and refetch pages")
        cur = self.sandbox.cursor()
        sql = (
            f"SELECT * FROM ({self.stream.statement.sql}) "
            f"LIMIT {self.page_rows} OFFSET {page_no * self.page_rows}"
        )
        try:
            return _one_batch(cur.sql(sql).to_arrow_table(), self.schema)
        finally:
            cur.close()

    def _evict(self, center: int) -> None:
        if self.stream.statement.kind != "SELECT":
            return  # EXPLAIN and friends are small and cannot be refetched
        with self._lock:
            while len(self._pages) > self.max_pages:
                far = max(self._pages, key=lambda p: abs(p - center))
                del self._pages[far]


def _one_batch(table: pa.Table, schema: pa.Schema) -> pa.RecordBatch:
    batches = table.combine_chunks().to_batches()
    return batches[0] if batches else pa.RecordBatch.from_pylist([], schema=schema)
