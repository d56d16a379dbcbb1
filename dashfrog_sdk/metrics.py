"""Per-tenant business metrics (`Counter`, `Histogram`, `Gauge`); the flow metrics every flow
records with no user code are built on them (`sinks.flow_metrics`, a lifecycle sink).

Attributes on the wire: ``dashfrog.tenant``, each declared label under its own name, and
``dashfrog.flow.name`` when a flow is current (its name, never its id: one series per flow
would be unbounded). Automatic metrics: ``dashfrog.flows.started`` and ``dashfrog.flows.ended``
(by flow name, tenant, and status for ended), histograms ``dashfrog.flow.duration`` and
``dashfrog.step.duration`` in seconds.

**Cardinality.** Tenants are unbounded. Each instrument keeps at most
``DASHFROG_METRICS_CARDINALITY_LIMIT`` (default 2000) attribute sets; measurements with a new
set beyond that are aggregated into one set ``{"otel.metric.overflow": true}`` (the OTel spec's
overflow rule: totals stay right, memory stays bounded). The OTel Python SDK 1.45 has no
cardinality limit of its own, so dashfrog applies it before recording.
"""

from __future__ import annotations

import re
import weakref
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from opentelemetry import metrics as otel_metrics
from opentelemetry.metrics import CallbackOptions, Meter, MeterProvider, Observation

from dashfrog_sdk import _fork, diagnostics, validation
from dashfrog_sdk import conventions as c
from dashfrog_sdk._runtime import runtime
from dashfrog_sdk._version import __version__
from dashfrog_sdk.context import flow_state

__all__ = ["Counter", "Gauge", "Histogram"]

OVERFLOW: Mapping[str, Any] = {"otel.metric.overflow": True}
# Seconds, from 5 ms to an hour: business flows run from a request to a nightly import.
DURATION_BUCKETS: tuple[float, ...] = (
    *(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600),
    *(1800, 3600),
)
_NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_./-]{0,254}$")  # the OTel instrument name syntax
_LABEL_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_.]*$")

Number = int | float
Callback = Callable[[], Iterable[tuple[Number, Mapping[str, Any]]] | Mapping[str, Number]]


class _Binding:
    """Which MeterProvider instruments record into; `setup()` moves it (and the generation)."""

    def __init__(self) -> None:
        self.provider: MeterProvider | None = None
        self.generation = 0
        self.limit = 2000
        self.instruments: weakref.WeakSet[_Instrument] = weakref.WeakSet()

    def meter(self) -> Meter:
        provider = self.provider or otel_metrics.get_meter_provider()
        return provider.get_meter(c.SCOPE_NAME, __version__)


_binding = _Binding()
_callback_gauges: list[Gauge] = []


def configure(provider: MeterProvider | None, cardinality_limit: int) -> None:
    """Called by `setup()`: record into `provider` (None: the global one) from now on."""
    _binding.provider = provider
    _binding.limit = cardinality_limit
    _binding.generation += 1
    for gauge in _callback_gauges:
        gauge._bind()  # observable: registered with the provider, read at collection


def _after_fork() -> None:
    # The child's metric storage starts empty (see exporting.otlp): so does its budget.
    for inst in list(_binding.instruments):
        inst._seen = set()


_fork.in_child(_after_fork)


class _Instrument(ABC):
    def __init__(
        self, name: str, labels: Sequence[str], unit: str, description: str, flow_name: bool
    ) -> None:
        where = f"metrics.{type(self).__name__}()"
        if not isinstance(name, str) or not _NAME_RE.match(name):
            raise ValueError(
                f"{where}: name must start with a letter and use letters, digits, '_', '.', '-' "
                f"or '/' (at most 255 characters), got {name!r}"
            )
        if isinstance(labels, str) or not all(isinstance(k, str) for k in labels):
            raise TypeError(f"{where}: labels must be a list of label names, got {labels!r}")
        for label in labels:
            if not _LABEL_RE.match(label) or label in ("tenant",) or label.startswith("dashfrog."):
                raise ValueError(
                    f"{where}: label {label!r} is not a valid label name: use letters, digits "
                    "and '_' (not 'tenant', which every measurement has already)"
                )
        if len(set(labels)) != len(labels):
            raise ValueError(f"{where}: labels has duplicates: {list(labels)!r}")
        for arg, value in (("unit", unit), ("description", description)):
            if not isinstance(value, str):
                raise TypeError(f"{where}: {arg} must be a string, got {value!r}")
        self.name, self.unit, self.description = name, unit, description
        self.labels: tuple[str, ...] = tuple(labels)
        self._label_set = frozenset(labels)
        self._flow_name = bool(flow_name)
        self._seen: set[tuple[Any, ...]] = set()
        self._generation = -1
        self._otel: Any = None
        _binding.instruments.add(self)

    def _instrument(self) -> Any:
        if self._generation != _binding.generation:
            if not runtime.configured:
                runtime.ensure()  # the first measurement configures, as the first flow does
            self._bind()
        return self._otel

    def _bind(self) -> None:
        self._otel = self._create(_binding.meter())
        self._generation = _binding.generation

    @abstractmethod
    def _create(self, meter: Meter) -> Any:
        """The OTel instrument behind this one (each subclass creates its kind)."""

    def _attributes(
        self, where: str, tenant: object, labels: Mapping[str, object]
    ) -> Mapping[str, Any]:
        if not isinstance(tenant, str) or not tenant:
            raise (ValueError if tenant is None or tenant == "" else TypeError)(
                f"{where}: tenant must be a non-empty string, got {tenant!r}; every measurement "
                "belongs to a tenant (pass tenant=flow.current().tenant inside a flow)"
            )
        if labels.keys() != self._label_set:
            self._wrong_labels(where, labels)
        attrs: dict[str, Any] = {c.TENANT: tenant}
        for label in self.labels:
            attrs[label] = validation.label_value(where, label, labels[label])
        if self._flow_name:
            state = flow_state()
            if state is not None:
                attrs[c.FLOW_NAME] = state.info.name
        return self._bounded(attrs)

    def _wrong_labels(self, where: str, labels: Mapping[str, object]) -> None:
        unknown = sorted(set(labels) - self._label_set)
        missing = sorted(self._label_set - set(labels))
        declared = ", ".join(self.labels) or "none"
        if unknown:
            raise ValueError(
                f"{where}: unknown label {unknown[0]!r} for metric {self.name!r} (declared: "
                f"{declared}); declare it in labels=[...] when creating the metric"
            )
        raise ValueError(
            f"{where}: missing label {missing[0]!r} for metric {self.name!r} (declared: "
            f"{declared}); every declared label needs a value"
        )

    def _bounded(self, attrs: dict[str, Any]) -> Mapping[str, Any]:
        # Attributes are always built in the same key order, so the values identify the set.
        key = tuple(attrs.values())
        seen = self._seen
        if key in seen:
            return attrs
        if len(seen) >= _binding.limit:
            diagnostics.report(
                f"metrics.overflow.{self.name}",
                "dashfrog_sdk: metric %r reached %d attribute sets (tenants x labels); new sets "
                "are aggregated under otel.metric.overflow=true (DASHFROG_METRICS_CARDINALITY_LIMIT)",
                self.name,
                _binding.limit,
            )
            return OVERFLOW
        seen.add(key)
        return attrs


class Counter(_Instrument):
    """A monotonic sum per tenant (and labels): orders placed, rows imported, bytes sent.

    Example:
        >>> imported = metrics.Counter("rows.imported", labels=["source"], unit="{row}")
        >>> imported.add(500, tenant="acme-corp", source="s3")
    """

    def __init__(
        self,
        name: str,
        labels: Sequence[str] = (),
        *,
        unit: str = "",
        description: str = "",
        flow_name: bool = True,
    ) -> None:
        super().__init__(name, labels, unit, description, flow_name)

    def _create(self, meter: Meter) -> Any:
        return meter.create_counter(self.name, self.unit, self.description)

    def add(self, value: Number, *, tenant: str, **labels: Any) -> None:
        """Add `value` (>= 0) for `tenant`; every declared label must be given."""
        where = f"{self.name}.add()"
        if isinstance(value, bool) or not isinstance(value, int | float) or not value >= 0:
            raise (TypeError if not isinstance(value, int | float) else ValueError)(
                f"{where}: value must be a number >= 0 (counters only go up), got {value!r}"
            )
        attrs = self._attributes(where, tenant, labels)
        self._instrument().add(value, attrs)


class Histogram(_Instrument):
    """A distribution per tenant: durations, sizes, amounts.

    ``buckets`` sets explicit bucket boundaries (the OTel default suits milliseconds).

    Example:
        >>> size = metrics.Histogram("upload.size", unit="By", buckets=[1e3, 1e6, 1e9])
        >>> size.record(52_000, tenant="acme-corp")
    """

    def __init__(
        self,
        name: str,
        labels: Sequence[str] = (),
        *,
        unit: str = "",
        description: str = "",
        buckets: Sequence[float] | None = None,
        flow_name: bool = True,
    ) -> None:
        super().__init__(name, labels, unit, description, flow_name)
        if buckets is not None and (
            isinstance(buckets, str) or list(buckets) != sorted(set(buckets))
        ):
            raise ValueError(
                f"metrics.Histogram(): buckets must be increasing numbers, got {buckets!r}"
            )
        self.buckets = tuple(buckets) if buckets is not None else None

    def _create(self, meter: Meter) -> Any:
        return meter.create_histogram(
            self.name,
            self.unit,
            self.description,
            explicit_bucket_boundaries_advisory=self.buckets,
        )

    def record(self, value: Number, *, tenant: str, **labels: Any) -> None:
        """Record one measurement for `tenant`; every declared label must be given."""
        where = f"{self.name}.record()"
        if isinstance(value, bool) or not isinstance(value, int | float) or value != value:
            raise TypeError(f"{where}: value must be a number, got {value!r}")
        attrs = self._attributes(where, tenant, labels)
        self._instrument().record(value, attrs)


class Gauge(_Instrument):
    """A current value per tenant: queue depth, open sessions, quota left.

    With ``callback``, the value is read at each collection: the callback returns
    ``(value, {"tenant": ..., <label>: ...})`` pairs (a generator is fine), or, for a gauge
    without labels, a ``{tenant: value}`` mapping. Without a callback, call ``set()``.

    Example:
        >>> metrics.Gauge("sessions.open", callback=lambda: sessions_by_tenant())
        >>> quota = metrics.Gauge("quota.left", labels=["plan"])
        >>> quota.set(120, tenant="acme-corp", plan="pro")
    """

    def __init__(
        self,
        name: str,
        callback: Callback | None = None,
        labels: Sequence[str] = (),
        *,
        unit: str = "",
        description: str = "",
    ) -> None:
        super().__init__(name, labels, unit, description, flow_name=False)
        if callback is not None and not callable(callback):
            raise TypeError(f"metrics.Gauge(): callback must be callable, got {callback!r}")
        self.callback = callback
        if callback is not None:
            # Kept alive here (as an OTel meter keeps its observable instruments): a gauge is
            # often created and never referenced again. setup() registers it with the provider.
            _callback_gauges.append(self)
            if runtime.configured:
                self._bind()

    def _create(self, meter: Meter) -> Any:
        if self.callback is None:
            return meter.create_gauge(self.name, self.unit, self.description)
        return meter.create_observable_gauge(
            self.name, [self._observe], self.unit, self.description
        )

    def set(self, value: Number, *, tenant: str, **labels: Any) -> None:
        """Set the current value for `tenant` (gauges without a callback)."""
        where = f"{self.name}.set()"
        if self.callback is not None:
            raise TypeError(
                f"{where}: this gauge reads its callback; set() is for gauges without one"
            )
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise TypeError(f"{where}: value must be a number, got {value!r}")
        self._instrument().set(value, self._attributes(where, tenant, labels))

    def _observe(self, options: CallbackOptions) -> Iterable[Observation]:
        # Runs on the metric reader's thread: problems are reported (once), never raised; a bad
        # observation is skipped, the good ones are kept.
        where = f"{self.name} callback"
        assert self.callback is not None
        out: list[Observation] = []
        try:
            result = self.callback()
            pairs = (
                ((v, {"tenant": t}) for t, v in result.items())
                if isinstance(result, Mapping)
                else result
            )
            for value, attrs in pairs:
                try:
                    labels = dict(attrs)
                    tenant = labels.pop("tenant", None)
                    if isinstance(value, bool) or not isinstance(value, int | float):
                        raise TypeError(f"{where}: value must be a number, got {value!r}")
                    out.append(Observation(value, self._attributes(where, tenant, labels)))
                except (TypeError, ValueError) as exc:
                    self._report(exc)
        except Exception as exc:
            self._report(exc)
        return out

    def _report(self, exc: Exception) -> None:
        diagnostics.report(
            f"metrics.callback.{self.name}",
            "dashfrog_sdk: gauge %r callback failed: %s (yield (value, {'tenant': ..., "
            "<labels>}) pairs, or return a {tenant: value} mapping)",
            self.name,
            exc,
        )
