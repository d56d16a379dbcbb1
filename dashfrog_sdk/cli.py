"""The ``dashfrog`` command: query and picture the flows in the local flow store.

    dashfrog flows [--tenant T] [--name N] [--status S] [--label k=v] [--since 1h] [--json]
    dashfrog flow ID [--mermaid | --flowchart | --markdown | --json] [--logs]
    dashfrog durations ID
    dashfrog tail [--once] [--timeout SECONDS]
    dashfrog stats [--since 1d] [--json]
    dashfrog ui [--host 127.0.0.1] [--port 8080]     (the browser viewer; `dashfrog ui link`)

Every command takes ``--store PATH`` (default: ``$DASHFROG_STORE`` or ``.dashfrog/flows.db``).
Errors (no store, corrupt store, unknown flow id, bad option value) print one line on stderr and
exit with status 1.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import click
from rich.console import Console
from rich.table import Table
from rich.text import Text

from dashfrog_sdk import conventions as c
from dashfrog_sdk.render import _fmt
from dashfrog_sdk.render.markdown import markdown
from dashfrog_sdk.render.mermaid import flowchart, sequence_diagram
from dashfrog_sdk.render.timeline import status_label, timeline, timeline_with_logs
from dashfrog_sdk.status import effective_status
from dashfrog_sdk.store import DEFAULT_PATH, Flow, FlowStore, StoreError
from dashfrog_sdk.store.model import times
from dashfrog_sdk.timeutil import parse_duration, parse_instant
from dashfrog_sdk.ui.command import ui as ui_command

F = TypeVar("F", bound=Callable[..., Any])
T = TypeVar("T")
STATUSES = (c.RUNNING, c.COMPLETED, c.FAILED, c.CANCELLED, c.TIMED_OUT)


class CliError(Exception):
    """A one-line error for the user."""


def _console() -> Console:
    # Piped output (scripts, tests) gets a wide, colourless console rather than 80 columns.
    console = Console(highlight=False, soft_wrap=False)
    if not console.is_terminal:
        console = Console(highlight=False, width=160, no_color=True)
    return console


class _Group(click.Group):
    """Turns every failure into one line on stderr and exit status 1: never a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.exceptions.Exit, click.Abort, click.ClickException):
            raise
        except KeyboardInterrupt:
            raise click.exceptions.Exit(130) from None
        except (CliError, StoreError, ValueError) as exc:
            _fail(str(exc))
        except Exception as exc:
            _fail(f"{type(exc).__name__}: {exc}")


def _fail(message: str) -> None:
    click.echo(f"dashfrog: error: {message}", err=True)
    raise click.exceptions.Exit(1)


def _store_option(func: F) -> F:
    return click.option(
        "--store",
        "store_path",
        envvar="DASHFROG_STORE",
        default=DEFAULT_PATH,
        show_default=True,
        metavar="PATH",
        help="The flow store file (env DASHFROG_STORE).",
    )(func)


@contextmanager
def _open(path: str) -> Iterator[FlowStore]:
    if path.strip().lower() in ("off", "none", "0", "false"):
        raise CliError("the flow store is disabled (DASHFROG_STORE=off); pass --store PATH")
    with FlowStore(path) as store:
        yield store


def _seconds(option: str, value: str | None) -> float | None:
    return _parsed(option, value, parse_duration)


def _instant(option: str, value: str | None) -> Any:
    return _parsed(option, value, parse_instant)


def _parsed(option: str, value: str | None, parse: Callable[[str], T]) -> T | None:
    if value is None:
        return None
    try:
        return parse(value)
    except ValueError as exc:
        raise CliError(f"{option}: {exc}") from None


def _jsonable(obj: Any) -> Any:
    row = dataclasses.asdict(obj)
    for key, moment in times(obj).items():
        row[key] = moment.isoformat() if moment else None
    return row


def _dump(value: Any) -> None:
    click.echo(json.dumps(value, indent=2, default=str, ensure_ascii=False))


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="dashfrog-sdk", prog_name="dashfrog")
def main() -> None:
    """Query and picture the flows in the local dashfrog flow store."""


# -- flows -------------------------------------------------------------------------------------


def _flows_table(flows: list[Flow]) -> Table:
    table = Table(box=None, header_style="bold", pad_edge=False)
    for column in ("FLOW ID", "NAME", "TENANT", "STATUS", "STARTED", "DURATION", "STEP", "LABELS"):
        table.add_column(column, no_wrap=column in ("FLOW ID", "STARTED", "STATUS"))
    for f in flows:
        step = f.current_step or ""
        if f.status == c.FAILED and f.error_type:
            step = f.error_type
        table.add_row(
            f.id,
            f.name or "?",
            f.tenant or "?",
            status_label(f.status),
            _fmt.clock(f.start_ns),
            _fmt.duration(f.duration_ms),
            step,
            _fmt.kv(f.labels),
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
    with _open(store_path) as store:
        found = store.flows(
            tenant=tenant,
            name=name,
            status=status or None,
            labels=label_filter,
            since=_instant("--since", since),
            until=_instant("--until", until),
            running_longer_than=longer,
            limit=limit,
        )
    if as_json:
        _dump([_jsonable(f) for f in found])
    elif not found:
        click.echo("no flows match")
    else:
        _console().print(_flows_table(found))


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
    table = Table(box=None, header_style="bold", pad_edge=False)
    for column in ("STEP", "SERVICE", "STATUS", "DURATION", "SHARE"):
        table.add_column(column)
    for s in result.steps:
        share = f"{100 * s.share:.1f} %" if s.share is not None else "-"
        table.add_row(s.name, s.service or "-", s.status, _fmt.duration(s.duration_ms), share)
    table.add_row("flow total", "", "", _fmt.duration(result.duration_ms), "100 %")
    _console().print(table)


# -- tail --------------------------------------------------------------------------------------


def _tail_line(f: Flow, what: str, detail: str = "") -> Text:
    status = c.RUNNING if what in ("started", "step") else f.status
    style = _fmt.STYLES.get(status, "")
    mark = "→" if what == "step" else _fmt.symbol(status)
    line = Text(time.strftime("%H:%M:%S") + "  ", style="grey50")
    line.append(f"{mark} {what:<10}", style=style)
    line.append(f" {f.name or '?'}  tenant={f.tenant}  {f.id}")
    if detail:
        line.append("  " + detail, style=style)
    return line


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
    console = _console()
    back = _seconds("--since", since) or 0.0
    deadline = None if timeout is None else time.monotonic() + timeout
    cursor = floor = time.time_ns() - int(back * 1e9)
    seen: dict[str, tuple[str, str | None]] = {}
    open_flows: dict[str, Flow] = {}
    with _open(store_path) as store:
        if not once:
            click.echo(f"dashfrog: following {store_path} (Ctrl-C to stop)", err=True)
        while True:
            while True:  # drain: several pages when much happened since the last poll
                # Re-read the last 2 s: another process may commit a row stamped earlier.
                changed, new_cursor = store.changes(max(cursor - 2_000_000_000, floor))
                fresh = [f for f in changed if (tenant is None or f.tenant == tenant)]
                for f in fresh:
                    if name is None or f.name == name:
                        _report(console, f, seen, open_flows)
                if len(changed) < 1000 or new_cursor <= cursor:
                    cursor = max(cursor, new_cursor)
                    break
                cursor = new_cursor
            now = time.time_ns()
            for f in list(open_flows.values()):
                if f.timeout_s is not None and f.start_ns is not None:
                    status = effective_status(f.status, f.start_ns + int(f.timeout_s * 1e9), now)
                    if status != f.status:
                        f.status = status
                        _report(console, f, seen, open_flows)
            if once or (deadline is not None and time.monotonic() >= deadline):
                return
            time.sleep(interval if deadline is None else min(interval, deadline - time.monotonic()))


def _report(
    console: Console,
    f: Flow,
    seen: dict[str, tuple[str, str | None]],
    open_flows: dict[str, Flow],
) -> None:
    before = seen.get(f.id)
    state = (f.status, f.current_step)
    if before == state or (before is not None and before[0] not in (c.RUNNING,)):
        return  # nothing new, or already reported as ended
    seen[f.id] = state
    if f.status == c.RUNNING:
        open_flows[f.id] = f
        if before is None:
            console.print(_tail_line(f, "started", _fmt.kv(f.labels)))
        if f.current_step and (before is None or before[1] != f.current_step):
            console.print(_tail_line(f, "step", f.current_step))
        return
    open_flows.pop(f.id, None)
    if before is None and f.start_ns is not None and f.end_ns is not None:
        console.print(_tail_line(f, "started", _fmt.kv(f.labels)))
    extra = _fmt.duration(f.duration_ms)
    if f.status == c.TIMED_OUT:
        extra = f"at step {f.current_step}" if f.current_step else "no end before its timeout"
    error = _fmt.error_text(f.error_type, f.error_message)
    console.print(_tail_line(f, f.status, f"{extra}  {error}".strip()))


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
    table = Table(box=None, header_style="bold", pad_edge=False)
    for column in ("NAME", "TENANT", "COUNT", "RUNNING", "FAILED", "FAILURE RATE", "P50", "P95"):
        table.add_column(column, justify="left" if column in ("NAME", "TENANT") else "right")
    for r in rows:
        table.add_row(
            r.name or "?",
            r.tenant or "?",
            str(r.count),
            str(r.running),
            str(r.failed + r.timed_out),
            f"{100 * r.failure_rate:.1f} %",
            _fmt.duration(r.p50_ms),
            _fmt.duration(r.p95_ms),
        )
    _console().print(table)


# `dashfrog ui` (and `dashfrog ui link`): the browser viewer, in its own package.
main.add_command(ui_command)


if __name__ == "__main__":  # python -m dashfrog_sdk.cli
    main()
