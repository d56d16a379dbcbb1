"""The viewer's options: `dashfrog ui` flags over `DASHFROG_UI_*` variables over defaults.

Bound to a loopback address the viewer is open to the local user (and guarded against DNS
rebinding by a Host check); bound to any other address it refuses to start unless an access
token is set, because the pages show customer data.
"""

from __future__ import annotations

import ipaddress
import os
import re
from dataclasses import dataclass

TOKEN_ENV = "DASHFROG_UI_TOKEN"  # access token: required off loopback, checked when set
LINK_KEY_ENV = "DASHFROG_UI_LINK_KEY"  # HMAC key of the signed tenant status links
TRACE_URL_ENV = "DASHFROG_UI_TRACE_URL"  # e.g. http://localhost:16686/trace/{trace_id}
BASE_URL_ENV = "DASHFROG_UI_BASE_URL"  # what `dashfrog ui link` prints links under

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8080
MIN_SECRET = 16  # characters, for the token and the link key (like DASHFROG_PROPAGATION_KEY)
_TRACE_FIELDS = re.compile(r"\{(\w*)\}")


def env(name: str) -> str | None:
    value = os.environ.get(name)
    return value.strip() if value is not None and value.strip() else None


def is_loopback(host: str) -> bool:
    """True for localhost and loopback IP literals (127.0.0.0/8, ::1)."""
    name = host.strip().strip("[]").lower()
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def _secret(name: str, value: str | None) -> str | None:
    if value is not None and len(value) < MIN_SECRET:
        raise ValueError(f"{name} must be at least {MIN_SECRET} characters long")
    return value


def check_trace_url(template: str | None) -> str | None:
    """A trace link template must be http(s) and may only use ``{trace_id}``."""
    if template is None:
        return None
    if not template.startswith(("http://", "https://")):
        raise ValueError(
            f"{TRACE_URL_ENV} must start with http:// or https://, got {template!r} "
            "(e.g. http://localhost:16686/trace/{trace_id})"
        )
    unknown = {f for f in _TRACE_FIELDS.findall(template) if f != "trace_id"}
    if unknown or "{trace_id}" not in template:
        raise ValueError(
            f"{TRACE_URL_ENV} must contain {{trace_id}} and no other field, got {template!r}"
        )
    return template


@dataclass(frozen=True)
class UIConfig:
    store: str  # a flow store path (or a backend URL the store package opens)
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    token: str | None = None
    link_key: str | None = None
    trace_url: str | None = None
    page_size: int = 50
    poll_s: float = 2.0  # how often an open page asks for changes

    @classmethod
    def from_env(
        cls, store: str, *, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT
    ) -> UIConfig:
        """Read the `DASHFROG_UI_*` variables; a bad value is a `ValueError` naming it."""
        config = cls(
            store=store,
            host=host,
            port=port,
            token=_secret(TOKEN_ENV, env(TOKEN_ENV)),
            link_key=_secret(LINK_KEY_ENV, env(LINK_KEY_ENV)),
            trace_url=check_trace_url(env(TRACE_URL_ENV)),
        )
        config.check_bind()
        return config

    def check_bind(self) -> None:
        if not 0 < self.port < 65536:
            raise ValueError(f"--port must be 1-65535, got {self.port}")
        if not is_loopback(self.host) and self.token is None:
            raise ValueError(
                f"refusing to serve flows on {self.host}: off loopback the viewer needs an "
                f"access token; set {TOKEN_ENV} (at least {MIN_SECRET} characters) or bind "
                f"--host 127.0.0.1"
            )
