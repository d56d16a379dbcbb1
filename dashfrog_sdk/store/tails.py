"""The SQLite store's stats pre-aggregates ("tails"), kept by triggers, read by ``stats()``.

``stats(since=...)`` over a day of a 1M-flow store read a third of a million flows and grouped
them (2.5 s). Here the store keeps, for two window widths (1 h, 1 d) and for all flows,
the counts of the flows that started after that window's *edge*, per flow name, tenant, stored
status and duration bin: the rows of ``flow_tails``. A window ``since=X`` is read as the tail
whose edge is nearest ``X``, corrected by the few flows between the edge and ``X`` (read from
``flows``, the same grouping in SQL): exact counts whatever ``X`` is.

- **Kept by triggers** on ``flows``: a flow inserted is added to every tail whose edge it
  started after; a flow whose name, tenant, status, start or end changes is taken out as it
  was and added as it is (a flow ended by another process, a status that a later record
  overrides by ``status.rank``: the trigger sees the row the upsert decided); a flow deleted
  (retention, a dropped flow forgotten) is taken out. Every writer of the file, whatever its
  code, keeps the tails right: they are part of the schema.
- **Folded per transaction** (schema v7): the triggers append each change, signed, to
  ``flow_tail_changes`` (one narrow row), and `fold` adds them to the tails grouped, before the
  transaction commits. Upserting three 38-column tail rows per flow from the triggers was
  12-16 µs of every flow's write (benchmarks/store.py); a batch's flows share a handful of
  groups. The store writer folds before each COMMIT, so a committed store has no change left;
  a writer that does not fold (a SQL shell, an older tool) leaves its changes there, and
  `read` counts them, so its answers stay exact either way (tests/store/test_tails.py).
- **Edges move forward** with the clock: `advance` (the store writer calls it at most every
  ``ADVANCE_EVERY_S``) sets each edge to now minus its width and takes out the flows that
  started between the old and the new edge, in one short transaction. Between calls the
  correction a reader makes grows by the flows of that time, nothing more.
- **Durations** go into bins of a log-linear histogram (HDR style: exact below 64 ns, then 32
  bins per power of two). A percentile read from the bins is the bins' midpoints interpolated
  like `aggregate.percentile` interpolates the values, so it is within ``1/64`` (1.6 %) of
  the exact percentile (the bound is tested in tests/store/test_tails.py); ``stats()`` uses
  the bins only when more than ``queries.EXACT_STATS_UP_TO`` flows match, and the exact
  durations below that.
"""

from __future__ import annotations

import bisect
import contextlib
import itertools
import sqlite3
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

HOUR_NS = 3_600 * 10**9
# (level, width): a tail per window width; `None`: all flows, an edge that never moves. Each
# costs about 10 µs of trigger work per flow written; no 7 d tail: the default retention keeps
# 7 days, so "all" minus the few flows before 7 d ago answers since=7d.
LEVELS: tuple[tuple[int, int | None], ...] = (
    (0, HOUR_NS),
    (1, 24 * HOUR_NS),
    (2, None),
)
NO_DURATION = -(1 << 63)  # the bin of a flow without a duration (running, no start or end)
SUB_BITS = 5  # 2**5 = 32 bins per power of two: a bin's midpoint is within 1/64 of its values
EXACT_BELOW = 1 << (SUB_BITS + 1)  # durations below this many ns are their own bin
RELATIVE_ERROR = 1 / (1 << (SUB_BITS + 1))
ADVANCE_EVERY_S = 30.0


_TOP = 62  # durations of 2**62 ns (146 years) and more share the last bin


def bin_sql(d: str) -> str:
    """`bin_of` as a SQL expression over the integer expression `d` (trusted SQL)."""
    whens = " ".join(
        f"WHEN {d} < {1 << (s + SUB_BITS + 1)} THEN {s << SUB_BITS} + ({d} >> {s})"
        for s in range(1, _TOP - SUB_BITS)
    )
    return f"(CASE WHEN {d} < {EXACT_BELOW} THEN {d} {whens} ELSE {bin_of(1 << _TOP)} END)"


def bin_of(d: int) -> int:
    """The bin of a duration of `d` ns: `d` itself below ``EXACT_BELOW``, else
    ``32 * s + (d >> s)`` where ``s`` makes ``d >> s`` one of 32..63."""
    if d < EXACT_BELOW:
        return d
    d = min(d, 1 << _TOP)
    s = d.bit_length() - SUB_BITS - 1
    return (s << SUB_BITS) + (d >> s)


def bin_value(b: int) -> float:
    """The midpoint of bin `b`, in ns (the value itself for the exact bins)."""
    if b < EXACT_BELOW:
        return float(b)
    s = (b >> SUB_BITS) - 1
    m = b - (s << SUB_BITS)
    return (2 * m + 1) * float(1 << (s - 1))


def key_sql(column: str) -> str:
    """A name or tenant as a key column: ``''`` for none, ``'=' || value`` otherwise (a key
    column may not be NULL: NULLs never conflict, so the upserts would add rows)."""
    return f"COALESCE('=' || {column}, '')"


def unkey(key: str) -> str | None:
    return key[1:] if key else None


def _duration_bin(row: str) -> str:
    d = f"({row}.end_ns - {row}.start_ns)"
    return (
        f"CASE WHEN {row}.status != 'running' AND {row}.start_ns IS NOT NULL "
        f"AND {row}.end_ns IS NOT NULL THEN {bin_sql(d)} ELSE {NO_DURATION} END"
    )


WIDTH = 1 << SUB_BITS  # fine bins per row: one row per power of two ("octave", bin >> 5)
_FINE = tuple(f"c{j}" for j in range(WIDTH))
_UPSERT = "ON CONFLICT (level, name, tenant, status, octave) DO UPDATE SET n = n + excluded.n, " + (
    ", ".join(f"{col} = {col} + excluded.{col}" for col in _FINE)
)
_COLUMNS = "level, name, tenant, status, octave, n, " + ", ".join(_FINE)


def _octave(b: str) -> str:
    return f"CASE WHEN {b} = {NO_DURATION} THEN {NO_DURATION} ELSE {b} >> {SUB_BITS} END"


def _cell(b: str, n: str, j: int) -> str:
    """`n` if bin `b` is column `j` of its row, else 0 (and 0 for no duration)."""
    return f"({b} != {NO_DURATION} AND ({b} & {WIDTH - 1}) = {j}) * ({n})"


def _spread(b: str, n: str) -> str:
    return ", ".join(_cell(b, n, j) for j in range(WIDTH))


def _apply(row: str, sign: int) -> str:
    """Add (`sign` 1) or take out (-1) the flow `row` (NEW or OLD) in every tail it is in:
    one upsert per tail."""
    return (
        f"INSERT INTO flow_tails ({_COLUMNS}) "
        f"SELECT e.level, {key_sql(row + '.name')}, {key_sql(row + '.tenant')}, {row}.status, "
        f"{_octave('d.b')}, {sign}, {_spread('d.b', str(sign))} "
        f"FROM flow_tail_edges e, (SELECT {_duration_bin(row)} AS b) d "
        f"WHERE e.edge_ns IS NULL OR {row}.start_ns >= e.edge_ns {_UPSERT};"
    )


_CHANGED = " OR ".join(
    f"OLD.{col} IS NOT NEW.{col}" for col in ("name", "tenant", "status", "start_ns", "end_ns")
)

DDL: tuple[str, ...] = (
    "CREATE TABLE flow_tail_edges (level INTEGER PRIMARY KEY, width_ns INTEGER, edge_ns INTEGER)",
    # Per tail, name, tenant and stored status: a row per power of two of the durations
    # ("octave", the bin >> 5) with its flows (n) and its 32 bins, and a row (octave
    # NO_DURATION, bins 0) for the flows without a duration. Counts read the n's; a
    # percentile reads the n's and then the bins of one octave or two.
    f"""CREATE TABLE flow_tails (
        level  INTEGER NOT NULL,
        name   TEXT NOT NULL,
        tenant TEXT NOT NULL,
        status TEXT NOT NULL,
        octave INTEGER NOT NULL,
        n      INTEGER NOT NULL,
        {", ".join(f"{col} INTEGER NOT NULL" for col in _FINE)},
        PRIMARY KEY (level, name, tenant, status, octave)
    ) WITHOUT ROWID""",
    f"CREATE TRIGGER flow_tails_insert AFTER INSERT ON flows BEGIN {_apply('NEW', 1)} END",
    "CREATE TRIGGER flow_tails_update AFTER UPDATE OF name, tenant, status, start_ns, end_ns "
    f"ON flows WHEN {_CHANGED} BEGIN {_apply('OLD', -1)} {_apply('NEW', 1)} END",
    f"CREATE TRIGGER flow_tails_delete AFTER DELETE ON flows BEGIN {_apply('OLD', -1)} END",
    # The running flows past their deadline (timed out), for the correction `stats()` makes.
    "CREATE INDEX flows_overdue ON flows (deadline_ns, start_ns, name, tenant) "
    "WHERE status = 'running' AND deadline_ns IS NOT NULL",
)


# v7 (see "Folded per transaction" above): the triggers log signed changes, `fold` applies them.
_CHANGE_COLUMNS = ("name", "tenant", "status", "start_ns", "end_ns")


def _log_change(row: str, sign: int) -> str:
    values = ", ".join(f"{row}.{col}" for col in _CHANGE_COLUMNS)
    return f"INSERT INTO flow_tail_changes (sign, {', '.join(_CHANGE_COLUMNS)}) VALUES ({sign}, {values});"


CHANGES_DDL: tuple[str, ...] = (
    "DROP TRIGGER flow_tails_insert",
    "DROP TRIGGER flow_tails_update",
    "DROP TRIGGER flow_tails_delete",
    # No key and no index: appended by the triggers, read whole and emptied by `fold`.
    "CREATE TABLE flow_tail_changes (sign INTEGER NOT NULL, name TEXT, tenant TEXT, "
    "status TEXT NOT NULL, start_ns INTEGER, end_ns INTEGER)",
    f"CREATE TRIGGER flow_tails_insert AFTER INSERT ON flows BEGIN {_log_change('NEW', 1)} END",
    "CREATE TRIGGER flow_tails_update AFTER UPDATE OF name, tenant, status, start_ns, end_ns "
    f"ON flows WHEN {_CHANGED} BEGIN {_log_change('OLD', -1)} {_log_change('NEW', 1)} END",
    f"CREATE TRIGGER flow_tails_delete AFTER DELETE ON flows BEGIN {_log_change('OLD', -1)} END",
)

# The changes per tail and exact bin (the bin computed once per change, then joined with the
# edges: a tail counts a flow that started at or after its edge, as the v5 triggers did).
_CHANGES_BY_BIN = (
    f"SELECT e.level AS level, {key_sql('d.name')} AS name, {key_sql('d.tenant')} AS tenant, "
    "d.status AS status, d.b AS b, SUM(d.sign) AS k "
    f"FROM (SELECT sign, name, tenant, status, start_ns, {_duration_bin('flow_tail_changes')} "
    "AS b FROM flow_tail_changes) d JOIN flow_tail_edges e "
    "ON e.edge_ns IS NULL OR d.start_ns >= e.edge_ns{where} GROUP BY 1, 2, 3, 4, 5 HAVING k != 0"
)


_INSERT_TAIL = (
    f"INSERT INTO flow_tails ({_COLUMNS}) VALUES ({', '.join('?' * (WIDTH + 6))}) {_UPSERT}"
)


def fold(conn: sqlite3.Connection) -> None:
    """Add the changes the triggers logged to the tails and empty the log; inside the
    caller's write transaction, just before its COMMIT.

    Grouped here in Python: the same grouping in SQL (`_CHANGES_BY_BIN`, what `read` counts)
    cost 4-5 µs a change, this about 1 (benchmarks/store.py); both count a change in every
    tail whose edge it started at or after, in the bin `bin_sql` gives (`bin_of` equals it,
    tests/store/test_tails.py), and tests/store/test_tails.py checks the folded tails
    against `stats()` computed from the flows."""
    cursor = conn.cursor()
    cursor.row_factory = None
    changes = cursor.execute(
        "SELECT sign, name, tenant, status, start_ns, end_ns FROM flow_tail_changes"
    ).fetchall()
    if not changes:
        return
    edges = cursor.execute("SELECT level, edge_ns FROM flow_tail_edges").fetchall()
    # First per change kind and exact bin, with which edges it passes (a tuple per change,
    # counted: the loop that runs per flow), then per tail row.
    counted: dict[tuple[Any, ...], int] = {}
    moving = [edge for _, edge in edges if edge is not None]
    none = tuple(False for _ in moving)
    for sign, name, tenant, status, start, end in changes:
        if type(start) is int:
            passes = tuple([start >= edge for edge in moving])
            if type(end) is int:
                b = NO_DURATION if status == "running" else bin_of(end - start)
            elif end is None:
                b = NO_DURATION
            else:
                return _fold_sql(conn)
        elif start is None and (end is None or type(end) is int):
            passes, b = none, NO_DURATION
        else:  # a hand-written value of another type: SQL's own comparisons and arithmetic
            return _fold_sql(conn)
        key = (name, tenant, status, b, passes)
        counted[key] = counted.get(key, 0) + sign
    groups: dict[tuple[Any, ...], list[int]] = {}
    low = WIDTH - 1
    for (name, tenant, status, b, passes), n in counted.items():
        if not n:
            continue
        if not (name is None or type(name) is str) or not (tenant is None or type(tenant) is str):
            return _fold_sql(conn)  # as above: keyed as SQL's `'=' || value` keys them
        octave = NO_DURATION if b == NO_DURATION else b >> SUB_BITS
        name_key = "" if name is None else "=" + name
        tenant_key = "" if tenant is None else "=" + tenant
        i = 0
        for level, edge in edges:
            if edge is not None:
                i += 1
                if not passes[i - 1]:
                    continue
            row_key = (level, name_key, tenant_key, status, octave)
            cells = groups.get(row_key)
            if cells is None:
                cells = groups[row_key] = [0] * (WIDTH + 1)
            cells[0] += n
            if b != NO_DURATION:
                cells[1 + (b & low)] += n
    cursor.executemany(
        _INSERT_TAIL, [(*key, *cells) for key, cells in groups.items() if any(cells)]
    )
    cursor.execute("DELETE FROM flow_tail_changes")


def _fold_sql(conn: sqlite3.Connection) -> None:
    """`fold` in SQL: the same grouping as `read` makes of unfolded changes."""
    fine = ", ".join(f"SUM({_cell('b', 'k', j)})" for j in range(WIDTH))
    conn.execute(
        f"INSERT INTO flow_tails ({_COLUMNS}) "
        f"SELECT level, name, tenant, status, {_octave('b')}, SUM(k), {fine} "
        f"FROM ({_CHANGES_BY_BIN.replace('{where}', '')}) WHERE true GROUP BY 1, 2, 3, 4, 5 "
        f"{_UPSERT}"
    )
    conn.execute("DELETE FROM flow_tail_changes")


def _has_changes_table(conn: sqlite3.Connection) -> bool:
    return (
        conn.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'flow_tail_changes'"
        ).fetchone()
        is not None
    )


def _add(conn: sqlite3.Connection, level: int, sign: int, where: str, params: list[Any]) -> None:
    """Add the flows matching `where` to tail `level`, counted with `sign`. Grouped by exact
    bin first: the 32 sums then run over a few rows per group, not a row per flow (the
    migration of a 1M-flow store took 218 s the other way, 20 s this way)."""
    fine = ", ".join(f"{sign} * SUM({_cell('b', 'k', j)})" for j in range(WIDTH))
    conn.execute(
        f"INSERT INTO flow_tails ({_COLUMNS}) "
        f"SELECT {int(level)}, name, tenant, status, {_octave('b')}, {sign} * SUM(k), {fine} "
        f"FROM (SELECT {key_sql('name')} AS name, {key_sql('tenant')} AS tenant, status, "
        f"{_duration_bin('flows')} AS b, COUNT(*) AS k FROM flows INDEXED BY flows_start_stats "
        f"WHERE {where} GROUP BY 1, 2, 3, 4) WHERE true GROUP BY 2, 3, 4, 5 {_UPSERT}",
        params,
    )


def install(conn: sqlite3.Connection, now_ns: int | None = None) -> None:
    """Create the tails (schema v5) and fill them from the flows already stored."""
    for statement in DDL:
        conn.execute(statement)
    rebuild(conn, now_ns)


def rebuild(conn: sqlite3.Connection, now_ns: int | None = None) -> None:
    """Refill every tail from ``flows`` (the migration; a bulk load that bypassed triggers)."""
    now = time.time_ns() if now_ns is None else now_ns
    conn.execute("DELETE FROM flow_tails")
    conn.execute("DELETE FROM flow_tail_edges")
    if _has_changes_table(conn):  # v7 and later; v5's migration rebuilds before it exists
        conn.execute("DELETE FROM flow_tail_changes")  # the rebuild counts every flow
    conn.executemany(
        "INSERT INTO flow_tail_edges (level, width_ns, edge_ns) VALUES (?, ?, ?)",
        [(level, width, None if width is None else now - width) for level, width in LEVELS],
    )
    for level, width in LEVELS:
        if width is None:
            _add(conn, level, 1, "1", [])
        else:
            _add(conn, level, 1, "start_ns >= ?", [now - width])


def advance(conn: sqlite3.Connection, now_ns: int | None = None) -> None:
    """Move each edge to now minus its width, taking out the flows it passes (one short
    ``BEGIN IMMEDIATE`` transaction; the caller holds no transaction)."""
    now = time.time_ns() if now_ns is None else now_ns
    conn.execute("BEGIN IMMEDIATE")
    try:
        # Changes a writer left unfolded belong to the tails as the edges were when logged.
        fold(conn)
        edges = conn.execute(
            "SELECT level, width_ns, edge_ns FROM flow_tail_edges WHERE width_ns IS NOT NULL"
        ).fetchall()
        for level, width, edge in edges:
            new = now - int(width)
            if edge is not None and new <= edge:
                continue
            low = edge if edge is not None else -(1 << 63)
            _add(conn, level, -1, "start_ns >= ? AND start_ns < ?", [low, new])
            conn.execute("UPDATE flow_tail_edges SET edge_ns = ? WHERE level = ?", (new, level))
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
        raise


Key = tuple[str | None, str | None]


@dataclass
class Window:
    """What `read` gives `stats()`: counts per group and stored status, and each group's
    durations as bins (read lazily: the totals per octave, then the rows a percentile needs)."""

    counts: dict[Key, dict[str, int]] = field(default_factory=dict)
    octaves: dict[Key, dict[int, int]] = field(default_factory=dict)  # octave -> flows
    extra: dict[Key, dict[int, int]] = field(default_factory=dict)  # correction: bin -> flows
    rows: dict[tuple[Key, int], list[int]] = field(default_factory=dict)  # fine bins, read
    level: int = 0
    _cumulative: dict[tuple[Key, int], list[int]] = field(default_factory=dict)

    def quantiles(
        self, conn: sqlite3.Connection, qs: tuple[float, ...]
    ) -> dict[Key, list[float | None]]:
        """Each group's `qs` quantiles in ms (`quantile`'s interpolation over the bins)."""
        wanted: dict[Key, list[tuple[int, int]]] = {}  # group -> [(rank, octave)]
        plans: dict[Key, tuple[int, list[tuple[float, int, int]]]] = {}
        for key, octaves in self.octaves.items():
            ordered = sorted((o, n) for o, n in octaves.items() if n)
            total = sum(n for _, n in ordered)
            if total <= 0:
                continue
            ranks = []
            for q in qs:
                k = (total - 1) * q
                lo = int(k)
                ranks.append((k, lo, min(lo + 1, total - 1)))
            plans[key] = (total, ranks)
            need = {r for _, lo, hi in ranks for r in (lo, hi)}
            seen = 0
            for octave, n in ordered:
                if any(seen <= r < seen + n for r in need):
                    wanted.setdefault(key, []).append((seen, octave))
                seen += n
        self._fetch(conn, [(key, o) for key, items in wanted.items() for _, o in items])
        out: dict[Key, list[float | None]] = {}
        for key, (_, ranks) in plans.items():
            starts = [(o, seen) for seen, o in wanted.get(key, [])]
            values: list[float | None] = []
            for k, lo, hi in ranks:
                v_lo, v_hi = self._value(key, starts, lo), self._value(key, starts, hi)
                values.append((v_lo + (v_hi - v_lo) * (k - lo)) / 1e6)
            out[key] = values
        return out

    def _value(self, key: Key, starts: list[tuple[int, int]], rank: int) -> float:
        """The midpoint of the bin holding the `rank`-th duration (from 0) of group `key`;
        `starts`: (octave, durations in the octaves below it) of the octaves read."""
        for octave, seen in starts:
            cumulative = self._cumulative.get((key, octave))
            if cumulative is None:
                row = self.rows.get((key, octave), [0])
                cumulative = self._cumulative[(key, octave)] = list(itertools.accumulate(row))
            if seen <= rank < seen + cumulative[-1]:
                j = bisect.bisect_right(cumulative, rank - seen)
                return bin_value((octave << SUB_BITS) + j)
        raise AssertionError(f"rank {rank} of {key} is outside the bins read")

    def _fetch(self, conn: sqlite3.Connection, wanted: list[tuple[Key, int]]) -> None:
        cursor = conn.cursor()
        cursor.row_factory = None
        cols = ", ".join(_FINE)
        for i in range(0, len(wanted), 500):
            chunk = wanted[i : i + 500]
            marks = ", ".join("(?, ?, ?)" for _ in chunk)
            params: list[Any] = [self.level]
            for (name, tenant), octave in chunk:
                params += [_key(name), _key(tenant), octave]
            for row in cursor.execute(
                f"SELECT name, tenant, octave, {cols} FROM flow_tails WHERE level = ? "
                f"AND (name, tenant, octave) IN (VALUES {marks})",
                params,
            ):  # a row per stored status: summed
                slot = ((unkey(row[0]), unkey(row[1])), int(row[2]))
                found = self.rows.get(slot)
                if found is None:
                    self.rows[slot] = list(row[3:])
                else:
                    for j, n in enumerate(row[3:]):
                        found[j] += n
        for key, bins in self.extra.items():  # the correction, bin by bin
            for b, n in bins.items():
                octave = b >> SUB_BITS
                row = self.rows.get((key, octave))
                if row is None:
                    row = self.rows[(key, octave)] = [0] * WIDTH
                row[b & (WIDTH - 1)] += n


def _key(value: str | None) -> str:
    return "" if value is None else "=" + value


def read(
    conn: sqlite3.Connection, since_ns: int | None, name: str | None, tenant: str | None
) -> Window:
    """The window ``start_ns >= since_ns`` (all flows for None): the nearest tail, corrected
    by the flows between its edge and `since_ns` (read from ``flows``)."""
    keys = [(col, _key(v)) for col, v in (("name", name), ("tenant", tenant)) if v is not None]
    edges = conn.execute("SELECT level, edge_ns FROM flow_tail_edges").fetchall()
    if since_ns is None:
        level, edge = next((lv, e) for lv, e in edges if e is None)
    else:
        (oldest,) = conn.execute("SELECT MIN(start_ns) FROM flows").fetchone()

        def distance(item: tuple[int, int | None]) -> int:
            e = item[1]
            if e is None:  # all flows: the correction is every flow before since_ns
                return since_ns - oldest if oldest is not None and oldest < since_ns else 0
            return abs(since_ns - e)

        level, edge = min(edges, key=distance)
    window = Window(level=level)
    cursor = conn.cursor()
    cursor.row_factory = None
    filters = "".join(f" AND {col} = ?" for col, _ in keys)
    values = [v for _, v in keys]
    for name_key, tenant_key, status, octave, n in cursor.execute(
        "SELECT name, tenant, status, octave, n FROM flow_tails WHERE level = ? AND n != 0"
        + filters,
        [level, *values],
    ):
        key = (unkey(name_key), unkey(tenant_key))
        group = window.counts.setdefault(key, {})
        group[status] = group.get(status, 0) + n
        if octave != NO_DURATION:
            octaves = window.octaves.setdefault(key, {})
            octaves[octave] = octaves.get(octave, 0) + n
    # Changes a writer logged and did not fold (one that is not the store writer): counted as
    # the fold would count them, into the tail read. Empty after every store writer's commit.
    where = " WHERE e.level = ?" + "".join(f" AND {key_sql('d.' + col)} = ?" for col, _ in keys)
    _correct(window, cursor.execute(_CHANGES_BY_BIN.replace("{where}", where), [level, *values]))
    if since_ns is None:
        return window
    if edge is None:
        low, high, sign = -(1 << 63), since_ns, -1
    elif edge <= since_ns:
        low, high, sign = edge, since_ns, -1
    else:
        low, high, sign = since_ns, edge, 1
    if low >= high:
        return window
    raw = "".join(f" AND {col} = ?" for col, _ in keys)
    params = [low, high, *(v[1:] for v in values)]
    rows = cursor.execute(
        f"SELECT {key_sql('name')}, {key_sql('tenant')}, status, {_duration_bin('flows')}, "
        f"{sign} * COUNT(*) FROM flows INDEXED BY flows_start_stats "
        f"WHERE start_ns >= ? AND start_ns < ?{raw} GROUP BY 1, 2, 3, 4",
        params,
    )
    _correct(window, rows)
    return window


def _correct(window: Window, rows: Iterable[tuple[Any, ...]]) -> None:
    """Add (name key, tenant key, status, exact bin, signed flows) rows to `window`, bin by
    bin (they are not in the tails' rows)."""
    for row in rows:
        name_key, tenant_key, status, b, n = row[-5:]
        key = (unkey(name_key), unkey(tenant_key))
        group = window.counts.setdefault(key, {})
        group[status] = group.get(status, 0) + n
        if b != NO_DURATION:
            octaves = window.octaves.setdefault(key, {})
            octaves[b >> SUB_BITS] = octaves.get(b >> SUB_BITS, 0) + n
            extra = window.extra.setdefault(key, {})
            extra[b] = extra.get(b, 0) + n


def quantile(bins: list[tuple[int, int]], q: float) -> float | None:
    """The `q` quantile in ms of the durations counted in `bins` ((bin, count) sorted by
    bin): `aggregate.percentile`'s interpolation with each value replaced by its bin's
    midpoint, so within ``RELATIVE_ERROR`` of it."""
    total = sum(n for _, n in bins)
    if total <= 0:
        return None
    k = (total - 1) * q
    lo = int(k)
    hi = min(lo + 1, total - 1)
    v_lo = v_hi = None
    seen = 0
    for b, n in bins:
        if n <= 0:
            continue
        seen += n
        if v_lo is None and seen > lo:
            v_lo = bin_value(b)
        if seen > hi:
            v_hi = bin_value(b)
            break
    assert v_lo is not None and v_hi is not None
    return (v_lo + (v_hi - v_lo) * (k - lo)) / 1e6
