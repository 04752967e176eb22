"""Direct reclaim counted as the kernel counts it (sim/vmscan.c, thpreplay.kernel.vmscan), and the
madvise state of defrag=always faults read from their gfp bits (sim/demand.py), on real captures."""

from __future__ import annotations

import polars as pl
import pytest

from thpreplay.kernel.vmscan import compaction_ready_form
from thpreplay.simulate import prepare, replay
from thpreplay.policy.registry import resolve_kernel


@pytest.mark.parametrize("release, form", [
    ("5.10.0-32-amd64", 0), ("6.1.176", 0), ("6.4.16", 0),     # COMPACT_NOT_SUITABLE_ZONE: the high + gap test
    ("6.5", 1), ("6.12.117", 1), ("6.14.11", 1),              # 3cf04937529020e1: not suitable is reclaimed
    ("6.15", 2), ("6.18.44-fc-v1147", 2), (None, 2),          # 67914ac08604: one test at high + gap + (low - min)
])
def test_compaction_ready_form_per_release(release, form):
    assert compaction_ready_form(release) == form


def test_a_call_that_found_compaction_ready_returns_one(sample_dataset):
    """qemu-6.1-2node: the kernel's 184 direct reclaim calls each returned nr_reclaimed=1 with nothing
    freed (pgsteal_direct did not move): do_try_to_free_pages() stops at a compaction-ready zone and
    returns 1. The model's calls do the same: each counts 1 in pages_reclaimed, and none frees a page."""
    ds = sample_dataset("qemu-6.1-2node")
    inputs = prepare(ds)
    run = replay(inputs, [resolve_kernel("6.1.176")]).runs[0]
    calls = run.outcomes.filter(pl.col("reclaim_calls") > 0)
    assert calls.height > 150
    assert (calls["pages_reclaimed"] == calls["reclaim_calls"]).all()
    assert run.counters["pgsteal_direct"] == 0
    assert run.counters["direct_reclaim_returned"] == run.counters["allocstall"]


def test_defrag_always_faults_take_their_madvise_from_the_gfp_bits(sample_dataset):
    """host-6.18-pagecache-defrag-always: defrag=always, 6.18. The three faults whose second (all-node)
    attempt ran carry GFP_TRANSHUGE|__GFP_NORETRY, which only a VMA that was not madvised gets
    (alloc_hugepage_direct_gfpmask()); the other 387 made only the THISNODE|NORETRY attempt that both
    kinds make, and take their process's (thpfrag's), else the capture's: not madvised."""
    ds = sample_dataset("host-6.18-pagecache-defrag-always")
    inputs = prepare(ds)
    faults = inputs.demand.faults
    assert faults.height == 390
    assert not faults["madvised"].any()
    assert "defrag=always: 3 of 390 faults show in their gfp masks whether their VMA was madvised; the others take " \
           "their process's, else the capture's (0 madvised in all)" in inputs.notes
    assert not any("taken as madvised" in n for n in inputs.notes)
    # the override still wins
    assert prepare(ds, madvised=True).demand.faults["madvised"].all()
