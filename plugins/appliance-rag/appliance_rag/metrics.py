"""RAG's own metrics on the box's registry: chunks indexed and files left to read, by collection."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from prometheus_client.metrics_core import Metric

    from appliance_rag.service import Collections


class IngestionCollector(Collector):
    def __init__(self, collections: Collections) -> None:
        self.collections = collections

    def collect(self) -> Iterator[Metric]:
        chunks = GaugeMetricFamily("appliance_rag_chunks", "Chunks indexed", labels=["collection"])
        remaining = GaugeMetricFamily(
            "appliance_rag_ingest_remaining", "Files still to read", labels=["collection"]
        )
        counts = self.collections.appliance.db.read_sync(
            lambda db: db.execute(
                "select collection, coalesce(sum(chunks), 0) from rag_files group by collection"
            ).fetchall()
        )
        for name, count in counts:
            chunks.add_metric([name], count)
        for name, state in self.collections.progress.items():
            remaining.add_metric([name], state["files_total"] - state["files_done"])
        yield chunks
        yield remaining
