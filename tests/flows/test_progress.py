"""`s.progress()` and `s.artifact()` on a step: what they record, when, and what they refuse."""

from __future__ import annotations

import io
import json
import math
from typing import Any

import pytest
from opentelemetry import baggage, propagate

from dashfrog_sdk import conventions as c
from dashfrog_sdk import diagnostics, flow, progress, step
from dashfrog_sdk import step as step_module
from dashfrog_sdk.lifecycle import bus
from dashfrog_sdk.lifecycle.records import Lifecycle
from dashfrog_sdk.sinks.console import ConsoleSink, render_line
from dashfrog_sdk.step import StepScope
from dashfrog_sdk.testing import Capture
from tests.support.procs import wait_until


def _progress_events(cap: Capture, name: str | None = None) -> list[dict[str, Any]]:
    return [
        dict(e.attributes)
        for e in cap.events_named(c.EVENT_STEP_PROGRESS)
        if name is None or e.attributes.get(c.STEP_NAME) == name
    ]


class Clock:
    """A controllable time_ns() for the throttle (no sleeping in tests)."""

    def __init__(self) -> None:
        self.now = 1_700_000_000_000_000_000

    def __call__(self) -> int:
        return self.now


# -- progress -----------------------------------------------------------------------------------


def test_with_gives_the_step_scope(dashfrog_capture: Capture) -> None:
    with flow.start("order", tenant="acme"), step.start("import_rows") as s:
        assert isinstance(s, StepScope)


def test_progress_is_recorded_on_events_and_on_the_span(dashfrog_capture: Capture) -> None:
    with flow.start("imports", tenant="acme"), step.start("import_rows") as s:
        s.progress(400, total=1000, message="loading eu")
    events = _progress_events(dashfrog_capture)
    assert len(events) == 1  # sampled while it ran, or recorded at its end: once
    first = events[0]
    assert first[c.STEP_NAME] == "import_rows" and first[c.TENANT] == "acme"
    assert (first[c.STEP_PROGRESS_DONE], first[c.STEP_PROGRESS_TOTAL]) == (400, 1000)
    assert first[c.STEP_PROGRESS_MESSAGE] == "loading eu"
    span = dashfrog_capture.flow("imports").step("import_rows").span
    attrs = dict(span.attributes or {})
    assert (attrs[c.STEP_PROGRESS_DONE], attrs[c.STEP_PROGRESS_TOTAL]) == (400, 1000)
    assert attrs[c.STEP_PROGRESS_MESSAGE] == "loading eu"
    # The event is the step's: same trace and span ids.
    event = dashfrog_capture.events_named(c.EVENT_STEP_PROGRESS)[0]
    assert event.span_id == span.context.span_id


def test_the_dispatcher_records_the_latest_value_a_few_times_a_second(
    dashfrog_capture: Capture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """progress() only keeps the value; the dispatcher's sampler (step.sample_progress, before
    each drain) records it if it changed, at most once per 250 ms a step; the end records the
    last. The clock is the test's, and the sampler runs only when the test calls it, as the
    dispatcher does before each drain."""
    clock = Clock()
    monkeypatch.setattr(step_module, "time_ns", clock)
    monkeypatch.setattr(bus._bus, "samplers", ())
    ms = 1_000_000
    with flow.start("imports", tenant="acme"), step.start("import_rows") as s:
        s.progress(1, total=10_000)
        step_module.sample_progress()  # recorded: the first value
        s.progress(2, total=10_000)
        clock.now += 100 * ms
        step_module.sample_progress()  # not yet: 100 ms since the last record
        clock.now += 200 * ms
        step_module.sample_progress()  # 300 ms: recorded
        step_module.sample_progress()  # unchanged: nothing
        for i in range(3, 10_001):  # a tight loop within one interval: nothing recorded
            s.progress(i, total=10_000)
        step_module.sample_progress()
    done = [e[c.STEP_PROGRESS_DONE] for e in _progress_events(dashfrog_capture)]
    assert done == [1, 2, 10_000]  # and the last value at the end
    attrs = dict(dashfrog_capture.flow("imports").step("import_rows").span.attributes or {})
    assert attrs[c.STEP_PROGRESS_DONE] == 10_000


def test_a_running_step_is_sampled_without_any_call_of_ours(dashfrog_capture: Capture) -> None:
    with flow.start("imports", tenant="acme"), step.start("import_rows") as s:
        s.progress(7, total=10)
        wait_until(  # the events as they arrive (reading `.events` would flush)
            lambda: [e for e in list(dashfrog_capture._events) if e.name == c.EVENT_STEP_PROGRESS],
            timeout=10,
            message="the dispatcher never recorded the running step's progress",
        )
    assert [e[c.STEP_PROGRESS_DONE] for e in _progress_events(dashfrog_capture)] == [7]


def test_the_last_value_is_recorded_once(dashfrog_capture: Capture) -> None:
    with flow.start("imports", tenant="acme"), step.start("one") as s:
        s.progress(1, total=1)  # recorded at once; the step's end does not repeat it
    assert [e[c.STEP_PROGRESS_DONE] for e in _progress_events(dashfrog_capture)] == [1]


def test_progress_without_total_or_message(dashfrog_capture: Capture) -> None:
    with flow.start("imports", tenant="acme"), step.start("scan") as s:
        s.progress(2.5)
    (event,) = _progress_events(dashfrog_capture)
    assert event[c.STEP_PROGRESS_DONE] == 2.5
    assert c.STEP_PROGRESS_TOTAL not in event and c.STEP_PROGRESS_MESSAGE not in event


def test_progress_outside_a_flow_stays_on_the_span(dashfrog_capture: Capture) -> None:
    with step.start("lonely") as s:
        s.progress(3, total=4)
    assert _progress_events(dashfrog_capture) == []
    (span,) = [x for x in dashfrog_capture.spans if x.name == "step lonely"]
    assert dict(span.attributes or {})[c.STEP_PROGRESS_DONE] == 3


def test_a_scope_entered_again_starts_without_progress(dashfrog_capture: Capture) -> None:
    scope = step.start("again")
    with flow.start("imports", tenant="acme"):
        with scope as s:
            s.progress(5, total=10)
        with scope:
            pass
    spans = [x for x in dashfrog_capture.spans if x.name == "step again"]
    assert [dict(x.attributes or {}).get(c.STEP_PROGRESS_DONE) for x in spans] == [5, None]


@pytest.mark.parametrize(
    ("args", "error", "names"),
    [
        ((True,), TypeError, "done"),
        (("3",), TypeError, "done"),
        ((None,), TypeError, "done"),
        ((-1,), ValueError, "done"),
        ((math.nan,), ValueError, "done"),
        ((math.inf,), ValueError, "done"),
        ((1, 0), ValueError, "total"),
        ((1, -5), ValueError, "total"),
        ((1, False), TypeError, "total"),
        ((1, "10"), TypeError, "total"),
        ((1, math.inf), ValueError, "total"),
        ((11, 10), ValueError, "total=None"),
        ((1, 10, 3), TypeError, "message"),
        ((1, 10, "x" * 257), ValueError, "message"),
        ((1, 10, "bad \udc80 bytes"), ValueError, "message .* contains a lone surrogate"),
    ],
)
def test_wrong_progress_arguments_raise_at_once(
    dashfrog_capture: Capture, args: tuple[Any, ...], error: type[Exception], names: str
) -> None:
    with flow.start("imports", tenant="acme"), step.start("import_rows") as s:
        with pytest.raises(error, match=names):
            s.progress(*args)
    assert _progress_events(dashfrog_capture) == []


def test_progress_outside_its_block_raises(dashfrog_capture: Capture) -> None:
    scope = step.start("import_rows")
    with pytest.raises(RuntimeError, match="inside"):
        scope.progress(1)
    with flow.start("imports", tenant="acme"), scope as s:
        pass
    with pytest.raises(RuntimeError, match="not running"):
        s.progress(1)
    with pytest.raises(RuntimeError, match="not running"):
        s.artifact("x", 1)


def test_non_ascii_messages_and_values_are_kept_whole(dashfrog_capture: Capture) -> None:
    with flow.start("imports", tenant="acme"), step.start("s") as s:
        s.progress(1, total=2, message="données ✓ 🐸")
        s.artifact("note", {"text": "données ✓ 🐸", "pair": "\U0001f438"})
    assert _progress_events(dashfrog_capture)[0][c.STEP_PROGRESS_MESSAGE] == "données ✓ 🐸"
    (event,) = dashfrog_capture.events_named(c.EVENT_STEP_ARTIFACT)
    assert json.loads(event.attributes[c.ARTIFACT_VALUE])["text"] == "données ✓ 🐸"


def test_a_message_is_kept_as_data(dashfrog_capture: Capture) -> None:
    hostile = "\x1b[31mred\x1b[0m <b>bold</b>"
    with flow.start("imports", tenant="acme"), step.start("import_rows") as s:
        s.progress(1, total=2, message=hostile)
    assert _progress_events(dashfrog_capture)[0][c.STEP_PROGRESS_MESSAGE] == hostile


def test_progress_text_reads_the_same_everywhere() -> None:
    assert progress.text("import_rows", 400, 1000) == "import_rows 40% (400/1000)"
    assert progress.text("import_rows", 400.0, 1000.0, "eu") == "import_rows 40% (400/1000) eu"
    assert progress.text("x", 999, 1000) == "x 99% (999/1000)"  # never 100% before the end
    assert progress.text("x", 1000, 1000) == "x 100% (1000/1000)"
    assert progress.text("x", 12) == "x 12"
    assert progress.text("x", 0.125, 1) == "x 12% (0.125/1)"


def test_the_console_shows_progress_while_the_step_runs() -> None:
    event = Lifecycle(
        c.EVENT_STEP_PROGRESS,
        1_700_000_000_000_000_000,
        1,
        2,
        {c.FLOW_NAME: "imports", c.FLOW_ID: "f" * 32},
        "import_rows",
        {c.STEP_PROGRESS_DONE: 400, c.STEP_PROGRESS_TOTAL: 1000},
        depth=1,
    )
    line = render_line(event)
    assert line is not None and line.endswith("… step import_rows 40% (400/1000)")
    out = io.StringIO()
    ConsoleSink(out, color=False)([event])
    assert "import_rows 40% (400/1000)" in out.getvalue()


# -- artifacts ----------------------------------------------------------------------------------


def test_an_artifact_is_one_event_with_its_json(dashfrog_capture: Capture) -> None:
    value = {"rows": 1000, "rejected": 3, "by_region": {"eu": 600, "us": 400}, "ok": True}
    with flow.start("imports", tenant="acme"), step.start("import_rows") as s:
        s.artifact("summary", value)
        s.artifact("note", "données ✓")
    arts = dashfrog_capture.events_named(c.EVENT_STEP_ARTIFACT)
    assert [e.attributes[c.ARTIFACT_NAME] for e in arts] == ["summary", "note"]
    assert json.loads(arts[0].attributes[c.ARTIFACT_VALUE]) == value
    assert json.loads(arts[1].attributes[c.ARTIFACT_VALUE]) == "données ✓"
    assert arts[0].attributes[c.STEP_NAME] == "import_rows"
    span = dashfrog_capture.flow("imports").step("import_rows").span
    assert arts[0].span_id == span.context.span_id
    # Never on the span: only the event carries it.
    assert not any("summary" in str(v) for v in dict(span.attributes or {}).values())


def test_an_artifact_of_the_largest_size_is_accepted(dashfrog_capture: Capture) -> None:
    big = "x" * (progress.MAX_ARTIFACT_BYTES - 2)  # the quotes make it exactly the limit
    with flow.start("imports", tenant="acme"), step.start("s") as s:
        s.artifact("big", big)
    (event,) = dashfrog_capture.events_named(c.EVENT_STEP_ARTIFACT)
    assert json.loads(event.attributes[c.ARTIFACT_VALUE]) == big


@pytest.mark.parametrize(
    ("name", "value", "error", "match"),
    [
        ("big", "x" * progress.MAX_ARTIFACT_BYTES, ValueError, "value of artifact 'big' is 65538"),
        ("big", "é" * 40_000, ValueError, "bytes as JSON"),
        ("obj", object(), TypeError, "value of artifact 'obj' must be JSON-serialisable"),
        ("nan", {"x": math.nan}, TypeError, "JSON-serialisable"),
        ("set", {1, 2}, TypeError, "JSON-serialisable"),
        ("keys", {(1, 2): 3}, TypeError, "JSON-serialisable"),
        ("", 1, TypeError, "name"),
        (None, 1, TypeError, "name"),
        ("has space", 1, ValueError, "not a valid key"),
        ("sur", {"path": "x\udcff"}, ValueError, "value of artifact 'sur' .* contains a lone"),
        ("dashfrog.x", 1, ValueError, "dashfrog"),
        ("n" * 257, 1, ValueError, "name must be at most"),
    ],
)
def test_wrong_artifacts_raise_at_once(
    dashfrog_capture: Capture, name: Any, value: Any, error: type[Exception], match: str
) -> None:
    with flow.start("imports", tenant="acme"), step.start("s") as s:
        with pytest.raises(error, match=match):
            s.artifact(name, value)
    assert dashfrog_capture.events_named(c.EVENT_STEP_ARTIFACT) == []


def test_a_cyclic_value_raises_naming_it(dashfrog_capture: Capture) -> None:
    cyclic: list[Any] = []
    cyclic.append(cyclic)
    with flow.start("imports", tenant="acme"), step.start("s") as s:
        with pytest.raises(TypeError, match="value of artifact 'loop'"):
            s.artifact("loop", cyclic)


def test_at_most_so_many_names_a_step_and_a_name_given_again_replaces(
    dashfrog_capture: Capture,
) -> None:
    with flow.start("imports", tenant="acme"), step.start("s") as s:
        for i in range(progress.MAX_ARTIFACTS):
            s.artifact(f"a{i}", i)
        s.artifact("a0", "again")  # a known name: allowed
        with pytest.raises(ValueError, match="at most 32 artifacts"):
            s.artifact("one_more", 1)
    arts = dashfrog_capture.events_named(c.EVENT_STEP_ARTIFACT)
    assert len(arts) == progress.MAX_ARTIFACTS + 1


def test_artifacts_and_progress_never_reach_baggage_or_headers(dashfrog_capture: Capture) -> None:
    secret = "artifact-secret-7f3a"
    with flow.start("imports", tenant="acme"), step.start("s") as s:
        s.artifact("summary", {"token": secret})
        s.progress(1, total=2, message=secret + "-progress")
        carrier: dict[str, str] = {}
        propagate.inject(carrier)
        members = baggage.get_all()
    assert carrier, "the flow's own baggage is injected"
    assert secret not in json.dumps(carrier)
    assert not any(
        secret in str(v) or "artifact" in k or "progress" in k for k, v in members.items()
    )


@pytest.mark.internal_errors
def test_runtime_trouble_recording_never_raises(
    dashfrog_capture: Capture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The SDK failed to start the step (its stand-in scope): progress() and artifact() still
    check their arguments, and record nothing."""

    def broken(self: StepScope) -> StepScope:
        raise RuntimeError("sdk trouble")

    monkeypatch.setattr(StepScope, "_enter", broken)
    before = diagnostics.counts().get("scope.enter_errors", 0)
    with flow.start("imports", tenant="acme"), step.start("s") as s:
        s.progress(1, total=2)
        s.artifact("x", 1)
        with pytest.raises(ValueError, match="done"):
            s.progress(-1)
    assert diagnostics.counts()["scope.enter_errors"] == before + 1
    assert _progress_events(dashfrog_capture) == []
    assert dashfrog_capture.events_named(c.EVENT_STEP_ARTIFACT) == []


@pytest.mark.parametrize(
    "args", [(3, 4, "rows"), (3, None, None), (0, 1, None), (5, 5, "x" * 256), (2, None, "m")]
)
def test_the_inlined_checks_accept_what_check_accepts_unchanged(args: tuple[Any, ...]) -> None:
    """step.progress() passes these through its inlined checks as they are; check() (the
    path of everything else) returns them unchanged, same types: both record the same."""
    checked = progress.check("progress()", *args)
    assert checked == args and [type(v) for v in checked] == [type(v) for v in args]


def test_number_subclasses_take_the_checked_path_and_are_recorded_plain(
    dashfrog_capture: Capture,
) -> None:
    class Count(int):
        pass

    with flow.start("imports", tenant="acme"), step.start("s") as s:
        s.progress(Count(3), total=Count(4), message="")
    (event,) = _progress_events(dashfrog_capture)
    assert type(event[c.STEP_PROGRESS_DONE]) is int and type(event[c.STEP_PROGRESS_TOTAL]) is int
    assert c.STEP_PROGRESS_MESSAGE not in event  # an empty message is no message


async def _async_step() -> tuple[Any, Any]:
    with flow.start("imports", tenant="acme"):
        async with step.start("fetch") as s:
            s.progress(1, total=2)
            s.artifact("page", [1, 2])
    return s, None


def test_async_with_gives_the_scope_too(dashfrog_capture: Capture) -> None:
    import asyncio

    scope, _ = asyncio.run(_async_step())
    assert isinstance(scope, StepScope)
    fetched = dashfrog_capture.flow("imports").step("fetch")
    assert fetched.progress == (1, 2, None)
    assert fetched.artifacts == {"page": [1, 2]}


def test_a_step_never_exited_is_not_kept_alive(dashfrog_capture: Capture) -> None:
    import gc

    with flow.start("imports", tenant="acme"):
        scope = step.start("abandoned")
        scope.__enter__()
        scope.progress(1)
        assert scope in step_module._watched
        scope._active = False  # as if the block were gone without exiting
        otel_token = scope._token
        from dashfrog_sdk._otel.keys import detach

        detach(otel_token)
        del scope
        gc.collect()
    assert len(step_module._watched) == 0


@pytest.mark.internal_errors
def test_trouble_recording_an_artifact_is_counted_not_raised(
    dashfrog_capture: Capture, monkeypatch: pytest.MonkeyPatch
) -> None:
    from dashfrog_sdk.lifecycle import records

    def broken(*args: Any) -> None:
        raise OSError("queue trouble")

    monkeypatch.setattr(records, "step_artifact", broken)
    before = diagnostics.counts().get("step.artifact_errors", 0)
    with flow.start("imports", tenant="acme"), step.start("s") as s:
        s.artifact("summary", {"rows": 1})  # the application goes on
    assert diagnostics.counts()["step.artifact_errors"] == before + 1
    assert dashfrog_capture.flow("imports").status == "completed"


def test_the_sampler_never_waits_for_its_lock(dashfrog_capture: Capture) -> None:
    """Held by this thread (a signal handler flushing while the code it interrupted was ending
    a step): the sampler skips this round rather than deadlock."""
    with flow.start("imports", tenant="acme"), step.start("s") as s:
        s.progress(1, total=2)
        with step_module._watched_lock:
            step_module.sample_progress()  # returns at once (a wait would never end)
    assert [e[c.STEP_PROGRESS_DONE] for e in _progress_events(dashfrog_capture)] == [1]
