"""Printed fields no typed column holds: the `extra_fields` table (one row per event line and key).

A kernel with more fields in an event than thpreplay's spec (an Android vendor kernel appending
` extra_field=5`, a renamed field such as 5.8's `highest_zoneidx=` for `classzone_idx=`, a field of
an era thpreplay does not type such as `zid=` or `range=(0x.. ~ 0x..)`) keeps them here as text,
keyed by the event's line, instead of losing them. The fields the event's spec reads stay in their
typed columns only. `page=`, the `struct page *` of the kmem events (a hashed pointer, the pfn says
which page), is not kept.

A value runs from after `key=` to the next ` key=` (so `range=(0x1 ~ 0x2)` stays whole), trailing
blanks and a trailing ',' removed. Only the typed events' lines are read (other_events keeps whole
payloads already), and of those only the lines kept in their table.
"""

from __future__ import annotations

import polars as pl

from thpreplay.kernel.events import EventSpec

# Printed by the kmem events and mm_vmscan_write_folio/writepage; derivable from pfn.
NOT_KEPT = frozenset({"page"})
_KEY = r"[A-Za-z_][\w.\-]*"


def known_keys(spec: EventSpec) -> set[str]:
    return set(spec.fields) | set(spec.constants) | NOT_KEPT


def collect(rows: pl.DataFrame, event: str, spec: EventSpec, kept: pl.DataFrame) -> pl.DataFrame | None:
    """(line, event, key, value) of the fields of `rows` (line, payload) that no typed column holds,
    for the lines in `kept` (the rows the event's table keeps)."""
    known = known_keys(spec)
    payload = pl.col("payload")
    # cheap first pass: more '=' than the known keys printed means a field to look at
    printed = [(payload.str.starts_with(f"{k}=") | payload.str.contains(f" {k}=", literal=True)).cast(pl.UInt32)
               for k in sorted(known)]
    more = payload.str.count_matches("=", literal=True) > pl.sum_horizontal(printed)
    if "_more" in rows.columns:  # the C helper counted them (parse/prefix.py) where it read the line
        slim = rows.select("line", "payload", "_more")  # filter two columns, not the whole frame
        if slim.get_column("_more").null_count() == 0:
            candidates = slim.filter(pl.col("_more")).select("line", "payload")
        else:
            done = pl.col("_more").is_not_null()
            candidates = pl.concat([slim.filter(done & pl.col("_more")).select("line", "payload"),
                                    slim.filter(~done).select("line", "payload").filter(more.fill_null(False))])
            candidates = candidates.sort("line")
    else:
        candidates = rows.select("line", "payload").filter(more.fill_null(False))
    if candidates.height == 0:
        return None
    candidates = candidates.join(kept.select("line"), on="line", how="semi")
    if candidates.height == 0:
        return None
    tokens = (candidates
              .select("line", payload.str.replace_all(rf"\s+({_KEY})=", "\x00${1}=").str.split("\x00").alias("_tok"))
              .explode("_tok")
              .with_columns(pl.col("_tok").str.extract_groups(rf"^(?P<key>{_KEY})=(?P<value>.*)$").alias("_kv"))
              .unnest("_kv")
              .filter(pl.col("key").is_not_null() & ~pl.col("key").is_in(sorted(known))))
    if tokens.height == 0:
        return None
    return tokens.select(
        "line", pl.lit(event).alias("event"), "key",
        pl.col("value").str.strip_chars_end().str.strip_suffix(",").alias("value"),
    )


def table_rows(parts: list[pl.DataFrame], source: str) -> pl.DataFrame | None:
    """The extra_fields table's columns (schemas/extra_fields.v1.json)."""
    parts = [p for p in parts if p is not None and p.height]
    if not parts:
        return None
    return pl.concat(parts).sort("line", maintain_order=True).select(
        pl.lit(source).alias("source"), "line", "event", "key", "value")
