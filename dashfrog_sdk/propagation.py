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
  (`dashfrog.sig`, see :func:`sign`): the signature covers every dashfrog member and the time it
  was made; incoming dashfrog members without a valid, unexpired signature are dropped, counted.
* **Every hop.** A carrier that already holds dashfrog members (the headers of a redirect hop,
  copied by the HTTP client from the previous request) loses them when its destination is not
  allowed: each hop of a redirect chain is judged on its own host.

Other propagators named in OTEL_PROPAGATORS (jaeger, ottrace, ...) are wrapped by
:class:`ForeignBaggageGuard`: they never see dashfrog members on inject and cannot set them on
extract, so only the rules above let dashfrog members in or out.
"""

from __future__ import annotations

import base64
import contextvars
import hashlib
import hmac
import ipaddress
import json
import re
import socket
import time
from collections.abc import Iterator, Mapping, MutableMapping, Sequence
from contextlib import contextmanager
from fnmatch import fnmatchcase
from functools import lru_cache
from typing import Any
from urllib.parse import quote, unquote, urlsplit

from opentelemetry import baggage as otel_baggage
from opentelemetry import context as otel_context
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
# "dashfrog.sig=" + "v1." + unix seconds (up to 12 digits) + "." + base64url(sha256) + ","
_SIG_RESERVE = len(c.BAGGAGE_SIGNATURE) + 1 + 3 + 12 + 1 + 43 + 1
SIGNATURE_VERSION = "v1"
_SIGNATURE = re.compile(r"v1\.([0-9]{1,12})\.([A-Za-z0-9_-]{43})")
# Default of DASHFROG_PROPAGATION_MAX_AGE: a Celery task extracts its baggage when it runs, so the
# age of its signature is its countdown/ETA plus the queueing time; 7 days keeps tasks with long
# countdowns working while still bounding replay.
DEFAULT_MAX_AGE_S = 7 * 86400.0
# How far in the future a signature may be dated: clock skew between hosts.
CLOCK_SKEW_S = 300.0

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


NOWHERE = "none"
# What the C library's inet_aton (and so getaddrinfo, which every HTTP client here ends in)
# reads as an IPv4 literal: decimal (134744072), hex (0x08080808), octal (010.0.0.1) and short
# dotted forms (127.1). Only these characters; inet_aton itself ignores anything after a space.
_NUMERIC_HOST = re.compile(r"[0-9a-fx.]+")


def canonical_host(host: str) -> str:
    """`host` as the client will reach it: lowercased, and any IP literal in its standard form.

    `0x08080808`, `134744072` and `8.8.8.8` all become `8.8.8.8`; an IPv4-mapped IPv6 address
    becomes its IPv4 address. A name stays a name.
    """
    host = host.strip("[]").lower().rstrip(".")
    if _NUMERIC_HOST.fullmatch(host):
        try:
            return str(ipaddress.IPv4Address(socket.inet_aton(host)))
        except OSError:
            return host
    if ":" in host:
        try:
            ip = ipaddress.IPv6Address(host)
        except ValueError:
            return host
        return str(ip.ipv4_mapped or ip)
    return host


def is_internal_host(host: str) -> bool:
    """Loopback, private and link-local IPs, single-label names and *.local/.internal/.svc.

    A host any resolver reads as an IP literal (`0x7f000001`, `2130706433`) is judged as that IP.
    """
    host = canonical_host(host)
    if not host:
        return False
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        if any(ch in host for ch in ":[]/@ %"):
            return False  # not a hostname (a mangled address): never "single-label internal"
        return "." not in host or host.endswith(_INTERNAL_SUFFIXES)
    return ip.is_loopback or ip.is_private or ip.is_link_local


@lru_cache(maxsize=1024)
def host_allowed(host: str, patterns: tuple[str, ...]) -> bool:
    """Whether `host` matches one of `patterns` (shell-style, whole host, case-insensitive).

    `internal` matches internal hosts (:func:`is_internal_host`); `none` matches nothing.
    Patterns are matched on :func:`canonical_host`, so `10.*` cannot be dodged by `0xa000001`.
    """
    host = canonical_host(host)
    if not host:
        return False
    for pattern in patterns:
        if pattern == NOWHERE:
            continue
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


def _mac(members: Sequence[tuple[str, str]], timestamp: str, key: bytes) -> str:
    # JSON (all non-ASCII escaped) of [version, time, sorted [key, value] pairs]: every string is
    # quoted and escaped, so no choice of keys and values can read as another set of members.
    canonical = json.dumps(
        [SIGNATURE_VERSION, timestamp, sorted([k, v] for k, v in members)],
        ensure_ascii=True,
        separators=(",", ":"),
    )
    digest = hmac.new(key, canonical.encode("ascii"), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).decode("ascii").rstrip("=")


def sign(members: Sequence[tuple[str, str]], key: bytes, now: float | None = None) -> str:
    """The `dashfrog.sig` value for `members`: ``v1.<unix seconds>.<mac>``.

    `mac` is base64url (unpadded) HMAC-SHA256, under `key`, of the JSON text
    ``["v1","<unix seconds>",[["<key>","<value>"],...]]`` (members sorted, ASCII-escaped, no
    spaces). It covers every dashfrog member sent and the time of signing.
    """
    timestamp = str(int(time.time() if now is None else now))
    return f"{SIGNATURE_VERSION}.{timestamp}.{_mac(members, timestamp, key)}"


def _member_name(raw: str) -> str:
    """The decoded name of one raw list member, as :func:`parse_header` reads it."""
    return unquote(raw.split(";", 1)[0].partition("=")[0].strip())


def _members(value: str) -> list[tuple[str, str, str]]:
    """(name, value, raw text) of each list member of a baggage header, within the W3C limits."""
    if len(value.encode("utf-8", "surrogatepass")) > c.BAGGAGE_MAX_BYTES:
        diagnostics.report(
            "baggage.incoming_too_large",
            "dashfrog_sdk: incoming baggage header over %d bytes ignored",
            c.BAGGAGE_MAX_BYTES,
        )
        return []
    members: list[tuple[str, str, str]] = []
    for raw in value.split(","):
        if len(members) >= c.BAGGAGE_MAX_MEMBERS:
            break
        item = raw.split(";", 1)[0].strip()
        name, sep, val = item.partition("=")
        if not sep or not name.strip() or len(raw) > c.BAGGAGE_MAX_MEMBER_BYTES:
            continue
        members.append((unquote(name.strip()), unquote(val.strip()), raw))
    return members


def parse_header(value: str) -> dict[str, str]:
    """Parse a W3C baggage header, within the W3C limits; properties are ignored."""
    return {name: val for name, val, _ in _members(value)}


class DashfrogBaggagePropagator(TextMapPropagator):
    """W3C baggage with dashfrog's allowlist, exact encoding, limits and signing."""

    def __init__(
        self,
        patterns: tuple[str, ...] = (INTERNAL,),
        key: bytes | None = None,
        max_age_s: float | None = DEFAULT_MAX_AGE_S,
    ) -> None:
        self.patterns = patterns
        self.key = key
        self.max_age_s = max_age_s  # None: signatures never expire

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
        parsed = _members(",".join(values))
        members = {name: val for name, val, _ in parsed}
        if self.key is not None and any(k.startswith(c.PREFIX) for k in members):
            refusal = self._refusal(parsed, members)
            if refusal is not None:
                kind, why = refusal
                diagnostics.report(
                    kind,
                    "dashfrog_sdk: incoming dashfrog baggage %s; its dashfrog members were "
                    "dropped (DASHFROG_PROPAGATION_KEY is set)",
                    why,
                )
                members = {k: v for k, v in members.items() if not k.startswith(c.PREFIX)}
        members.pop(c.BAGGAGE_SIGNATURE, None)
        return with_baggage_members(ctx, members)

    def _refusal(
        self, parsed: list[tuple[str, str, str]], members: dict[str, str]
    ) -> tuple[str, str] | None:
        """Why the dashfrog members of an incoming header are refused: (counter, reason)."""
        assert self.key is not None
        ours = [(k, v, raw) for k, v, raw in parsed if k.startswith(c.PREFIX)]
        given = members.get(c.BAGGAGE_SIGNATURE)
        if given is None:
            return "baggage.rejected", "is not signed"
        match = _SIGNATURE.fullmatch(given)
        if match is None:
            return "baggage.rejected", "has a malformed signature"
        # Signed members must be exactly as we write them (no second spelling of the same text,
        # such as %2c for %2C, no properties, no repeats): then any change to a signed header is
        # a change to what the MAC covers.
        if len({k for k, _, _ in ours}) != len(ours) or any(
            raw != encode_member(k, v) for k, v, raw in ours
        ):
            return "baggage.rejected", "is not in canonical form"
        timestamp, mac = match.groups()
        signed = [(k, v) for k, v, _ in ours if k != c.BAGGAGE_SIGNATURE]
        expected = _mac(signed, timestamp, self.key)
        if not hmac.compare_digest(mac.encode("ascii"), expected.encode("ascii")):
            return "baggage.rejected", "has an invalid signature"
        age = time.time() - int(timestamp)
        if age < -CLOCK_SKEW_S:
            return "baggage.expired", "is signed in the future (clock skew over 5 minutes)"
        if self.max_age_s is not None and age > self.max_age_s:
            return (
                "baggage.expired",
                f"has a signature older than DASHFROG_PROPAGATION_MAX_AGE ({self.max_age_s:g} s)",
            )
        return None

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
        send_ours = dest is not None and (dest == TASK_QUEUE or host_allowed(dest, self.patterns))
        if not send_ours and isinstance(carrier, MutableMapping):
            _withhold_carried(carrier, dest)
        bag = otel_baggage.get_all(context)
        if not bag:
            return
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


def _withhold_carried(carrier: MutableMapping[Any, Any], dest: str | None) -> None:
    """Remove dashfrog members the carrier already holds, for a destination that gets none.

    HTTP clients copy the headers of a request into its redirect: without this, the flow sent to
    an allowed host would follow a 302 to any host.
    """
    header = carrier.get(HEADER)
    if not isinstance(header, str) or c.PREFIX not in unquote(header):
        return
    kept = strip_dashfrog_members(header)
    if kept == header:
        return
    if kept:
        carrier[HEADER] = kept
    else:
        del carrier[HEADER]
    diagnostics.report(
        "baggage.redirect_withheld",
        "dashfrog_sdk: a request to %s (a redirect hop, or headers copied by hand) carried "
        "dashfrog baggage; removed, the host is not in DASHFROG_PROPAGATE_TO",
        dest or "an undeclared destination",
    )


def strip_dashfrog_members(header: str) -> str:
    """`header` without its dashfrog.* members (servers that do not trust incoming baggage).

    Every other member is kept byte for byte; a header without dashfrog members is returned
    as it is.
    """
    items = header.split(",")
    kept = [item for item in items if not _member_name(item).startswith(c.PREFIX)]
    if len(kept) == len(items):
        return header
    return ",".join(item for item in kept if item.strip())


class ForeignBaggageGuard(TextMapPropagator):
    """Another propagator from OTEL_PROPAGATORS (jaeger, ottrace, ...), kept off dashfrog members.

    Some of them carry baggage in their own headers (`uberctx-*`, `ot-baggage-*`): unguarded,
    they would send the tenant to every host and let any caller set it, whatever the allowlist,
    `trust_incoming` and signing say. On inject they see the baggage without dashfrog members;
    on extract, any dashfrog member they set is undone (counted: `baggage.foreign_dropped`).
    """

    def __init__(self, inner: TextMapPropagator, name: str) -> None:
        self.inner = inner
        self.name = name

    @property
    def fields(self) -> set[str]:
        return self.inner.fields

    def extract(
        self,
        carrier: CarrierT,
        context: Context | None = None,
        getter: Getter[CarrierT] = default_getter,
    ) -> Context:
        ctx = context if context is not None else Context()  # as every OTel propagator does
        result = self.inner.extract(carrier, ctx, getter)
        before = otel_baggage.get_all(ctx)
        after = otel_baggage.get_all(result)
        changed = [
            k for k, v in after.items() if k.startswith(c.PREFIX) and before.get(k, None) != v
        ]
        if not changed:
            return result
        for key in changed:
            if key in before:
                result = otel_baggage.set_baggage(key, before[key], result)
            else:
                result = otel_baggage.remove_baggage(key, result)
        diagnostics.report(
            "baggage.foreign_dropped",
            "dashfrog_sdk: the %s propagator brought dashfrog baggage (%s); ignored: only the "
            "W3C baggage header carries dashfrog members",
            self.name,
            ", ".join(sorted(changed)[:5]),
            n=len(changed),
        )
        return result

    def inject(
        self,
        carrier: CarrierT,
        context: Context | None = None,
        setter: Setter[CarrierT] = default_setter,
    ) -> None:
        bag = otel_baggage.get_all(context)
        ours = [k for k in bag if k.startswith(c.PREFIX)]
        if ours:
            ctx = context if context is not None else otel_context.get_current()
            for key in ours:
                ctx = otel_baggage.remove_baggage(key, ctx)
            context = ctx
        self.inner.inject(carrier, context, setter)


def build_global_propagator(
    patterns: tuple[str, ...],
    key: bytes | None,
    names: str | None,
    max_age_s: float | None = DEFAULT_MAX_AGE_S,
) -> Any:
    """The composite propagator from OTEL_PROPAGATORS, with ours in place of `baggage`.

    Every other propagator but `tracecontext` (which carries no baggage) is wrapped in
    :class:`ForeignBaggageGuard`.
    """
    from opentelemetry.propagators.composite import CompositePropagator
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    ours = DashfrogBaggagePropagator(patterns, key, max_age_s)
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
        chosen.extend(ForeignBaggageGuard(ep.load()(), name) for ep in found)
    chosen.append(ours)
    return CompositePropagator(chosen)
