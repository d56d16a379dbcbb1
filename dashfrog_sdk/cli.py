"""The ``dashfrog`` command: query and picture the flows in the local flow store.

    dashfrog flows [--tenant T] [--name N] [--status S] [--label k=v] [--since 1h] [--json]
    dashfrog flow ID [--mermaid | --flowchart | --markdown | --json] [--logs]
    dashfrog durations ID
    dashfrog tail [--once] [--timeout SECONDS]
    dashfrog stats [--since 1d] [--json]
    dashfrog ui [--host 127.0.0.1] [--port 8080]     (the browser viewer; `dashfrog ui link`)

    dashfrog clickhouse init --url http://localhost:8123 --database otel

Every command takes ``--store PATH`` or ``--store URL`` (``clickhouse://host:8123/db``,
``chdb:///dir``); the default is ``$DASHFROG_READ_STORE``, then ``$DASHFROG_STORE``, then
``.dashfrog/flows.db``.
Errors (no store, corrupt store, unknown flow id, bad option value) print one line on stderr and
exit with status 1.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import os
import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, TypeVar

import click

from dashfrog_sdk import conventions as c
from dashfrog_sdk._version import __version__
from dashfrog_sdk.config import DEFAULT_STORE, READ_STORE_ENV
from dashfrog_sdk.ui.command import ui as ui_command

# Start-up: only click is imported up front. rich, the store (sqlite3), the renderers and
# anything that loads OpenTelemetry are imported by the commands that use them, so
# `dashfrog --version` and `--help` load none of them (tests/store/test_cli_startup.py;
# figures in README, Performance).
if importlib.util.find_spec("rich") is None:  # found without importing it: every command (even
    # one that would not print with rich) says how to install the extra (dashfrog_sdk._entry)
    raise ModuleNotFoundError("No module named 'rich'", name="rich")
if TYPE_CHECKING:
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    from dashfrog_sdk.store import Flow
    from dashfrog_sdk.store.backend import FlowBackend

F = TypeVar("F", bound=Callable[..., Any])
T = TypeVar("T")
STATUSES = (c.RUNNING, c.COMPLETED, c.FAILED, c.CANCELLED, c.TIMED_OUT)


class CliError(Exception):
    """A one-line error for the user."""


def _console() -> Console:
    # User strings are data: no rich markup ("[link=...]"), no emoji codes (":x:"), no
    # highlighting; every one of them is also passed through _fmt.visible (control characters).
    # Piped output (scripts, tests) gets a wide, colourless console rather than 80 columns,
    # unless COLUMNS says otherwise.
    from rich.console import Console

    plain = {"highlight": False, "markup": False, "emoji": False}
    console = Console(soft_wrap=False, **plain)  # type: ignore[arg-type]
    if not console.is_terminal:
        width = int(os.environ["COLUMNS"]) if os.environ.get("COLUMNS", "").isdigit() else 160
        console = Console(width=width, no_color=True, **plain)  # type: ignore[arg-type]
    return console


def _t(value: object) -> Text:
    """A table cell or line part from a user string: shown literally, controls made visible."""
    from rich.text import Text

    from dashfrog_sdk.render import _fmt

    return Text(_fmt.visible(value))


class _Group(click.Group):
    """Turns every failure into one line on stderr and exit status 1: never a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.exceptions.Exit, click.Abort, click.ClickException):
            raise
        except KeyboardInterrupt:
            raise click.exceptions.Exit(130) from None
        except (CliError, ValueError) as exc:
            _fail(str(exc))
        except Exception as exc:
            from dashfrog_sdk.store.errors import StoreError  # raised only once the store loaded

            _fail(str(exc) if isinstance(exc, StoreError) else f"{type(exc).__name__}: {exc}")


def _fail(message: str) -> None:
    from dashfrog_sdk.render import _fmt

    click.echo(f"dashfrog: error: {_fmt.visible(message)}", err=True)
    raise click.exceptions.Exit(1)


def _store_option(func: F) -> F:
    return click.option(
        "--store",
        "store_path",
        # The read location first; DASHFROG_STORE (where the SDK writes) stays the fallback.
        envvar=[READ_STORE_ENV, "DASHFROG_STORE"],
        default=DEFAULT_STORE,
        show_default=True,
        metavar="PATH|URL",
        help=(
            "The flow store: a SQLite file, clickhouse://host:8123/db or chdb:///dir "
            f"(env {READ_STORE_ENV}, then DASHFROG_STORE)."
        ),
    )(func)


@contextmanager
def _open(path: str) -> Iterator[FlowBackend]:
    if path.strip().lower() in ("off", "none", "0", "false"):
        raise CliError(
            "the flow store is disabled (DASHFROG_STORE=off); pass --store PATH or URL, "
            f"or set {READ_STORE_ENV}"
        )
    from dashfrog_sdk.store import FlowStore

    store: FlowBackend = FlowStore(path)
    with store:
        yield store


def _seconds(option: str, value: str | None) -> float | None:
    from dashfrog_sdk.timeutil import parse_duration

    return _parsed(option, value, parse_duration)


def _instant(option: str, value: str | None) -> Any:
    from dashfrog_sdk.timeutil import parse_instant

    return _parsed(option, value, parse_instant)


def _parsed(option: str, value: str | None, parse: Callable[[str], T]) -> T | None:
    if value is None:
        return None
    try:
        return parse(value)
    except ValueError as exc:
        raise CliError(f"{option}: {exc}") from None


def _jsonable(obj: Any) -> Any:
    from dashfrog_sdk.store.model import times

    row = dataclasses.asdict(obj)
    for key, moment in times(obj).items():
        row[key] = moment.isoformat() if moment else None
    return row


# Characters JSON may leave raw that a terminal acts on: DEL, the C1 controls (8-bit CSI, OSC),
# the bidi controls. They can only occur inside JSON strings, where \uXXXX means the same.
_JSON_UNSAFE = re.compile("[\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def _dump(value: Any) -> None:
    text = json.dumps(value, indent=2, default=str, ensure_ascii=False)
    click.echo(_JSON_UNSAFE.sub(lambda m: f"\\u{ord(m.group(0)):04x}", text))


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
# The version from the package, not its installed metadata: importlib.metadata scans sys.path.
@click.version_option(__version__, prog_name="dashfrog")
def main() -> None:
    """Query and picture the flows in the local dashfrog flow store."""


# -- flows -------------------------------------------------------------------------------------


# Columns of `dashfrog flows` by how much they matter: id, name, tenant, status and start time
# always show; the others only when the console is wide enough for them (rich would otherwise
# squeeze the wrappable NAME and TENANT down to nothing to keep the no-wrap id and times whole).
# Below 100 columns the id is its first 12 characters (`dashfrog flow` takes any unique
# prefix) and the start time is the time of day.
_WIDE_COLUMNS = (("DURATION", 100), ("STEP", 120), ("LABELS", 140))
_NARROW = 100
_SHORT_ID = 12


def _flows_table(flows: list[Flow], width: int) -> Table:
    from rich.table import Table
    from rich.text import Text

    from dashfrog_sdk.render import _fmt
    from dashfrog_sdk.render.timeline import status_label

    table = Table(box=None, header_style="bold", pad_edge=False)
    table.add_column("FLOW ID", no_wrap=True)
    table.add_column("NAME", min_width=10, overflow="fold")
    table.add_column("TENANT", min_width=10, overflow="fold")
    table.add_column("STATUS", no_wrap=True)
    wide = width >= _NARROW
    table.add_column("STARTED", no_wrap=True)
    extra = [name for name, needs in _WIDE_COLUMNS if width >= needs]
    for column in extra:
        table.add_column(column, overflow="fold")
    for f in flows:
        step = f.current_step or ""
        if step and f.current_progress is not None:
            step = f.current_progress.text(step)  # "import_rows 40% (400/1000)"
        if f.status == c.FAILED and f.error_type:
            step = f.error_type
        cells = {
            "DURATION": Text(_fmt.duration(f.duration_ms)),
            "STEP": _t(step),
            "LABELS": _t(_fmt.kv(f.labels)),
        }
        table.add_row(
            _t(f.id if wide else f.id[:_SHORT_ID]),
            _t(f.name or "?"),
            _t(f.tenant or "?"),
            status_label(f.status),
            Text(_fmt.clock(f.start_ns, date=wide)),
            *(cells[column] for column in extra),
        )
    return table


@main.command()
@_store_option
@click.option("--tenant", help="Only this tenant.")
@click.option("--name", help="Only flows with this name.")
@click.option("--status", type=click.Choice(STATUSES), multiple=True, help="Repeatable.")
@click.option("--label", "labels", multiple=True, metavar="KEY=VALUE", help="Repeatable.")
@click.option("--since", metavar="WHEN", help="Started after: 1h, 2d, or an ISO date/time.")
@click.option("--until", metavar="WHEN", help="Started before: 10m, or an ISO date/time.")
@click.option("--running-longer-than", metavar="DURATION", help="Still running after 5m, 1h...")
@click.option("--limit", type=click.IntRange(min=1), default=50, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="JSON instead of a table.")
def flows(
    store_path: str,
    tenant: str | None,
    name: str | None,
    status: tuple[str, ...],
    labels: tuple[str, ...],
    since: str | None,
    until: str | None,
    running_longer_than: str | None,
    limit: int,
    as_json: bool,
) -> None:
    """List flows, newest first."""
    label_filter: dict[str, str] = {}
    for item in labels:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise CliError(f"--label expects KEY=VALUE, got {item!r}")
        label_filter[key] = value
    longer = _seconds("--running-longer-than", running_longer_than)
    filters: dict[str, Any] = {
        "tenant": tenant,
        "name": name,
        "status": status or None,
        "labels": label_filter,
        "since": _instant("--since", since),
        "until": _instant("--until", until),
        "running_longer_than": longer,
    }
    with _open(store_path) as store:
        more = store.flows(**filters, limit=limit + 1)  # one more: were rows cut?
        total = store.count(**filters) if len(more) > limit else len(more)
    found = list(more)[:limit]
    if as_json:
        _dump([_jsonable(f) for f in found])
    elif not found:
        click.echo("no flows match")
    else:
        console = _console()
        console.print(_flows_table(found, console.width))
    if total > len(found):  # on stderr: the table or the JSON stays as it was
        click.echo(f"{len(found)} of {total} shown (--limit)", err=True)


# -- one flow ----------------------------------------------------------------------------------


@main.command()
@_store_option
@click.argument("flow_id")
@click.option("--mermaid", "fmt", flag_value="mermaid", help="Mermaid sequenceDiagram.")
@click.option("--flowchart", "fmt", flag_value="flowchart", help="Mermaid flowchart by status.")
@click.option("--markdown", "fmt", flag_value="markdown", help="A Markdown dataflow document.")
@click.option("--json", "fmt", flag_value="json", help="Everything, as JSON.")
@click.option("--logs", is_flag=True, help="Show the flow's captured log records.")
def flow(store_path: str, flow_id: str, fmt: str | None, logs: bool) -> None:
    """Show one flow (its id or a unique prefix): a timeline tree by default."""
    from dashfrog_sdk.render.markdown import markdown
    from dashfrog_sdk.render.mermaid import flowchart, sequence_diagram
    from dashfrog_sdk.render.timeline import timeline, timeline_with_logs

    with _open(store_path) as store:
        detail = store.flow(flow_id)
    if fmt == "mermaid":
        click.echo(sequence_diagram(detail), nl=False)
    elif fmt == "flowchart":
        click.echo(flowchart(detail), nl=False)
    elif fmt == "markdown":
        click.echo(markdown(detail, logs=True), nl=False)
    elif fmt == "json":
        _dump(_jsonable(detail))
    elif logs:
        _console().print(timeline_with_logs(detail))
    else:
        _console().print(timeline(detail))


@main.command()
@_store_option
@click.argument("flow_id")
@click.option("--json", "as_json", is_flag=True)
def durations(store_path: str, flow_id: str, as_json: bool) -> None:
    """Where one flow's time went: the flow and each step."""
    with _open(store_path) as store:
        result = store.durations(flow_id)
    if as_json:
        _dump(dataclasses.asdict(result))
        return
    from rich.table import Table

    from dashfrog_sdk.render import _fmt

    table = Table(box=None, header_style="bold", pad_edge=False)
    for column in ("STEP", "SERVICE", "STATUS", "DURATION", "SHARE"):
        table.add_column(column)
    for s in result.steps:
        share = f"{100 * s.share:.1f} %" if s.share is not None else "-"
        table.add_row(
            _t(s.name), _t(s.service or "-"), _t(s.status), _fmt.duration(s.duration_ms), share
        )
    table.add_row("flow total", "", "", _fmt.duration(result.duration_ms), "100 %")
    _console().print(table)


# -- tail --------------------------------------------------------------------------------------


def _tail_line(f: Flow, what: str, at_ns: int | None, detail: str = "") -> Text:
    """One change of one flow, stamped with when it happened (not when tail printed it)."""
    from rich.text import Text

    from dashfrog_sdk.render import _fmt

    status = c.RUNNING if what in ("started", "step") else f.status
    style = _fmt.STYLES.get(status, "")
    mark = "→" if what == "step" else _fmt.symbol(status)
    when = _fmt.clock(at_ns, date=False) if at_ns is not None else "--:--:--"
    line = Text(when + "  ", style="grey50")
    line.append(f"{mark} {what:<10}", style=style)
    line.append(f" {_fmt.visible(f.name or '?')}  tenant={_fmt.visible(f.tenant)}  ")
    line.append(_fmt.visible(f.id))
    if detail:
        line.append("  " + _fmt.visible(detail), style=style)
    return line


def _step_started_ns(store: FlowBackend, f: Flow) -> int | None:
    """When the running step `f.current_step` started (the latest start of that name)."""
    from dashfrog_sdk.store.errors import StoreError

    try:
        steps = store.flow(f.id).steps
    except StoreError:
        return None
    starts = [s.start_ns for s in steps if s.name == f.current_step and s.start_ns is not None]
    return max(starts, default=None)


@main.command()
@_store_option
@click.option("--since", default="5m", show_default=True, help="Show changes this far back first.")
@click.option("--interval", type=float, default=1.0, show_default=True, help="Seconds per poll.")
@click.option("--once", is_flag=True, help="Poll once and exit.")
@click.option("--timeout", type=float, help="Exit after this many seconds.")
@click.option("--tenant", help="Only this tenant.")
@click.option("--name", help="Only flows with this name.")
def tail(
    store_path: str,
    since: str,
    interval: float,
    once: bool,
    timeout: float | None,
    tenant: str | None,
    name: str | None,
) -> None:
    """Follow flows as they start, change step and end."""
    from dashfrog_sdk.status import effective_status

    console = _console()
    back = _seconds("--since", since) or 0.0
    deadline = None if timeout is None else time.monotonic() + timeout
    cursor = floor = time.time_ns() - int(back * 1e9)
    seen: dict[str, tuple[str, str | None, str | None]] = {}
    open_flows: dict[str, Flow] = {}
    with _open(store_path) as store:
        if not once:
            click.echo(f"dashfrog: following {store_path} (Ctrl-C to stop)", err=True)
        while True:
            # Re-read the last 2 s first: a backend whose change stamps are not commit-ordered
            # (another process may commit a row stamped earlier) loses nothing. Then page
            # forward from each page's cursor: the SQLite writers stamp every flow of a write
            # above every change already committed, so pages never repeat and never stall
            # (main re-read the same first 1,000 rows forever once more changed in 2 s).
            start = max(cursor - 2_000_000_000, floor)
            while True:
                changed, new_cursor = store.changes(start)
                for f in changed:
                    if (tenant is None or f.tenant == tenant) and (name is None or f.name == name):
                        _report(console, store, f, seen, open_flows)
                cursor = max(cursor, new_cursor)
                if len(changed) < 1000 or new_cursor <= start:
                    break
                start = new_cursor
            now = time.time_ns()
            for f in list(open_flows.values()):
                if f.timeout_s is not None and f.start_ns is not None:
                    status = effective_status(f.status, f.start_ns + int(f.timeout_s * 1e9), now)
                    if status != f.status:
                        f.status = status
                        _report(console, store, f, seen, open_flows)
            if once or (deadline is not None and time.monotonic() >= deadline):
                return
            time.sleep(interval if deadline is None else min(interval, deadline - time.monotonic()))


def _report(
    console: Console,
    store: FlowBackend,
    f: Flow,
    seen: dict[str, tuple[str, str | None, str | None]],
    open_flows: dict[str, Flow],
) -> None:
    from dashfrog_sdk.render import _fmt

    before = seen.get(f.id)
    progress = f.current_progress
    shown = progress.text(f.current_step) if progress is not None and f.current_step else None
    state = (f.status, f.current_step, shown)
    if before == state or (before is not None and before[0] not in (c.RUNNING,)):
        return  # nothing new, or already reported as ended
    seen[f.id] = state
    if f.status == c.RUNNING:
        open_flows[f.id] = f
        if before is None:
            console.print(_tail_line(f, "started", f.start_ns, _fmt.kv(f.labels)))
        if f.current_step and (before is None or before[1] != f.current_step):
            at = _step_started_ns(store, f)
            console.print(_tail_line(f, "step", at, shown or f.current_step))
        elif shown and before is not None and before[2] != shown and progress is not None:
            console.print(_tail_line(f, "step", progress.ts_ns, shown))  # same step, further on
        return
    open_flows.pop(f.id, None)
    if before is None and f.start_ns is not None and f.end_ns is not None:
        console.print(_tail_line(f, "started", f.start_ns, _fmt.kv(f.labels)))
    extra = _fmt.duration(f.duration_ms)
    at_ns = f.end_ns
    if f.status == c.TIMED_OUT:
        extra = f"at step {f.current_step}" if f.current_step else "no end before its timeout"
        if f.start_ns is not None and f.timeout_s is not None:
            at_ns = f.start_ns + int(f.timeout_s * 1e9)  # when its deadline passed
    error = _fmt.error_text(f.error_type, f.error_message)
    console.print(_tail_line(f, f.status, at_ns, f"{extra}  {error}".strip()))


# -- stats -------------------------------------------------------------------------------------


@main.command()
@_store_option
@click.option("--since", metavar="WHEN", help="Only flows started after: 1h, 7d, an ISO date.")
@click.option("--tenant", help="Only this tenant.")
@click.option("--name", help="Only flows with this name.")
@click.option("--json", "as_json", is_flag=True)
def stats(
    store_path: str, since: str | None, tenant: str | None, name: str | None, as_json: bool
) -> None:
    """Per flow name and tenant: count, failure rate, p50/p95 duration."""
    with _open(store_path) as store:
        rows = store.stats(since=_instant("--since", since), tenant=tenant, name=name)
    if as_json:
        _dump([dataclasses.asdict(r) for r in rows])
        return
    if not rows:
        click.echo("no flows")
        return
    from rich.table import Table

    from dashfrog_sdk.render import _fmt

    table = Table(box=None, header_style="bold", pad_edge=False)
    for column in ("NAME", "TENANT", "COUNT", "RUNNING", "FAILED", "FAILURE RATE", "P50", "P95"):
        table.add_column(column, justify="left" if column in ("NAME", "TENANT") else "right")
    for r in rows:
        table.add_row(
            _t(r.name or "?"),
            _t(r.tenant or "?"),
            str(r.count),
            str(r.running),
            str(r.failed + r.timed_out),
            f"{100 * r.failure_rate:.1f} %",
            _fmt.duration(r.p50_ms),
            _fmt.duration(r.p95_ms),
        )
    _console().print(table)


# -- clickhouse ----------------------------------------------------------------------------------


@main.group()
def clickhouse() -> None:
    """The flow rollup in ClickHouse (fed by the collector's clickhouse exporter)."""


@clickhouse.command("init")
@click.option(
    "--url",
    required=True,
    metavar="URL",
    help="http(s)://host:8123, clickhouse://host:8123/db or chdb:///dir.",
)
@click.option("--database", help="The exporter's database (default: the URL's, else default).")
@click.option(
    "--create-otel-tables/--no-create-otel-tables",
    default=True,
    show_default=True,
    help="Create otel_traces / otel_logs as the exporter does, when they do not exist yet.",
)
def clickhouse_init(url: str, database: str | None, create_otel_tables: bool) -> None:
    """Create or upgrade the flow rollup tables and views (idempotent)."""
    from dashfrog_sdk.clickhouse import ClickHouseError, init, parse_url

    target = parse_url(url, database)
    try:
        result = init(target, create_otel_tables=create_otel_tables)
    except ClickHouseError as exc:
        raise CliError(str(exc)) from None
    if result.created_otel_tables:
        click.echo(f"created {target.database}.otel_traces and {target.database}.otel_logs")
    for name in result.applied:
        click.echo(f"applied {name}")
    state = "up to date" if not result.applied else "ready"
    click.echo(f"flow rollup {state} in {target.describe()} (version {result.version})")


# `dashfrog ui` (and `dashfrog ui link`): the browser viewer, in its own package.
main.add_command(ui_command)


if __name__ == "__main__":  # python -m dashfrog_sdk.cli
    main()
