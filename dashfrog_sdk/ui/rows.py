"""The flows table's rows, rendered once per content and kept.

An open flows page is drawn again on every poll in which one of its flows changed (every two
seconds while flows run), and most of its rows show what they showed: rendering the rows was
most of the viewer's CPU on a live page (about 70 µs a row, 3.5 ms for a page of 50;
``benchmarks/ui.py``, live updates). A row is rendered by Jinja2 (autoescaped, as every page)
once per distinct content, keyed by every value it shows, and the HTML is reused while that
content lasts. The one value that moves with the clock, a running flow's elapsed time, is not
part of the kept text: the row is kept in two parts around that cell's text, which is
formatted per answer, so a cached row is byte for byte what rendering it again gives
(``tests/ui/test_server.py::test_cached_rows_equal_fresh_rendering``).
"""

from __future__ import annotations

import secrets
from collections import OrderedDict
from collections.abc import Hashable
from typing import Any

import jinja2
from markupsafe import Markup, escape

from dashfrog_sdk import conventions as c
from dashfrog_sdk.render import _fmt
from dashfrog_sdk.store import Flow


class RowCache:
    """Rendered rows of the flows table, least recently used dropped beyond ``size``.

    Used on the event loop thread only (templates are rendered there)."""

    def __init__(self, env: jinja2.Environment, size: int = 5000) -> None:
        self._template = env.get_template("_row.html")
        self.size = size
        # Stands for the elapsed time while a row renders: random per process, so no stored
        # string can contain it and move the cut.
        self._mark = "\x00" + secrets.token_hex(8) + "\x00"
        self._rows: OrderedDict[Hashable, tuple[str, str | None]] = OrderedDict()
        self.rendered = 0  # rows rendered (the rest came from the cache), for tests

    def row(
        self,
        f: Flow,
        where: tuple[str, str | None] | None,
        url: str,
        tenant_view: str | None,
    ) -> Markup:
        running = f.status == c.RUNNING
        progress = f.current_progress
        key = (
            f.id,
            f.name,
            f.tenant,
            f.status,
            f.start_ns,
            None if running else f.duration_ms,
            where,
            f.current_step,
            # What the progress text and bar are made of (not the text: built per row, per poll).
            None if progress is None else (progress.done, progress.total, progress.message),
            f.error_type,
            f.error_message,
            # With each value's type: 1, 1.0 and True are equal keys but print differently.
            tuple((k, type(v), v) for k, v in f.labels.items()),
            url,
            tenant_view,
        )
        parts = self._rows.get(key)
        if parts is None:
            parts = self._render(f, where, url, tenant_view, running)
            self._rows[key] = parts
            if len(self._rows) > self.size:
                self._rows.popitem(last=False)
        else:
            self._rows.move_to_end(key)
        head, tail = parts
        if tail is None:
            return Markup(head)
        return Markup(head + str(escape(_fmt.duration(f.duration_ms))) + tail)

    def _render(
        self,
        f: Flow,
        where: tuple[str, str | None] | None,
        url: str,
        tenant_view: str | None,
        running: bool,
    ) -> tuple[str, str | None]:
        self.rendered += 1
        context: dict[str, Any] = {"f": f, "where": where, "url": url, "tenant_view": tenant_view}
        if not running:
            context["elapsed"] = _fmt.duration(f.duration_ms)
            return self._template.render(context), None
        context["elapsed"] = Markup(self._mark)
        head, tail = self._template.render(context).split(self._mark, 1)
        return head, tail
