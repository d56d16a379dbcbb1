"""Flow, trace and span ids from a random source that the application's seeding cannot touch.

The global `random` module is the application's: a service that calls `random.seed(42)` at
start-up (for reproducible tests or simulations) would make every process draw the same flow,
trace and span ids, and flows and steps would overwrite each other in the store. So ids come from
a private `random.Random`, seeded from `os.urandom` at import and again in every forked child
(a forked child inherits the parent's generator state, so without it parent and child would
repeat each other's ids). Drawing from it costs what `random.getrandbits` costs (one Mersenne
Twister call, no system call), unlike `os.urandom` per id; ids need uniqueness, not secrecy.
"""

from __future__ import annotations

import random

from opentelemetry import trace
from opentelemetry.sdk.trace.id_generator import IdGenerator

from dashfrog_sdk import _fork

_source = random.Random()  # seeded from os.urandom
_bits = _source.getrandbits
_fork.in_child(_source.seed)  # seed() with no argument reads os.urandom again

__all__ = ["PrivateIdGenerator", "flow_id"]


def flow_id() -> str:
    """32 lowercase hex characters."""
    return f"{_bits(128):032x}"


class PrivateIdGenerator(IdGenerator):
    """OTel's `RandomIdGenerator`, drawing from the private source instead of the global one;
    given to the TracerProvider that dashfrog creates (an application's own provider keeps
    its own generator)."""

    def generate_span_id(self) -> int:
        span_id = _bits(64)
        while span_id == trace.INVALID_SPAN_ID:
            span_id = _bits(64)
        return span_id

    def generate_trace_id(self) -> int:
        trace_id = _bits(128)
        while trace_id == trace.INVALID_TRACE_ID:
            trace_id = _bits(128)
        return trace_id
