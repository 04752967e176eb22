"""NUMA topology: zones with pfn spans and watermarks, node cpus and distances; pfn -> node lookups."""

from __future__ import annotations

from dataclasses import dataclass, field

import polars as pl


@dataclass
class Topology:
    zones: list[dict]  # rows of the topology table (see schemas/topology.v1.json)
    cpus: dict[int, list[int]] = field(default_factory=dict)
    distances: dict[int, list[int]] = field(default_factory=dict)
    source: str = "inferred"
    inferred: bool = False

    @classmethod
    def single_node(cls) -> Topology:
        """No zoneinfo: every pfn is on node 0. The span is filled in from the trace at the end."""
        return cls(zones=[], source="inferred", inferred=True)

    @property
    def nodes(self) -> list[int]:
        return sorted({z["node"] for z in self.zones}) or [0]

    def _spans(self) -> pl.DataFrame:
        spans = [z for z in self.zones if z["spanned"] > 0]
        return pl.DataFrame(
            {
                "start": [z["start_pfn"] for z in spans],
                "end": [z["end_pfn"] for z in spans],
                "node": [z["node"] for z in spans],
                "zone": [z["zone"] for z in spans],
            },
            schema={"start": pl.Int64, "end": pl.Int64, "node": pl.Int16, "zone": pl.String},
        ).sort("start")

    def locate(self, frame: pl.DataFrame, pfn: str = "pfn") -> pl.DataFrame:
        """Add node and zone columns for the pfn column (null for a null pfn or one outside every zone)."""
        if self.inferred:
            return frame.with_columns(
                pl.when(pl.col(pfn).is_not_null()).then(pl.lit(0, dtype=pl.Int16)).alias("node"),
                pl.lit(None, dtype=pl.String).alias("zone"),
            )
        spans = self._spans()
        # search_sorted gives UInt32: widen before subtracting, a pfn below every zone gives -1.
        idx = spans.get_column("start").search_sorted(frame.get_column(pfn).fill_null(-1), side="right")
        idx = idx.cast(pl.Int64) - 1
        valid = (idx >= 0) & frame.get_column(pfn).is_not_null()
        safe = idx.clip(lower_bound=0)
        inside = valid & (frame.get_column(pfn).fill_null(-1) < spans.get_column("end").gather(safe))
        node = spans.get_column("node").gather(safe)
        zone = spans.get_column("zone").gather(safe)
        return frame.with_columns(
            pl.when(inside).then(node).otherwise(None).alias("node"),
            pl.when(inside).then(zone).otherwise(None).alias("zone"),
        )

    def node_of_cpu(self) -> dict[int, int]:
        if self.cpus:
            return {cpu: node for node, cpus in self.cpus.items() for cpu in cpus}
        return {}

    def local_node_expr(self, cpu: str = "cpu") -> pl.Expr:
        """The node of a CPU: from node cpulists; on a single-node topology every CPU is on node 0."""
        mapping = self.node_of_cpu()
        if mapping:
            return pl.col(cpu).replace_strict(mapping, default=None, return_dtype=pl.Int16)
        if len(self.nodes) == 1:
            return pl.lit(self.nodes[0], dtype=pl.Int16)
        return pl.lit(None, dtype=pl.Int16)

    def table(self, pfn_min: int | None = None, pfn_max: int | None = None) -> pl.DataFrame:
        rows = []
        if self.inferred:
            start = pfn_min or 0
            end = (pfn_max + 1) if pfn_max is not None else start
            rows.append(
                dict(node=0, zone="all", start_pfn=start, end_pfn=end, spanned=end - start, present=end - start,
                     managed=end - start, source="inferred: single node spanning the pfns seen in the trace")
            )
        for z in self.zones:
            row = {k: v for k, v in z.items()}
            row["cpus"] = _cpulist(self.cpus.get(z["node"]))
            row["distances"] = self.distances.get(z["node"])
            row["source"] = self.source
            rows.append(row)
        from thpreplay import schemas

        schema = schemas.load("topology")
        if not rows:
            return schema.empty()
        return schema.conform(pl.DataFrame(rows, schema_overrides=schema.polars(), strict=False))


def _cpulist(cpus: list[int] | None) -> str | None:
    if not cpus:
        return None
    parts = []
    start = prev = cpus[0]
    for c in cpus[1:] + [None]:  # type: ignore[list-item]
        if c is not None and c == prev + 1:
            prev = c
            continue
        parts.append(f"{start}-{prev}" if prev != start else f"{start}")
        if c is not None:
            start = prev = c
    return ",".join(parts)
