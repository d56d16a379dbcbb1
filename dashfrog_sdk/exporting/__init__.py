"""Reliable OTLP export: bounded backlogs with retry, exit handling, and `stats()`.

* :mod:`.pipeline`: the batch processor core that keeps data through collector outages;
* :mod:`.otlp`: the OTLP exporters, span / log processors and metric reader built on it;
* :mod:`.stats`: exported / dropped / failed counts per signal, the once-per-outage warning;
* :mod:`.exit`: SIGTERM, and flows still open when the process exits.
"""

from __future__ import annotations

from dashfrog_sdk.exporting.counts import stats

__all__ = ["stats"]
