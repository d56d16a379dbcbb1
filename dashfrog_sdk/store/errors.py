"""What the flow store's query API raises, whichever backend answers."""

from __future__ import annotations


class StoreError(Exception):
    """The store cannot be read (missing, corrupt, unreachable, or not a dashfrog flow store)."""


class StoreNotFoundError(StoreError):
    """No store file at the given path."""


class FlowNotFoundError(StoreError, LookupError):
    """No flow with that id (or id prefix) in the store."""
