"""Reliable OTLP export: bounded backlogs with retry, and `stats()`.

* :mod:`.pipeline`: the batch processor core that keeps data through collector outages;
* :mod:`.otlp`: the OTLP exporters, span / log processors and metric reader built on it;
* :mod:`.counts`: exported / dropped / failed counts per signal, the once-per-outage warning.

(SIGTERM and the flows still open at exit are flow lifecycle: dashfrog_sdk.lifecycle.exit.)
"""

from __future__ import annotations

from dashfrog_sdk.exporting.counts import stats

__all__ = ["stats"]
