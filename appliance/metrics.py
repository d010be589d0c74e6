"""Prometheus metrics for IT's monitoring (prometheus-client): requests by route and status,
latency, tokens generated and decode speed per model, slots and lines, model loads, history
size. Plugins add their own collectors to ``appliance.metrics.registry`` (RAG: ingestion)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from prometheus_client.metrics_core import Metric

    from appliance.core import Appliance

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
LATENCY_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)


class _BoxCollector(Collector):
    """What is read at scrape time: the scheduler's slots and lines, loads, history size."""

    def __init__(self, appliance: Appliance) -> None:
        self.appliance = appliance

    def collect(self) -> Iterator[Metric]:
        slots = GaugeMetricFamily(
            "appliance_model_slots", "Slots of a loaded model", labels=["model"]
        )
        busy = GaugeMetricFamily(
            "appliance_model_slots_busy", "Slots generating now", labels=["model"]
        )
        queued = GaugeMetricFamily(
            "appliance_model_queue_length", "Requests waiting for a slot", labels=["model"]
        )
        for usage in self.appliance.scheduler.usage():
            slots.add_metric([usage["name"]], usage["slots"])
            busy.add_metric([usage["name"]], usage["slots_busy"])
            queued.add_metric([usage["name"]], usage["queued"])
        yield from (slots, busy, queued)
        loads = CounterMetricFamily("appliance_model_loads", "Model loads", labels=["model"])
        for name, count in sorted(self.appliance.scheduler.loads.items()):
            loads.add_metric([name], count)
        yield loads
        conversations, messages = self.appliance.db.read_sync(
            lambda db: (db["conversations"].count, db["messages"].count)
        )
        history = GaugeMetricFamily("appliance_history_rows", "Rows in history", labels=["table"])
        history.add_metric(["conversations"], conversations)
        history.add_metric(["messages"], messages)
        yield history


class Metrics:
    def __init__(self, appliance: Appliance) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "appliance_requests",
            "HTTP requests by route, method and status",
            ["route", "method", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "appliance_request_seconds",
            "Time to answer (to the end of a stream)",
            ["route"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.tokens = Counter(
            "appliance_generated_tokens", "Tokens generated", ["model"], registry=self.registry
        )
        self.decode_speed = Gauge(
            "appliance_decode_tokens_per_second",
            "Decode speed of the last answer",
            ["model"],
            registry=self.registry,
        )
        self.registry.register(_BoxCollector(appliance))
        self.recent_speed: dict[str, float] = {}
        """Decode tokens/s of each model's last answer (the web page's Overview shows it)."""

    def request(self, route: str, method: str, status: int, seconds: float) -> None:
        self.requests.labels(route, method, str(status)).inc()
        self.latency.labels(route).observe(seconds)

    def generated(self, model: str, tokens: int, decode_ms: float) -> None:
        if tokens <= 0:
            return
        self.tokens.labels(model).inc(tokens)
        if decode_ms > 0:
            speed = tokens / (decode_ms / 1000)
            self.decode_speed.labels(model).set(speed)
            self.recent_speed[model] = round(speed, 1)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
