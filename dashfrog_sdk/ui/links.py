"""Signed tenant status links: ``/status?tenant=T&expires=UNIX&sig=HMAC``.

The link is the credential: whoever holds it sees that tenant's flows until it expires, and
nothing else. The signature is HMAC-SHA256 over the tenant and the expiry with the operator's
key (``DASHFROG_UI_LINK_KEY``), so neither can be changed without the key.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from urllib.parse import urlencode

_DOMAIN = b"dashfrog-ui-status-link\x00"  # keeps these MACs apart from any other use of the key


class LinkError(Exception):
    """The link is not valid: tampered, expired, or links are not enabled."""


def signature(key: str, tenant: str, expires: int) -> str:
    message = _DOMAIN + tenant.encode("utf-8") + b"\x00" + str(int(expires)).encode("ascii")
    return hmac.new(key.encode("utf-8"), message, hashlib.sha256).hexdigest()


def query(key: str, tenant: str, expires: int) -> str:
    """The query string of a status link (tenant, expiry, signature)."""
    return urlencode(
        {"tenant": tenant, "expires": int(expires), "sig": signature(key, tenant, expires)}
    )


def make_link(
    base_url: str, key: str, tenant: str, valid_s: float, *, now: float | None = None
) -> str:
    if not tenant:
        raise ValueError("--tenant must be a non-empty tenant id")
    if valid_s <= 0:
        raise ValueError(f"--expires must be a positive duration (7d, 12h), got {valid_s} s")
    expires = int((time.time() if now is None else now) + valid_s)
    return f"{base_url.rstrip('/')}/status?{query(key, tenant, expires)}"


def verify(key: str | None, tenant: str | None, expires: str | None, sig: str | None) -> str:
    """The tenant of a valid link, or `LinkError` saying why not."""
    if key is None:
        raise LinkError("tenant links are not enabled on this viewer")
    if not tenant or not expires or not sig:
        raise LinkError("this link is incomplete")
    try:
        expiry = int(expires)
    except ValueError:
        raise LinkError("this link is not valid") from None
    if not hmac.compare_digest(signature(key, tenant, expiry), sig.lower()):
        raise LinkError("this link is not valid")
    if expiry < time.time():
        raise LinkError("this link has expired; ask for a new one")
    return tenant
