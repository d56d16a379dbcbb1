"""The viewer in a real headless Chromium, against a store filled by real flows."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlparse

import pytest
from playwright.sync_api import expect

from dashfrog_sdk.ui import links
from tests.support import ROOT, clean_env
from tests.support.procs import ManagedProcess, wait_until
from tests.ui import uiapp
from tests.ui.conftest import LINK_KEY, TRACE_URL, UIAPP, Filled, Page, Viewer

pytestmark = pytest.mark.browser


def rows(p: Page) -> list[dict[str, str]]:
    out: list[dict[str, str]] = p.page.eval_on_selector_all(
        "#flow-rows tr.flow-row",
        """trs => trs.map(tr => ({
            id: tr.dataset.flowId,
            name: tr.querySelector('.flow-name').textContent,
            tenant: (tr.querySelector('.flow-tenant') || {textContent: ''}).textContent,
            status: tr.querySelector('.badge').textContent.trim(),
            step: tr.querySelector('.flow-step').textContent.replace(/\\s+/g, ' ').trim(),
        }))""",
    )
    return out


def assert_clean(p: Page) -> None:
    """No script ran that should not have, nothing broke, nothing the CSP had to block."""
    assert p.page.evaluate("typeof window.__pwned") == "undefined"
    assert p.dialogs == []
    assert p.errors == []
    assert p.csp == []


def test_flows_list_shows_the_flows(viewer: Viewer, filled: Filled, page: Page) -> None:
    page.page.goto(viewer.url + "/flows")
    listed = {r["id"]: r for r in rows(page)}
    for fid in (filled.ok, filled.failed, filled.ids["import"], filled.ids["initech"]):
        assert fid in listed
    assert listed[filled.ok]["name"] == "order_processing"
    assert listed[filled.ok]["tenant"] == "acme-corp"
    assert listed[filled.ok]["status"].endswith("completed")
    assert listed[filled.failed]["status"].endswith("failed")
    # The step a failed flow failed at, with the service that ran it.
    assert listed[filled.failed]["step"].startswith("at charge_card billing")
    page.shot("flows")
    assert_clean(page)


def test_tenant_and_status_filters_narrow_the_list(
    viewer: Viewer, filled: Filled, page: Page
) -> None:
    p = page.page
    p.goto(viewer.url + "/flows")
    everything = rows(page)
    p.fill("form.filters input[name=tenant]", "acme-corp")
    p.click("form.filters button[type=submit]")
    p.wait_for_url("**tenant=acme-corp**")
    acme = rows(page)
    assert acme and len(acme) < len(everything)
    assert {r["tenant"] for r in acme} == {"acme-corp"}
    assert filled.ok in {r["id"] for r in acme}
    # The filters are in the URL: the view can be bookmarked and shared.
    p.goto(viewer.url + "/flows?" + urlencode({"status": "failed"}))
    failed = rows(page)
    assert failed and all(r["status"].endswith("failed") for r in failed)
    assert filled.failed in {r["id"] for r in failed} and filled.ok not in {r["id"] for r in failed}
    p.check("form.filters input[name=status][value=failed]")  # already checked from the URL
    p.fill("form.filters input[name=tenant]", "globex")
    p.click("form.filters button[type=submit]")
    p.wait_for_url("**tenant=globex**")
    both = rows(page)
    assert [r["id"] for r in both] == [filled.failed]
    query = parse_qs(urlparse(p.url).query)
    assert query["tenant"] == ["globex"] and query["status"] == ["failed"]
    page.shot("filtered")
    assert_clean(page)


def steps(p: Page) -> list[dict[str, str]]:
    out: list[dict[str, str]] = p.page.eval_on_selector_all(
        "#steps tbody tr",
        """trs => trs.map(tr => ({
            name: tr.dataset.step,
            depth: tr.querySelector('td.step-name').className,
            service: tr.children[1].textContent.trim(),
            status: tr.querySelector('.step-status').textContent.trim(),
            error: (tr.querySelector('.step-error') || {textContent: ''}).textContent.trim(),
        }))""",
    )
    return out


def test_clicking_a_flow_shows_its_steps_in_order(
    viewer: Viewer, filled: Filled, page: Page
) -> None:
    p = page.page
    p.goto(viewer.url + "/flows?tenant=acme-corp")
    p.click(f"tr[data-flow-id='{filled.ok}'] a.flow-link")
    p.wait_for_url(f"**/flows/{filled.ok}")
    expect(p.locator("#flow-status")).to_have_text("✔ completed")
    got = steps(page)
    assert [s["name"] for s in got] == ["validate_order", "check_stock", "enqueue", "charge_card"]
    assert [s["service"] for s in got] == ["api", "api", "api", "billing"]
    assert all(s["status"].endswith("completed") for s in got)
    assert "depth-1" in got[1]["depth"] and "depth-0" in got[0]["depth"]
    # The sequence diagram, drawn by the vendored Mermaid, across both services.
    expect(p.locator("#diagram svg")).to_be_visible()
    diagram = p.locator("#diagram svg").text_content() or ""
    assert "billing" in diagram and "charge_card" in diagram
    trace_id = p.locator("#flow-json").text_content()
    link = p.locator("a[href^='http://jaeger.example']").get_attribute("href") or ""
    assert link.startswith(TRACE_URL.split("{")[0]) and link.rsplit("/", 1)[1] in (trace_id or "")
    page.shot("flow")
    assert_clean(page)


def test_a_failed_step_shows_its_error(viewer: Viewer, filled: Filled, page: Page) -> None:
    p = page.page
    p.goto(viewer.url + f"/flows/{filled.failed}")
    expect(p.locator("#flow-status")).to_have_text("✘ failed")
    charge = next(s for s in steps(page) if s["name"] == "charge_card")
    assert charge["status"].endswith("failed") and charge["service"] == "billing"
    assert "card declined by issuer (code 51)" in charge["error"]
    expect(p.locator("#flow-error")).to_contain_text("card declined by issuer (code 51)")
    expect(p.locator("#diagram svg")).to_be_visible()
    page.shot("failed-flow")
    assert_clean(page)


def test_a_flow_running_elsewhere_turns_completed_without_reload(
    viewer: Viewer, filled: Filled, browser: Any, tmp_path: Path
) -> None:
    gate = tmp_path / "gate"
    holder = ManagedProcess(
        [sys.executable, str(UIAPP), "hold", str(gate)],
        env=filled.writer_env("worker"),
        inherit_env=False,
        cwd=ROOT,
        name="uiapp-hold",
    ).start()
    list_page = Page(browser, "live-list")
    flow_page = Page(browser, "live-flow")
    try:
        line = wait_until(lambda: holder.log_text().strip().splitlines()[:1], timeout=60)
        flow_id = json.loads(line[0])["flow_id"]

        def running_in_crunch() -> bool:
            r = viewer.get(f"/flows/{flow_id}/json")
            return r.status_code == 200 and r.json()["current_step"] == "crunch"

        wait_until(running_in_crunch, timeout=60, message="the held flow never showed as running")
        list_page.page.goto(viewer.url + "/flows?tenant=initech")
        flow_page.page.goto(viewer.url + f"/flows/{flow_id}")
        row = list_page.page.locator(f"tr[data-flow-id='{flow_id}']")
        expect(row.locator(".badge")).to_have_text("▶ running")
        expect(row.locator(".flow-step")).to_contain_text("crunch")
        expect(flow_page.page.locator("#flow-status")).to_have_text("▶ running")
        expect(flow_page.page.locator("#current-step")).to_have_text("crunch")
        list_page.shot("running")
        for p in (list_page, flow_page):
            p.page.evaluate("window.__sameDocument = 42")
        gate.write_text("go")
        expect(row.locator(".badge")).to_have_text("✔ completed", timeout=60_000)
        expect(flow_page.page.locator("#flow-status")).to_have_text("✔ completed", timeout=60_000)
        crunch = next(s for s in steps(flow_page) if s["name"] == "crunch")
        assert crunch["status"].endswith("completed") and crunch["service"] == "worker"
        for p in (list_page, flow_page):  # updated in place: the same document, never reloaded
            assert p.page.evaluate("window.__sameDocument") == 42
            assert_clean(p)
        list_page.shot("completed")
        assert holder.wait(60) == 0
    finally:
        list_page.close()
        flow_page.close()
        if not gate.exists():
            gate.write_text("stop")
        holder.stop()


def test_hostile_strings_render_as_text_and_run_nothing(
    viewer: Viewer, filled: Filled, page: Page
) -> None:
    p = page.page
    hostile = filled.ids["hostile"]
    for path in ("/", "/flows", "/stats", "/flows?status=failed"):
        p.goto(viewer.url + path)
        assert_clean(page)
    p.goto(viewer.url + "/flows")
    row = next(r for r in rows(page) if r["id"] == hostile)
    assert row["name"] == uiapp.HOSTILE_NAME and row["tenant"] == uiapp.HOSTILE_TENANT
    p.goto(viewer.url + "/")
    expect(p.get_by_text(uiapp.HOSTILE_TENANT, exact=True)).to_have_count(1)
    p.goto(viewer.url + f"/flows/{hostile}")
    expect(p.locator(".flow-title")).to_have_text(uiapp.HOSTILE_NAME)
    expect(p.locator("#flow-tenant")).to_have_text(uiapp.HOSTILE_TENANT)
    step = steps(page)[0]
    assert step["name"] == uiapp.HOSTILE_STEP and uiapp.HOSTILE_ERROR in step["error"]
    expect(p.locator("#diagram svg")).to_be_visible()
    assert p.locator("#diagram").get_attribute("data-error") is None
    injected = p.evaluate(
        "document.querySelectorAll('main img, main script, main iframe, [onerror], [onload]').length"
    )
    assert injected == 0
    page.shot("hostile")
    assert_clean(page)


def signed_link(viewer: Viewer, tenant: str, expires: str = "1h") -> str:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "dashfrog_sdk.cli",
            "ui",
            "link",
            "--tenant",
            tenant,
            "--expires",
            expires,
            "--base-url",
            viewer.url,
        ],
        env=clean_env(DASHFROG_UI_LINK_KEY=LINK_KEY),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_tenant_page_shows_only_its_tenant_and_refuses_bad_links(
    viewer: Viewer, filled: Filled, page: Page
) -> None:
    p = page.page
    url = signed_link(viewer, "acme-corp")
    p.goto(url)
    expect(p.locator("h1")).to_have_text("Flows of acme-corp")
    shown = {r["id"] for r in rows(page)}
    assert filled.ok in shown and filled.ids["import"] in shown
    assert filled.failed not in shown and filled.ids["initech"] not in shown
    assert p.locator("a[href='/flows']").count() == 0  # no way out to the operator pages
    stats_text = p.locator("#stats").text_content() or ""
    assert "globex" not in stats_text and "initech" not in stats_text
    page.shot("tenant")
    p.click(f"tr[data-flow-id='{filled.ok}'] a.flow-link")
    expect(p.locator("#flow-status")).to_have_text("✔ completed")
    assert steps(page)[0]["name"] == "validate_order"
    assert p.locator("#logs").count() == 0 and p.locator("#flow-json").count() == 0
    page.shot("tenant-flow")
    assert_clean(page)

    query = parse_qs(urlparse(url).query)
    # Another tenant's flow through this tenant's link: not found, like a missing one.
    other = f"{viewer.url}/status/flows/{filled.failed}?{urlparse(url).query}"
    assert p.goto(other).status == 404
    tampered = {k: v[0] for k, v in query.items()} | {"tenant": "globex"}
    response = p.goto(f"{viewer.url}/status?{urlencode(tampered)}")
    assert response.status == 403
    expect(p.locator(".error-message")).to_contain_text("not valid")
    assert p.locator("#flow-rows").count() == 0
    page.shot("tenant-tampered")
    expired = links.query(LINK_KEY, "acme-corp", int(time.time()) - 60)
    response = p.goto(f"{viewer.url}/status?{expired}")
    assert response.status == 403
    expect(p.locator(".error-message")).to_contain_text("expired")
    assert p.locator("#flow-rows").count() == 0
    # The refused documents themselves are the only resources that failed to load.
    page.errors = [e for e in page.errors if "status of 40" not in e]
    assert_clean(page)


def test_tenants_home_and_stats_pages(viewer: Viewer, filled: Filled, page: Page) -> None:
    p = page.page
    p.goto(viewer.url + "/?window=1d")
    tenants = p.eval_on_selector_all(
        "#tenants tr.tenant-row",
        "trs => trs.map(tr => Array.from(tr.children).map(td => td.textContent.trim()))",
    )
    by_tenant = {row[0]: row for row in tenants}
    assert {"acme-corp", "globex", "initech"} <= by_tenant.keys()
    assert by_tenant["globex"][3] == "100.0 %" and by_tenant["initech"][3] == "0.0 %"
    assert by_tenant["acme-corp"][5] == "none"  # no failure yet
    page.shot("tenants")
    p.click("#tenants a.tenant >> text=globex")
    p.wait_for_url("**/flows?tenant=globex")
    assert [r["id"] for r in rows(page)] == [filled.failed]
    p.goto(viewer.url + "/stats?window=7d")
    stats = p.eval_on_selector_all(
        "#stats tbody tr",
        """trs => trs.map(tr => ({
            cells: Array.from(tr.children).map(td => td.textContent.trim()),
            today: tr.querySelector('.heat:last-child').className,
        }))""",
    )
    by_key = {(r["cells"][0], r["cells"][1]): r for r in stats}
    globex = by_key[("order_processing", "globex")]
    assert globex["cells"][2] == "1" and globex["cells"][5] == "100.0 %"
    assert "heat-bad" in globex["today"]
    assert "heat-ok" in by_key[("order_processing", "acme-corp")]["today"]
    page.shot("stats")
    assert_clean(page)


def test_progress_moves_in_place_and_the_artifact_appears(
    viewer: Viewer, filled: Filled, browser: Any, tmp_path: Path
) -> None:
    gate = tmp_path / "gate"
    writer = ManagedProcess(
        [sys.executable, str(UIAPP), "progress", str(gate)],
        env=filled.writer_env("worker"),
        inherit_env=False,
        cwd=ROOT,
        name="uiapp-progress",
    ).start()
    list_page = Page(browser, "progress-list")
    flow_page = Page(browser, "progress-flow")
    try:
        line = wait_until(lambda: writer.log_text().strip().splitlines()[:1], timeout=60)
        flow_id = json.loads(line[0])["flow_id"]

        def at(done: float) -> bool:
            r = viewer.get(f"/flows/{flow_id}/json")
            progress = r.json().get("current_progress") if r.status_code == 200 else None
            return progress is not None and progress["done"] == done

        wait_until(lambda: at(40), timeout=60, message="the step's progress never showed")
        list_page.page.goto(viewer.url + "/flows?tenant=initech")
        flow_page.page.goto(viewer.url + f"/flows/{flow_id}")
        row = list_page.page.locator(f"tr[data-flow-id='{flow_id}']")
        expect(row.locator(".flow-step")).to_contain_text("import_rows 40% (40/100) batch 1")
        expect(flow_page.page.locator("#current-step")).to_have_text(
            "import_rows 40% (40/100) batch 1"
        )
        for p in (list_page, flow_page):
            p.page.evaluate("window.__sameDocument = 42")
        (tmp_path / "gate.1").write_text("go")
        expect(row.locator(".flow-step")).to_contain_text("80% (80/100) batch 2", timeout=60_000)
        expect(flow_page.page.locator("#current-step")).to_contain_text("80%", timeout=60_000)
        (tmp_path / "gate.2").write_text("go")
        artifact = flow_page.page.locator("#artifacts tr.artifact-row[data-artifact='summary']")
        expect(artifact).to_contain_text('"note": "<b>not bold</b>"', timeout=60_000)
        assert flow_page.page.locator("#artifacts b").count() == 0  # text, not markup
        for p in (list_page, flow_page):  # updated in place: the same document, never reloaded
            assert p.page.evaluate("window.__sameDocument") == 42
            assert_clean(p)
        flow_page.shot("artifact")
        assert writer.wait(60) == 0
    finally:
        list_page.close()
        flow_page.close()
        for name in ("gate.1", "gate.2"):
            if not (tmp_path / name).exists():
                (tmp_path / name).write_text("stop")
        writer.stop()
