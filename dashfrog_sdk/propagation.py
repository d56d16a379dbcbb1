"""Where flow baggage crosses a process boundary: outgoing allowlist, incoming trust, signing.

`DashfrogBaggagePropagator` replaces the W3C baggage propagator in the global composite
propagator. It differs from the stock one in four ways:

* **Outgoing allowlist.** dashfrog.* members are injected only when the destination host (set
  by the client integrations through :func:`set_next_destination`) matches
  `DASHFROG_PROPAGATE_TO`; internal hosts by default. Tenant ids never reach `api.stripe.com`.
  An inject with no known destination (a hand-written transport) carries no dashfrog members
  unless wrapped in ``with destination("service-b"):``; task queues use :data:`TASK_QUEUE`.
* **Exact values.** Values are percent-encoded per the W3C spec (`%20`, not `+`), so unicode,
  spaces, `+`, `,`, `;` and `=` round-trip byte-identical. (The stock propagator uses
  `quote_plus`, which other-language peers decode differently.)
* **Limits.** 8192 bytes, 180 members, 4096 bytes per member: what does not fit is left out
  (flow identity first, labels and foreign members last) with one warning and a counter.
* **Signing.** With `DASHFROG_PROPAGATION_KEY`, outgoing dashfrog members are HMAC-signed
  (`dashfrog.sig`); incoming dashfrog members without a valid signature are dropped and counted.
"""

from __future__ import annotations

import base64
import contextvars
import hashlib
import hmac
import ipaddress
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from fnmatch import fnmatchcase
from functools import lru_cache
from typing import Any
from urllib.parse import quote, unquote, urlsplit

from opentelemetry import baggage as otel_baggage
from opentelemetry.context import Context
from opentelemetry.propagators.textmap import (
    CarrierT,
    Getter,
    Setter,
    TextMapPropagator,
    default_getter,
    default_setter,
)

from dashfrog_sdk import conventions as c
from dashfrog_sdk import diagnostics
from dashfrog_sdk.context import with_baggage_members

HEADER = "baggage"
INTERNAL = "internal"
_INTERNAL_SUFFIXES = (".local", ".internal", ".svc", ".cluster.local", ".localhost")
# Members that identify the flow go first, so limits cut labels before identity.
_PRIORITY = (
    c.FLOW_ID,
    c.FLOW_NAME,
    c.TENANT,
    c.FLOW_PARENT_ID,
    c.FLOW_TRACE_ID,
    c.FLOW_SPAN_ID,
    c.FLOW_START_TIME,
    c.FLOW_TIMEOUT,
)
_SIG_RESERVE = len(c.BAGGAGE_SIGNATURE) + 1 + 43 + 1  # "dashfrog.sig=" + base64(sha256) + ","

_destination: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "dashfrog_destination", default=None
)
# Set by the client integrations from their request hooks, for the very next inject in this
# context only: the inject consumes it. requests and httpx have no hook that runs after the
# inject on every path (not on a connection error), so a destination left set would apply to
# a later, unrelated inject.
_next_destination: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "dashfrog_next_destination", default=None
)
# The destination of a task message: our own broker and workers, whatever DASHFROG_PROPAGATE_TO
# says about hosts (it is not a host name: it contains characters no host name has).
TASK_QUEUE = "<task-queue>"


def is_internal_host(host: str) -> bool:
    """Loopback, private and link-local IPs, single-label names and *.local/.internal/.svc."""
    host = host.strip("[]").lower().rstrip(".")
    if not host:
        return False
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        if any(ch in host for ch in ":[]/@ "):
            return False  # not a hostname (a mangled address): never "single-label internal"
        return "." not in host or host.endswith(_INTERNAL_SUFFIXES)
    return ip.is_loopback or ip.is_private or ip.is_link_local


@lru_cache(maxsize=1024)
def host_allowed(host: str, patterns: tuple[str, ...]) -> bool:
    """Whether `host` matches one of `patterns` (shell-style, whole host, case-insensitive)."""
    host = host.strip("[]").lower().rstrip(".")
    for pattern in patterns:
        if pattern == INTERNAL:
            if is_internal_host(host):
                return True
        elif fnmatchcase(host, pattern):
            return True
    return False


def host_of(url_or_host: str) -> str:
    """The host of a URL or of `host[:port]` (`[v6]:port` included), lowercased."""
    if "//" not in url_or_host:
        if url_or_host.count(":") > 1 and not url_or_host.startswith("["):
            return url_or_host.lower()  # a bare IPv6 address
        url_or_host = "//" + url_or_host
    try:
        return urlsplit(url_or_host).hostname or ""
    except ValueError:  # malformed: matches no pattern, so nothing is sent
        return ""


def set_destination(url_or_host: str | None) -> contextvars.Token[str | None]:
    """Declare where the next inject in this context goes (client integrations call this)."""
    return _destination.set(host_of(url_or_host) if url_or_host else None)


def set_next_destination(url_or_host: str) -> None:
    """Declare where the next inject in this context goes; that inject consumes it.

    Client integrations call this from request hooks (which run just before the inject);
    task-queue producers pass :data:`TASK_QUEUE`.
    """
    _next_destination.set(url_or_host if url_or_host == TASK_QUEUE else host_of(url_or_host))


def clear_next_destination() -> None:
    """Forget a destination no inject consumed (e.g. a publish that injected nothing)."""
    if _next_destination.get() is not None:
        _next_destination.set(None)


def reset_destination(token: contextvars.Token[str | None]) -> None:
    try:
        _destination.reset(token)
    except ValueError:  # reset from another context: harmless, the next request sets it again
        _destination.set(None)


@contextmanager
def destination(url_or_host: str) -> Iterator[None]:
    """Inject dashfrog baggage for a request to `url_or_host` made by code we do not wrap.

    Example:
        >>> with destination("http://billing:8080"):
        ...     inject(headers)
    """
    token = set_destination(url_or_host)
    try:
        yield
    finally:
        reset_destination(token)


def encode_member(key: str, value: object) -> str:
    return f"{quote(key, safe='')}={quote(str(value), safe='')}"


def sign(members: Sequence[tuple[str, str]], key: bytes) -> str:
    """HMAC-SHA256 over the dashfrog members, in a canonical (sorted) order."""
    text = "\n".join(f"{k}={v}" for k, v in sorted(members))
    digest = hmac.new(key, text.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def parse_header(value: str) -> dict[str, str]:
    """Parse a W3C baggage header, within the W3C limits; properties are ignored."""
    members: dict[str, str] = {}
    if len(value.encode()) > c.BAGGAGE_MAX_BYTES:
        diagnostics.report(
            "baggage.incoming_too_large",
            "dashfrog_sdk: incoming baggage header over %d bytes ignored",
            c.BAGGAGE_MAX_BYTES,
        )
        return members
    for raw in value.split(","):
        if len(members) >= c.BAGGAGE_MAX_MEMBERS:
            break
        item = raw.split(";", 1)[0].strip()
        name, sep, val = item.partition("=")
        if not sep or not name.strip() or len(raw) > c.BAGGAGE_MAX_MEMBER_BYTES:
            continue
        members[unquote(name.strip())] = unquote(val.strip())
    return members


class DashfrogBaggagePropagator(TextMapPropagator):
    """W3C baggage with dashfrog's allowlist, exact encoding, limits and signing."""

    def __init__(self, patterns: tuple[str, ...] = (INTERNAL,), key: bytes | None = None) -> None:
        self.patterns = patterns
        self.key = key

    @property
    def fields(self) -> set[str]:
        return {HEADER}

    # -- extract ------------------------------------------------------------------------
    def extract(
        self,
        carrier: CarrierT,
        context: Context | None = None,
        getter: Getter[CarrierT] = default_getter,
    ) -> Context:
        ctx = context if context is not None else Context()
        values = getter.get(carrier, HEADER)
        if not values:
            return ctx
        members = parse_header(",".join(values))
        if self.key is not None and any(k.startswith(c.PREFIX) for k in members):
            members = self._verified(members)
        members.pop(c.BAGGAGE_SIGNATURE, None)
        return with_baggage_members(ctx, members)

    def _verified(self, members: dict[str, str]) -> dict[str, str]:
        assert self.key is not None
        given = members.get(c.BAGGAGE_SIGNATURE, "")
        ours = [
            (k, v)
            for k, v in members.items()
            if k.startswith(c.PREFIX) and k != c.BAGGAGE_SIGNATURE
        ]
        if given and hmac.compare_digest(given, sign(ours, self.key)):
            return members
        diagnostics.report(
            "baggage.rejected",
            "dashfrog_sdk: incoming dashfrog baggage %s; dropped (DASHFROG_PROPAGATION_KEY is set)",
            "has an invalid signature" if given else "is not signed",
        )
        return {k: v for k, v in members.items() if not k.startswith(c.PREFIX)}

    # -- inject -------------------------------------------------------------------------
    def inject(
        self,
        carrier: CarrierT,
        context: Context | None = None,
        setter: Setter[CarrierT] = default_setter,
    ) -> None:
        dest = _next_destination.get()
        if dest is not None:  # consumed before anything else, even when there is no baggage
            _next_destination.set(None)
        else:
            dest = _destination.get()
        bag = otel_baggage.get_all(context)
        if not bag:
            return
        send_ours = dest is not None and (dest == TASK_QUEUE or host_allowed(dest, self.patterns))
        header = self.header_for(bag, send_ours)
        if header:
            setter.set(carrier, HEADER, header)

    def header_for(self, bag: Mapping[str, object], send_ours: bool = True) -> str:
        """The baggage header for `bag`, within the W3C limits, signed when a key is set."""
        ours = [(k, str(bag[k])) for k in _PRIORITY if k in bag]
        ours += [
            (k, str(v)) for k, v in bag.items() if k.startswith(c.PREFIX) and k not in _PRIORITY
        ]
        foreign = [(k, str(v)) for k, v in bag.items() if not k.startswith(c.PREFIX)]
        if not send_ours:
            if ours:
                diagnostics.count("baggage.withheld")
            ours = []
        budget = c.BAGGAGE_MAX_BYTES - (_SIG_RESERVE if self.key and ours else 0)
        max_members = c.BAGGAGE_MAX_MEMBERS - (1 if self.key and ours else 0)
        parts: list[str] = []
        sent: list[tuple[str, str]] = []
        size, dropped = 0, []
        for key, value in (*ours, *foreign):
            encoded = encode_member(key, value)
            cost = len(encoded) + (1 if parts else 0)
            if (
                len(encoded) > c.BAGGAGE_MAX_MEMBER_BYTES
                or size + cost > budget
                or len(parts) >= max_members
            ):
                dropped.append(key)
                continue
            parts.append(encoded)
            size += cost
            if key.startswith(c.PREFIX):
                sent.append((key, value))
        if dropped:
            diagnostics.report(
                "baggage.dropped",
                "dashfrog_sdk: baggage over the W3C limits (8192 bytes, 180 members, 4096 bytes "
                "a member); not propagated: %s (they stay on this service's spans)",
                ", ".join(dropped[:10]) + (" ..." if len(dropped) > 10 else ""),
                n=len(dropped),
            )
        if self.key is not None and sent:
            parts.append(encode_member(c.BAGGAGE_SIGNATURE, sign(sent, self.key)))
        return ",".join(parts)


def strip_dashfrog_members(header: str) -> str:
    """`header` without its dashfrog.* members (servers that do not trust incoming baggage)."""
    kept = [
        item
        for item in header.split(",")
        if not unquote(item.split("=", 1)[0].strip()).startswith(c.PREFIX)
    ]
    return ",".join(kept).strip(",")


def build_global_propagator(patterns: tuple[str, ...], key: bytes | None, names: str | None) -> Any:
    """The composite propagator from OTEL_PROPAGATORS, with ours in place of `baggage`."""
    from opentelemetry.propagators.composite import CompositePropagator
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    ours = DashfrogBaggagePropagator(patterns, key)
    chosen: list[TextMapPropagator] = []
    for name in (names or "tracecontext,baggage").split(","):
        name = name.strip().lower()
        if name in ("baggage", "none", ""):
            continue
        if name == "tracecontext":
            chosen.append(TraceContextTextMapPropagator())
            continue
        from importlib.metadata import entry_points

        found = list(entry_points(group="opentelemetry_propagator", name=name))
        if not found:
            raise ValueError(
                f"OTEL_PROPAGATORS names an unknown propagator {name!r}; installed: tracecontext, "
                "baggage and any opentelemetry-propagator-* package's names"
            )
        chosen.extend(ep.load()() for ep in found)
    chosen.append(ours)
    return CompositePropagator(chosen)
