"""The viewer as a Starlette application: read-only pages over the flow store.

Security rules (README, "Flow viewer"): only GET and HEAD are served; every page carries a
strict Content-Security-Policy (scripts and styles from this origin only, no inline script,
no eval); Jinja2 autoescaping escapes every store string in text and attributes, and Mermaid
text goes through render.mermaid.text(); with an access token set, every page but the signed
tenant pages, /healthz and the static files needs it; without one (loopback only) the Host
header must name this machine, so a page on another site cannot reach the viewer through DNS
rebinding.
"""

from __future__ import annotations

import contextlib
import hmac
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from importlib import resources
from typing import Any
from urllib.parse import quote, urlencode

import jinja2
from markupsafe import Markup
from starlette.applications import Starlette
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from dashfrog_sdk import conventions as c
from dashfrog_sdk.render import _fmt
from dashfrog_sdk.render.mermaid import sequence_diagram
from dashfrog_sdk.store import FlowDetail, FlowNotFoundError, StoreError, StoreNotFoundError
from dashfrog_sdk.store.model import ns_to_datetime
from dashfrog_sdk.ui import links, views
from dashfrog_sdk.ui.reader import Reader, StoreReader
from dashfrog_sdk.ui.rows import RowCache
from dashfrog_sdk.ui.settings import UIConfig, is_loopback

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; font-src 'self'; base-uri 'none'; form-action 'self'; "
    "frame-ancestors 'none'"
)
# Mermaid draws its SVG with a <style> element and style attributes; the flow page alone lets
# styles (never scripts) be inline so the diagram keeps its layout and colours.
CSP_DIAGRAM = CSP.replace("style-src 'self'", "style-src 'self' 'unsafe-inline'")
TOKEN_COOKIE = "dashfrog_ui_token"
OPEN_PATHS = ("/static/", "/status", "/healthz", "/favicon.ico")


def _static_dir() -> str:
    return str(resources.files("dashfrog_sdk.ui") / "static")


def _templates() -> Jinja2Templates:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("dashfrog_sdk.ui", "templates"),
        autoescape=True,  # every {{ }} is HTML-escaped, quotes included (safe in attributes)
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        # The templates are package files that change only with a new release: without this,
        # every answer stat()s its template files to see whether they changed (py-spy on a
        # live-polling viewer: about 1 % of its CPU).
        auto_reload=False,
    )
    env.filters.update(
        duration=_fmt.duration,
        utc=_fmt.utc,
        iso=lambda ns: "" if ns is None else _iso(ns),
        kv=_fmt.kv,
        error=lambda o: _fmt.error_text(o.error_type, o.error_message),
        pct=lambda x: f"{100 * x:.1f} %",
        symbol=_fmt.symbol,
        q=lambda v: quote(str(v), safe=""),
        when=_when,
        artifact=lambda value: _fmt.artifact_json(value, indent=2),
    )
    return Jinja2Templates(env=env)


def _when(ns: int | None) -> Markup:
    """``<time datetime=ISO>UTC text</time>`` from one conversion (app.js shows local time)."""
    moment = ns_to_datetime(ns)
    if moment is None:
        return Markup("-")
    text = moment.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] + " UTC"
    return Markup(f'<time datetime="{moment.isoformat()}">{text}</time>')  # digits only


def _iso(ns: int) -> str:
    moment = ns_to_datetime(ns)
    return moment.isoformat() if moment else ""


class Guard:
    """Read-only, token and security headers, as one pure ASGI middleware (streaming-safe)."""

    def __init__(self, app: ASGIApp, token: str | None) -> None:
        self.app = app
        self.token = token

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if scope["method"] not in ("GET", "HEAD"):
            response: Response = PlainTextResponse(
                "read-only viewer", status_code=405, headers={"Allow": "GET, HEAD"}
            )
            await self._secured(response)(scope, receive, send)
            return
        path: str = scope["path"]
        if self.token is not None and not path.startswith(OPEN_PATHS):
            request = Request(scope)
            given = request.query_params.get("token")
            if given is not None and hmac.compare_digest(given.encode(), self.token.encode()):
                # The token once in the address bar becomes a cookie, and leaves the URL.
                rest = [(k, v) for k, v in request.query_params.multi_items() if k != "token"]
                target = path + ("?" + urlencode(rest) if rest else "")
                response = RedirectResponse(target, status_code=303)
                response.set_cookie(
                    TOKEN_COOKIE, self.token, httponly=True, samesite="strict", path="/"
                )
                await self._secured(response)(scope, receive, send)
                return
            if not self._authorised(Headers(scope=scope), request.cookies.get(TOKEN_COOKIE)):
                response = PlainTextResponse(
                    "access token required: open this viewer's URL with ?token=... "
                    "(the DASHFROG_UI_TOKEN it was started with)",
                    status_code=401,
                    headers={"WWW-Authenticate": "Bearer"},
                )
                await self._secured(response)(scope, receive, send)
                return

        async def send_secured(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                names = {k.lower() for k, _ in headers}
                for key, value in _security_headers().items():
                    if key.encode() not in names:
                        headers.append((key.encode(), value.encode()))
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_secured)

    def _authorised(self, headers: Headers, cookie: str | None) -> bool:
        assert self.token is not None
        expected = self.token.encode()
        auth = headers.get("authorization", "")
        if auth.lower().startswith("bearer "):
            return hmac.compare_digest(auth[7:].strip().encode(), expected)
        return cookie is not None and hmac.compare_digest(cookie.encode(), expected)

    @staticmethod
    def _secured(response: Response) -> Response:
        for key, value in _security_headers().items():
            response.headers.setdefault(key, value)
        return response


def _security_headers() -> dict[str, str]:
    return {
        "content-security-policy": CSP,
        "x-content-type-options": "nosniff",
        "x-frame-options": "DENY",
        "referrer-policy": "no-referrer",  # a signed status link must not leak in Referer
        "cross-origin-opener-policy": "same-origin",
        "cross-origin-resource-policy": "same-origin",
        "cache-control": "no-store",
    }


Handler = Callable[[Request], Awaitable[Response]]


def create_app(config: UIConfig, reader: Reader | None = None) -> Starlette:
    """The viewer for `config` (its store is opened on first use)."""
    reader = reader or Reader(config.store)
    templates = _templates()
    steps = views.StepCache()  # used on the store thread only
    feed = views.ChangeFeed(every_s=config.poll_s / 2)  # likewise
    table_rows = RowCache(templates.env)  # used on the event loop thread only
    poll_ms = int(config.poll_s * 1000)

    def page(
        request: Request, name: str, context: dict[str, Any], *, status: int = 200, csp: str = CSP
    ) -> Response:
        context.setdefault("nav", name.split(".")[0])
        context.setdefault("tenant_view", None)
        context.setdefault("poll_ms", poll_ms)
        context.setdefault("store_spec", config.store)
        context.setdefault("statuses", views.STATUSES)
        context.setdefault("windows", views.WINDOWS)
        response = templates.TemplateResponse(request, name, context, status_code=status)
        response.headers["content-security-policy"] = csp
        return response

    def error_page(request: Request, status: int, message: str) -> Response:
        return page(request, "error.html", {"message": message, "code": status}, status=status)

    def guarded(handler: Handler) -> Handler:
        """Store and query problems as a page that says what to do, never a traceback."""

        async def run(request: Request) -> Response:
            try:
                return await handler(request)
            except views.BadQuery as exc:
                return error_page(request, 400, str(exc))
            except links.LinkError as exc:
                return error_page(request, 403, str(exc))
            except FlowNotFoundError as exc:
                return error_page(request, 404, str(exc))
            except StoreNotFoundError:
                return error_page(
                    request,
                    503,
                    f"no flow store at {config.store} yet: run an instrumented program "
                    "(make demo) or pass --store PATH",
                )
            except StoreError as exc:
                return error_page(request, 503, str(exc))

        return run

    # -- operator pages ------------------------------------------------------------------------

    async def home(request: Request) -> Response:
        window = views.Window.parse(request.query_params, "1d")
        search = request.query_params.get("q", "")
        number = views.page_number(request.query_params)
        found = await reader.call(
            lambda s: views.tenants(s, window, search, number, config.page_size)
        )

        def page_url(n: int) -> str:
            params = {**window.params(), **({"q": search} if search else {}), "page": str(n)}
            return "/?" + urlencode(params)

        return page(
            request,
            "tenants.html",
            {
                "rows": found.rows,
                "found": found,
                "window": window,
                "q": search,
                "page_url": page_url,
            },
        )

    async def search(request: Request) -> Response:
        text = request.query_params.get("q", "").strip()
        if not text:
            return RedirectResponse("/", status_code=303)
        hexish = 4 <= len(text) <= 32 and all(ch in "0123456789abcdef" for ch in text.lower())
        if hexish:
            try:
                full = await reader.call(lambda s: s.resolve(text))
                return RedirectResponse(f"/flows/{quote(full, safe='')}", status_code=303)
            except FlowNotFoundError:
                pass
        return RedirectResponse("/?" + urlencode({"q": text}), status_code=303)

    def flows_context(
        q: views.FlowQuery, result: views.FlowPage, link: str = "", tenant_view: str | None = None
    ) -> dict[str, Any]:
        """The flows table's context; `link`: the signed tenant link's parameters and
        `tenant_view` its tenant, if any."""
        live = not q.before or any(f.status in c.OPEN for f in result.flows)
        seen = {"seen": str(result.cursor_ns)}
        if result.next_before and result.flows:  # a full page: older flows are not on it
            seen["floor"] = str(result.flows[-1].start_ns or 0)
        if result.next_deadline_ns:
            seen["deadline"] = str(result.next_deadline_ns)

        def page_url(**changes: str) -> str:
            if link:
                url = q.url("/status", changes, tenant=False)
                return url + ("&" if "?" in url else "?") + link
            return q.url("/flows", changes)

        def flow_url(flow_id: str) -> str:
            if link:
                return f"/status/flows/{quote(flow_id, safe='')}?{link}"
            return f"/flows/{quote(flow_id, safe='')}"

        return {
            "q": q,
            "page": result,
            "live": live and not link,
            "live_url": q.url("/flows/rows", seen),
            "page_url": page_url,
            "flow_url": flow_url,
            "row": lambda f: table_rows.row(f, result.where.get(f.id), flow_url(f.id), tenant_view),
        }

    async def flows(request: Request) -> Response:
        q = views.FlowQuery.parse(request.query_params, page_size=config.page_size)
        result = await reader.call(lambda s: views.list_flows(s, q, steps))
        return page(request, "flows.html", flows_context(q, result))

    async def rows(request: Request) -> Response:
        """The flows table body again, for the live update; 204 when nothing changed."""
        q = views.FlowQuery.parse(request.query_params, page_size=config.page_size)
        params = request.query_params
        seen = _int(params.get("seen"))
        deadline = _int(params.get("deadline"))
        floor = _int(params.get("floor"))
        check = seen and not (deadline and deadline <= time.time_ns())

        def read(s: StoreReader) -> views.FlowPage | None:
            # One trip to the store thread for both (each trip is a thread hand-off and a
            # wake-up of the event loop, a tenth of a fresh answer's cost).
            if check and feed.page_unchanged(s, q, seen, floor):
                return None
            return views.list_flows(s, q, steps)

        result = await reader.call(read)
        if result is None:
            return Response(status_code=204)
        return page(request, "_rows.html", flows_context(q, result))

    async def flow(request: Request) -> Response:
        stamp = time.time_ns()
        detail = await reader.call(lambda s: s.flow(request.path_params["flow_id"]))
        context = flow_context(detail)
        context["seen"] = stamp
        return page(request, "flow.html", context, csp=CSP_DIAGRAM)

    def flow_context(
        detail: FlowDetail, tenant_view: str | None = None, link: str = ""
    ) -> dict[str, Any]:
        trace_url = None
        if config.trace_url and detail.trace_id and _is_hex(detail.trace_id):
            trace_url = config.trace_url.replace("{trace_id}", detail.trace_id)
        children = detail.children
        if tenant_view is not None:
            children = [k for k in children if k.tenant == tenant_view]
        big = len(detail.steps) > views.BIG_DIAGRAM
        return {
            "f": detail,
            "bars": views.waterfall(detail),
            "children": children,
            "artifacts": views.artifacts(detail),
            "diagram": sequence_diagram(detail),
            "big_diagram": big,
            # Inline for flows of a readable size; a link to /json for the big ones.
            "as_json": "" if big else views.to_json(detail, indent=2),
            "trace_url": trace_url,
            "version": views.fingerprint(detail),
            "open": detail.status in c.OPEN,
            "tenant_view": tenant_view,
            "link": link,
        }

    async def flow_live(request: Request) -> Response:
        flow_id = request.path_params["flow_id"]
        seen = _int(request.query_params.get("seen"))
        stamp = 0

        def read(s: StoreReader) -> FlowDetail | None:
            nonlocal stamp
            if seen and feed.flow_unchanged(s, flow_id, seen):
                return None  # neither the flow nor a child flow was written
            stamp = time.time_ns()
            return feed.read_flow(s, flow_id)

        detail = await reader.call(read)  # one trip to the store thread (see rows())
        if detail is None or request.query_params.get("v") == views.fingerprint(detail):
            return Response(status_code=204)
        context = flow_context(detail)
        context["seen"] = stamp
        return page(request, "_flow_live.html", context, csp=CSP_DIAGRAM)

    async def flow_json(request: Request) -> Response:
        detail = await reader.call(lambda s: s.flow(request.path_params["flow_id"]))
        return Response(views.to_json(detail), media_type="application/json")

    async def stats(request: Request) -> Response:
        window = views.Window.parse(request.query_params, "7d")
        tenant = request.query_params.get("tenant") or None
        data, days = await reader.call(lambda s: views.stats_rows(s, window, tenant=tenant))
        return page(
            request, "stats.html", {"rows": data, "days": days, "window": window, "tenant": tenant}
        )

    # -- the signed tenant pages ---------------------------------------------------------------

    def signed(request: Request) -> tuple[str, str]:
        params = request.query_params
        tenant = links.verify(
            config.link_key, params.get("tenant"), params.get("expires"), params.get("sig")
        )
        return tenant, urlencode(
            {"tenant": tenant, "expires": params["expires"], "sig": params["sig"]}
        )

    async def status_page(request: Request) -> Response:
        tenant, link = signed(request)
        q = views.FlowQuery.parse(request.query_params, page_size=config.page_size, tenant=tenant)
        window = views.Window.parse(request.query_params, "7d")
        result = await reader.call(lambda s: views.list_flows(s, q, steps))
        data, days = await reader.call(lambda s: views.stats_rows(s, window, tenant=tenant))
        context = flows_context(q, result, link, tenant)
        expires = ns_to_datetime(int(request.query_params["expires"]) * 1_000_000_000)
        context.update(
            {
                "tenant_view": tenant,
                "rows": data,
                "days": days,
                "window": window,
                "expires_iso": expires.isoformat() if expires else "",
            }
        )
        return page(request, "status.html", context)

    async def status_flow(request: Request) -> Response:
        tenant, link = signed(request)
        detail = await reader.call(lambda s: s.flow(request.path_params["flow_id"]))
        if detail.tenant != tenant:  # same answer as a missing flow: reveals nothing
            raise FlowNotFoundError("no such flow for this tenant")
        return page(request, "flow.html", flow_context(detail, tenant, link), csp=CSP_DIAGRAM)

    async def healthz(request: Request) -> Response:
        return PlainTextResponse("ok")

    async def not_found(request: Request, exc: Exception) -> Response:
        code = exc.status_code if isinstance(exc, HTTPException) else 500
        return error_page(request, code, "no such page" if code == 404 else "error")

    routes = [
        Route("/", guarded(home)),
        Route("/search", guarded(search)),
        Route("/flows", guarded(flows)),
        Route("/flows/rows", guarded(rows)),
        Route("/flows/{flow_id}", guarded(flow)),
        Route("/flows/{flow_id}/live", guarded(flow_live)),
        Route("/flows/{flow_id}/json", guarded(flow_json)),
        Route("/stats", guarded(stats)),
        Route("/status", guarded(status_page)),
        Route("/status/flows/{flow_id}", guarded(status_flow)),
        Route("/healthz", healthz),
        Mount("/static", app=StaticFiles(directory=_static_dir()), name="static"),
    ]
    middleware = [Middleware(Guard, token=config.token)]
    if config.token is None:
        hosts = ["127.0.0.1", "localhost", "::1", "[::1]"]
        if config.host not in hosts:
            hosts.append(config.host)
        if is_loopback(config.host):
            middleware.append(Middleware(TrustedHostMiddleware, allowed_hosts=hosts))

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        reader.close()

    return Starlette(
        routes=routes,
        middleware=middleware,
        exception_handlers={404: not_found, 405: not_found},
        lifespan=lifespan,
    )


def _int(text: str | None) -> int:
    return int(text) if text and text.isdigit() else 0


def _is_hex(text: str) -> bool:
    return all(ch in "0123456789abcdef" for ch in text.lower())
