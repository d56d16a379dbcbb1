"""The viewer over HTTP (a real `dashfrog ui` process): security rules, links, paging, errors."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from html import unescape
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import httpx
import pytest

from dashfrog_sdk.ui import links
from tests.support import ROOT, clean_env
from tests.support.procs import ManagedProcess, wait_until
from tests.ui.conftest import LINK_KEY, TOKEN, UIAPP, Filled, Viewer, app_env, run_app


@pytest.fixture(scope="module")
def filled(sqlite_filled: Filled) -> Filled:
    """These tests are about the server, not the backend: SQLite only (the browser tests run
    on both backends)."""
    return sqlite_filled


@pytest.fixture(scope="module")
def viewer(filled: Filled) -> Iterator[Viewer]:
    v = Viewer(filled.location).start()
    try:
        yield v
    finally:
        v.stop()


PAGES = ("/", "/flows", "/stats", "/flows?status=failed&window=1d", "/flows?label=region%3Deu")


def cli(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "dashfrog_sdk.cli", *args],
        env=clean_env(**env),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_every_page_carries_a_strict_csp_and_is_read_only(viewer: Viewer, filled: Filled) -> None:
    for path in (*PAGES, f"/flows/{filled.ok}", f"/flows/{filled.ok}/json", "/static/app.js"):
        r = viewer.get(path)
        assert r.status_code == 200, path
        csp = r.headers["content-security-policy"]
        assert "script-src 'self'" in csp and "default-src 'none'" in csp
        assert "unsafe-eval" not in csp and "script-src 'self' 'unsafe-inline'" not in csp
        assert r.headers["x-content-type-options"] == "nosniff"
        assert r.headers["x-frame-options"] == "DENY"
        assert r.headers["referrer-policy"] == "no-referrer"
    for method in ("POST", "PUT", "DELETE", "PATCH"):
        r = httpx.request(method, viewer.url + "/flows", timeout=10)
        assert r.status_code == 405 and r.headers["allow"] == "GET, HEAD"


class Tags(HTMLParser):
    """Every element and attribute of a page, as a browser's tokenizer sees them."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))


def test_no_inline_script_or_event_handler_in_any_page(viewer: Viewer, filled: Filled) -> None:
    hostile = filled.ids["hostile"]
    for path in (*PAGES, f"/flows/{filled.ok}", f"/flows/{hostile}", "/?q=%3Cscript%3E"):
        parser = Tags()
        parser.feed(viewer.get(path).text)
        scripts = [attrs.get("src") or "" for tag, attrs in parser.tags if tag == "script"]
        assert scripts and all(src.startswith("/static/") for src in scripts), path
        handlers = [(t, a) for t, a in parser.tags for name in a if name.startswith("on")]
        assert handlers == [], path
        # The hostile strings made no element of their own (the only SVGs: waterfall bars).
        made = [(t, a) for t, a in parser.tags if t in ("img", "svg", "iframe", "b")]
        assert all(t == "svg" and a.get("class") == "bar" for t, a in made), path


def test_a_foreign_host_header_is_refused(viewer: Viewer) -> None:
    # A page on another site that rebinds its name to 127.0.0.1 reaches the viewer with its
    # own name in Host: refused, so it cannot read the flows.
    r = viewer.get("/flows", headers={"Host": "attacker.example"})
    assert r.status_code == 400
    assert viewer.get("/flows", headers={"Host": f"localhost:{viewer.port}"}).status_code == 200
    # IPv6 loopback in its URL form (Starlette before Kludex/starlette#3357 read it as "[").
    assert viewer.get("/flows", headers={"Host": f"[::1]:{viewer.port}"}).status_code == 200
    assert viewer.get("/flows", headers={"Host": f"[::2]:{viewer.port}"}).status_code == 400


def test_off_loopback_it_refuses_to_start_without_a_token(filled: Filled) -> None:
    done = cli("ui", "--host", "0.0.0.0", "--port", "1", "--store", str(filled.path))
    assert done.returncode == 1
    assert "DASHFROG_UI_TOKEN" in done.stderr and "refusing" in done.stderr
    done = cli("ui", "--host", "0.0.0.0", "--store", str(filled.path), DASHFROG_UI_TOKEN="short")
    assert done.returncode == 1 and "at least 16 characters" in done.stderr


def test_with_a_token_every_operator_page_needs_it(filled: Filled) -> None:
    v = Viewer(filled.path, env={"DASHFROG_UI_TOKEN": TOKEN}, host="0.0.0.0").start()
    try:
        base = f"http://127.0.0.1:{v.port}"
        for path in PAGES:
            assert httpx.get(base + path, timeout=10).status_code == 401
            wrong = {"Authorization": "Bearer " + TOKEN[:-1] + "x"}
            assert httpx.get(base + path, headers=wrong, timeout=10).status_code == 401
            ok = {"Authorization": "Bearer " + TOKEN}
            assert httpx.get(base + path, headers=ok, timeout=10).status_code == 200
        # The token once in the address bar becomes an HttpOnly cookie and leaves the URL.
        with httpx.Client(base_url=base, timeout=10) as client:
            r = client.get("/flows", params={"token": TOKEN, "tenant": "acme-corp"})
            assert r.status_code == 303 and r.headers["location"] == "/flows?tenant=acme-corp"
            assert "httponly" in r.headers["set-cookie"].lower()
            assert "samesite=strict" in r.headers["set-cookie"].lower()
            assert client.get("/flows?tenant=acme-corp").status_code == 200
        # The signed tenant page, static files and the health check need no operator token.
        link = links.make_link(base, LINK_KEY, "acme-corp", 60)
        assert httpx.get(link, timeout=10).status_code == 200
        assert httpx.get(base + "/healthz", timeout=10).status_code == 200
        assert httpx.get(base + "/static/app.css", timeout=10).status_code == 200
    finally:
        v.stop()


def test_link_command(viewer: Viewer) -> None:
    done = cli("ui", "link", "--tenant", "acme-corp")
    assert done.returncode == 1 and "DASHFROG_UI_LINK_KEY" in done.stderr
    done = cli(
        "ui", "link", "--tenant", "acme-corp", "--expires", "soon", DASHFROG_UI_LINK_KEY=LINK_KEY
    )
    assert done.returncode == 1 and "--expires" in done.stderr
    done = cli(
        "ui",
        "link",
        "--tenant",
        "acme corp/ü",
        "--expires",
        "7d",
        "--base-url",
        viewer.url,
        DASHFROG_UI_LINK_KEY=LINK_KEY,
    )
    assert done.returncode == 0, done.stderr
    url = done.stdout.strip()
    query = {k: v[0] for k, v in parse_qs(urlparse(url).query).items()}
    assert query["tenant"] == "acme corp/ü"
    assert abs(int(query["expires"]) - (time.time() + 7 * 86400)) < 120
    assert links.verify(LINK_KEY, query["tenant"], query["expires"], query["sig"]) == "acme corp/ü"
    assert viewer.get(url.removeprefix(viewer.url)).status_code == 200
    with pytest.raises(links.LinkError, match="not valid"):
        links.verify(LINK_KEY, "acme-corp", query["expires"], query["sig"])
    with pytest.raises(links.LinkError, match="not valid"):
        links.verify("another-key-0123456789", query["tenant"], query["expires"], query["sig"])
    with pytest.raises(links.LinkError, match="not valid"):
        later = str(int(query["expires"]) + 1)
        links.verify(LINK_KEY, query["tenant"], later, query["sig"])


def test_bad_query_values_say_which_parameter(viewer: Viewer) -> None:
    for query, name in (
        ("status=bogus", "status"),
        ("window=3y", "window"),
        ("label=novalue", "label"),
        ("min_duration=long", "min_duration"),
        ("window=custom&since=yesterday", "since"),
        ("limit=0", "limit"),
        ("before=xyz", "before"),
    ):
        r = viewer.get("/flows?" + query)
        assert r.status_code == 400, query
        assert name in r.text, (query, r.text)
    assert viewer.get("/flows/" + "0" * 32).status_code == 404


def test_a_missing_store_is_a_page_saying_what_to_do(tmp_path: Path) -> None:
    v = Viewer(tmp_path / "nothing-yet.db").start()
    try:
        r = v.get("/flows")
        assert r.status_code == 503 and "no flow store at" in r.text and "make demo" in r.text
        # The store appears (a program starts): the same viewer shows it, no restart.
        run_app(tmp_path / "nothing-yet.db", "api", "bulk", "2")
        r = v.get("/flows")
        assert r.status_code == 200 and r.text.count('class="flow-row') == 2
    finally:
        v.stop()


def test_older_pages_walk_every_flow_once_newest_first(tmp_path: Path) -> None:
    store = tmp_path / "bulk.db"
    run_app(store, "api", "bulk", "130")
    v = Viewer(store).start()
    try:
        seen: list[str] = []
        path = "/flows?limit=50"
        pages = 0
        while path:
            html = v.get(path).text
            seen += re.findall(r'data-flow-id="([0-9a-f]{32})"', html)
            older = re.search(r'class="older" href="([^"]+)"', html)
            path = older.group(1).replace("&amp;", "&") if older else ""
            pages += 1
        assert pages == 3 and len(seen) == 130 and len(set(seen)) == 130
        assert "limit=50" in (older.group(1) if older else "limit=50")
        # Filters hold across pages: one tenant of three.
        tenant_ids = re.findall(
            r'data-flow-id="([0-9a-f]{32})"', v.get("/flows?tenant=t1&limit=500").text
        )
        assert len(tenant_ids) == 43
        # Minimum duration: every flow shown lasted at least that long (here: none).
        r = v.get("/flows?min_duration=1h")
        assert r.status_code == 200 and "no flows match" in r.text
    finally:
        v.stop()


def test_the_tenants_page_pages_worst_first(tmp_path: Path) -> None:
    # 120 tenants, two flows each; every seventh flow failed: pages of 50, worst failure
    # rate first, each tenant on exactly one page, the last failure of those shown.
    store = tmp_path / "tenants.db"
    run_app(store, "api", "bulk", "240", "120")
    v = Viewer(store).start()
    try:
        seen: list[str] = []
        rates: list[float] = []
        for number in (1, 2, 3):
            html = v.get(f"/?window=1d&page={number}").text
            names = re.findall(r'<a class="tenant" href="[^"]+">([^<]+)</a>', html)
            assert len(names) == (50 if number < 3 else 20), number
            seen += names
            rates += [
                float(x) for x in re.findall(r'<td class="num [a-z]*">([0-9.]+) %</td>', html)
            ]
            assert f"page {number} of 3 (120 tenants)" in html
            assert ('class="older"' in html) == (number < 3)
        assert sorted(seen) == sorted(f"t{i}" for i in range(120))
        assert rates == sorted(rates, reverse=True) and rates[0] == 50.0 and rates[-1] == 0.0
        first = v.get("/?window=1d").text
        assert first.count("bulk failure") >= 1  # the last failure's error, on the page
        beyond = v.get("/?window=1d&page=9").text  # past the end: the last page
        assert "page 3 of 3" in beyond
        bad = v.get("/?page=zero")
        assert bad.status_code == 400 and "page=" in bad.text
    finally:
        v.stop()


def test_live_rows_answer_204_until_something_changes(viewer: Viewer) -> None:
    html = viewer.get("/flows").text
    live = re.search(r'hx-get="(/flows/rows[^"]+)"', html)
    assert live, "page 1 of the list polls for changes"
    url = live.group(1).replace("&amp;", "&")
    seen = int(parse_qs(urlparse(url).query)["seen"][0])
    later = url.replace(f"seen={seen}", f"seen={seen + 3_000_000_000}")
    assert viewer.get(later).status_code == 204  # nothing written since: no work, no body
    earlier = url.replace(f"seen={seen}", "seen=1")
    r = viewer.get(earlier)
    assert r.status_code == 200 and r.text.startswith('<tbody id="flow-rows"')


def test_flow_json_is_the_store_flow(viewer: Viewer, filled: Filled) -> None:
    r = viewer.get(f"/flows/{filled.failed}/json")
    assert r.headers["content-type"].startswith("application/json")
    data = r.json()
    assert data["id"] == filled.failed and data["status"] == "failed"
    assert [s["service"] for s in data["steps"]][-1] == "billing"


def test_the_viewer_reads_only_through_the_store_query_api() -> None:
    package = ROOT / "dashfrog_sdk" / "ui"
    for source in package.glob("*.py"):
        text = source.read_text()
        assert "import sqlite3" not in text and not re.search(r"\bSELECT\b", text), source.name


def test_search_opens_a_flow_by_id_prefix_or_filters_tenants(
    viewer: Viewer, filled: Filled
) -> None:
    r = viewer.get("/search", params={"q": filled.failed[:10]})
    assert r.status_code == 303 and r.headers["location"] == f"/flows/{filled.failed}"
    r = viewer.get("/search", params={"q": "acme"})
    assert r.status_code == 303 and r.headers["location"] == "/?q=acme"
    home = viewer.get("/?q=acme&window=all").text
    assert "acme-corp" in home and "globex" not in home and "initech" not in home


def test_heatmap_cells_say_how_the_day_went() -> None:
    from dashfrog_sdk.store import FlowStats
    from dashfrog_sdk.ui.views import heat_class

    def day(completed: int = 0, failed: int = 0, running: int = 0) -> FlowStats:
        count = completed + failed + running
        return FlowStats("n", "t", count, running, completed, failed, 0, 0, 0.0, None, None)

    assert heat_class(day(completed=3))[0] == "heat-ok"
    assert heat_class(day(failed=2))[0] == "heat-bad"
    assert heat_class(day(completed=1, failed=1))[0] == "heat-mixed"
    assert heat_class(day(running=2))[0] == "heat-running"
    assert heat_class(None)[0] == heat_class(day())[0] == "heat-none"
    assert "1 completed, 1 failed" in heat_class(day(completed=1, failed=1))[1]


# -- progress and artifacts ---------------------------------------------------------------------


def _text(html: str) -> str:
    """A page's text as a reader sees it: tags dropped, whitespace collapsed, entities decoded."""
    return " ".join(unescape(re.sub(r"<[^>]+>", " ", html)).split())


def test_progress_while_running_and_artifacts_once_done(tmp_path: Path) -> None:
    """The real SDK in a subprocess: the list row and the flow page say how far the current
    step is while it runs; once it ends, the flow page lists its artifact, escaped."""
    store, gate = tmp_path / "flows.db", tmp_path / "gate"
    holder = ManagedProcess(
        [sys.executable, str(UIAPP), "progress", str(gate)],
        env=app_env(store, "worker"),
        inherit_env=False,
        cwd=ROOT,
        name="uiapp-progress",
    ).start()
    viewer: Viewer | None = None
    try:
        line = wait_until(lambda: holder.log_text().strip().splitlines()[:1], timeout=60)
        flow_id = json.loads(line[0])["flow_id"]
        wait_until(store.exists, timeout=30)
        viewer = Viewer(store).start()
        v = viewer

        def at(percent: str) -> bool:
            r = v.get(f"/flows/{flow_id}/json")
            progress = r.json().get("current_progress") if r.status_code == 200 else None
            return progress is not None and f"{progress['done']:g}" == percent

        wait_until(lambda: at("40"), timeout=60, message="no progress in the store")
        listed = _text(viewer.get("/flows?tenant=initech").text)
        assert "import_rows 40% (40/100) batch 1" in listed
        page = viewer.get(f"/flows/{flow_id}").text
        assert re.search(r'<progress class="step-bar" max="1" value="0.4">', page)
        assert "current step import_rows 40% (40/100) batch 1" in _text(page)
        gate.with_name("gate.1").write_text("go")
        wait_until(lambda: at("80"), timeout=60, message="the second value never arrived")
        assert "import_rows 80% (80/100) batch 2" in _text(viewer.get(f"/flows/{flow_id}").text)
        gate.with_name("gate.2").write_text("go")
        assert holder.wait(60) == 0

        def done() -> bool:
            return v.get(f"/flows/{flow_id}/json").json()["status"] == "completed"

        wait_until(done, timeout=60)
        page = viewer.get(f"/flows/{flow_id}").text
        row = re.search(r'<tr class="artifact-row"[^>]*>.*?</tr>', page, re.S)
        assert row is not None
        assert 'data-artifact="summary"' in row.group(0)
        assert "&lt;b&gt;not bold&lt;/b&gt;" in row.group(0) and "<b>" not in row.group(0)
        value = re.search(r'<pre class="json artifact-value">(.*?)</pre>', row.group(0), re.S)
        assert value is not None
        assert json.loads(unescape(value.group(1))) == {"rows": 100, "note": "<b>not bold</b>"}
        data = viewer.get(f"/flows/{flow_id}/json").json()
        assert data["steps"][0]["artifacts"] == {
            "summary": {"rows": 100, "note": "<b>not bold</b>"}
        }
        assert data["steps"][0]["progress"]["done"] == 80
    finally:
        if not gate.with_name("gate.1").exists():
            gate.with_name("gate.1").write_text("stop")
        if not gate.with_name("gate.2").exists():
            gate.with_name("gate.2").write_text("stop")
        holder.stop()
        if viewer is not None:
            viewer.stop()


def test_hostile_artifacts_and_progress_are_text(viewer: Viewer, filled: Filled) -> None:
    page = viewer.get(f"/flows/{filled.ids['hostile']}").text
    row = re.search(r'<tr class="artifact-row"[^>]*>.*?</tr>', page, re.S)
    assert row is not None and "&lt;img src=x onerror=" in row.group(0)
    assert "<img" not in page and "<svg onload" not in page
    assert "1/3" in _text(page)
    data = viewer.get(f"/flows/{filled.ids['hostile']}/json").json()
    (step,) = data["steps"]
    assert step["artifacts"]["evil"]["name"].startswith("<img src=x")


# -- live updates: one change feed for every open page -------------------------------------------

_WRITE = """
import json, sys
from dashfrog_sdk.store import StoreWriter
from dashfrog_sdk.store.convert import Batch, FlowRow
writer = StoreWriter(sys.argv[1])
assert writer.write(Batch(flows=[FlowRow(**row) for row in json.loads(sys.argv[2])]))
writer.close()
"""


def _write_elsewhere(store: Path, *rows: dict[str, object]) -> None:
    """Flow rows written by another process (as a worker's store writer would)."""
    import json

    subprocess.run(
        [sys.executable, "-c", _WRITE, str(store), json.dumps(list(rows))],
        check=True,
        cwd=ROOT,
        timeout=120,
    )


class _Poll:
    """What an open page's htmx does: GET its live URL; after a fresh answer, the URL in it."""

    def __init__(self, viewer: Viewer, url: str) -> None:
        self.viewer, self.url, self.text = viewer, url, ""

    def __call__(self) -> int:
        r = self.viewer.get(self.url)
        if r.status_code == 200:
            self.text = r.text
            found = re.search(r'hx-get="([^"]+)"', r.text)
            if found:
                self.url = found.group(1).replace("&amp;", "&")
        return r.status_code

    def stays(self, code: int, seconds: float = 1.5) -> None:
        """Every poll for `seconds` (longer than the feed's refresh interval) gets `code`."""
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            assert self() == code, self.url


def test_live_pages_change_only_when_their_flows_are_written(tmp_path: Path) -> None:
    from tests.support.procs import wait_until

    store = tmp_path / "live.db"
    now = time.time_ns()
    a, b, kid = "a" * 32, "b" * 32, "c" * 32
    _write_elsewhere(
        store,
        {"flow_id": a, "name": "job", "tenant": "acme", "status": "running", "start_ns": now},
        {"flow_id": b, "name": "job", "tenant": "globex", "status": "running", "start_ns": now},
    )
    v = Viewer(store).start()
    try:
        found = re.search(r'hx-get="(/flows/rows[^"]+)"', v.get("/flows?tenant=acme").text)
        assert found
        rows = _Poll(v, found.group(1).replace("&amp;", "&"))
        found = re.search(r'hx-get="(/flows/a+/live[^"]+)"', v.get(f"/flows/{a}").text)
        assert found and "seen=" in found.group(1)
        live = _Poll(v, found.group(1).replace("&amp;", "&"))
        # Once the writes before the pages were drawn are past the 2 s look-back: unchanged.
        wait_until(lambda: rows() == 204 and live() == 204, timeout=15)
        # Another tenant's flow changes: neither page has anything new to show.
        _write_elsewhere(store, {"flow_id": b, "status": "completed", "end_ns": now + 10**9})
        rows.stays(204)
        live.stays(204)
        # A child flow of `a` starts: the flow page shows it (the list has nothing new).
        _write_elsewhere(
            store,
            {"flow_id": kid, "name": "sub", "tenant": "globex", "parent_id": a, "start_ns": now},
        )
        wait_until(lambda: live() == 200, timeout=15)
        assert kid[:12] in live.text
        rows.stays(204)
        # `a` itself ends: both pages answer with it completed.
        _write_elsewhere(store, {"flow_id": a, "status": "completed", "end_ns": now + 10**9})
        wait_until(lambda: rows() == 200, timeout=15)
        assert "completed" in rows.text and a[:12] in rows.text
        wait_until(lambda: live() == 200 and "completed" in live.text, timeout=15)
    finally:
        v.stop()


def test_one_change_read_serves_every_open_page(tmp_path: Path) -> None:
    from dashfrog_sdk.store import FlowNotFoundError, FlowStore
    from dashfrog_sdk.ui import views

    store = tmp_path / "feed.db"
    now = time.time_ns()
    _write_elsewhere(
        store,
        *(
            {"flow_id": f"{i:032x}", "name": "job", "tenant": f"t{i % 4}", "start_ns": now}
            for i in range(40)
        ),
    )

    class Counting:
        def __init__(self, inner: FlowStore) -> None:
            self.inner, self.reads = inner, 0

        def changes(self, after_ns: int, limit: int = 1000) -> object:
            self.reads += 1
            return self.inner.changes(after_ns, limit)

    with FlowStore(store) as real:
        counting = Counting(real)
        feed = views.ChangeFeed(every_s=60)
        stamp = time.time_ns()
        queries = [views.FlowQuery(tenant=f"t{i % 4}") for i in range(20)]
        answers = [feed.page_unchanged(counting, q, stamp, 0) for q in queries]  # type: ignore[arg-type]
        assert counting.reads == 1
        assert answers == [False] * 20  # written within the look-back: maybe on each page
        assert not feed.flow_unchanged(counting, f"{1:032x}", stamp)  # type: ignore[arg-type]
        assert feed.page_unchanged(counting, views.FlowQuery(tenant="t9"), stamp, 0)  # type: ignore[arg-type]
        assert not feed.flow_unchanged(counting, "f" * 32, stamp)  # type: ignore[arg-type]
        with pytest.raises(FlowNotFoundError):  # never read in full: read it
            feed.read_flow(real, "f" * 32)
        feed.read_flow(real, f"{2:032x}")
        assert not feed.flow_unchanged(counting, f"{2:032x}", stamp)  # type: ignore[arg-type]
        later = stamp + 3 * views.LOOK_BACK_NS
        assert feed.flow_unchanged(counting, f"{2:032x}", later)  # type: ignore[arg-type]
        assert not feed.page_unchanged(counting, queries[0], 1, 0)  # type: ignore[arg-type]
        assert counting.reads == 1
