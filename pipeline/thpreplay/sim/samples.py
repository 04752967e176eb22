"""Replaying a capture many times, each time drawing what the capture cannot pin down (`--samples N`).

One kernel gives a range, not a number: the lab's scenario 1 gave 89/7, 85/7 and 22/74 local/remote
huge pages on one kernel from boot to boot (docs/fidelity.md). With kpageflags the start layout, whose
hole parity separates those runs, is the capture's; what stays chance is when kcompactd's proactive
timer fires relative to the faults, the layout without kpageflags and the costs' scatter. A single
replay is one draw of that chance; `simulate --samples N
--seed S` makes N, each from its own generator, so that every figure has a spread (p5 / p50 / p95).

Sample i's generator is seeded from (S, i) alone (numpy's SeedSequence with spawn key i), so the same S
gives the same samples, on any machine and whatever N is (sample 3 of 5 is sample 3 of 20). What a
sample draws, in this order:

- the model's seed (Params.seed), a 32-bit number from the generator. It drives the start layout
  where the bundle has no kpageflags (state.py: which movable blocks hold which kind of page, where the
  fallen-back kernel pages lie; and, drawn last, the pfn parity of order-0 holes in a zone where the
  trace shows no free page to take it from) and the replay core's own random choices (which LRU page reclaim takes,
  the per-batch contention draw, a shuffled free list's order). With kpageflags the layout is known and
  is not drawn: the state is the deterministic run's.
- kcompactd's proactive timer phase: uniform over its 500 ms period (HPAGE_FRAG_CHECK_INTERVAL_MSEC,
  mm/compaction.c, 5.9+), from the trace's first op. Where the trace shows the phase
  (simulate.kcompactd_timer_phase), the deterministic run keeps it; the samples draw it anyway, since
  the trace's phase is one draw of a boot-to-boot chance. It matters only where the replay runs
  proactive compaction (an era and kernel of 5.9+, vm.compaction_proactiveness > 0).
- every cost `calibrate` measured in the capture (Estimate.draw): a bootstrap of its statistic over its
  own samples, the median of a resample of the per-event values, or for kcompactd's and kswapd's pace
  a ratio of totals over a resample of their runs / awake periods. compact_contention, when measured,
  is drawn as a proportion's bootstrap (Binomial(batches, rate) / batches); at its default (0, no
  measured basis) it is left alone. A value a --params file set is never drawn.

- what the capture's start took untraced (drawn last, after the hole parity; sim/untraced.py): pages
  allocated after the bundle's kpageflags snapshot and before its first event. Where the snapshot saw
  none of them (`missing=all`) every sample allocates them all, as the
  deterministic run does; where it saw some (`missing=some`: the lab's guests write the dump of
  /proc/kpageflags into their in-memory root file system while reading it), a sample draws how many the
  start lacks, uniformly from 0 to the count on each node, and the deterministic run allocates none.
  Without the file nothing is drawn.

- kswapd's wake-up latency (`kswapd_wake_us`, drawn last): uniform from 0 to one scheduler slice of the
  capture's kernel and CPU count (kernel/sched.py: CFS's shared latency, EEVDF's base slice), since no
  capture shows when the scheduler ran kswapd after wakeup_kswapd(); the deterministic run has it run at
  once, from the op that woke it. A --params value is not drawn.

Not drawn: the demand (the trace's own), the costs the capture did not measure (their defaults).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field, replace

import numpy as np

from thpreplay.kernel.sched import wake_slice_us
from thpreplay.sim import state as state_mod
from thpreplay.sim import untraced as untraced_mod
from thpreplay.sim.params import Params

# kcompactd's proactive check interval: HPAGE_FRAG_CHECK_INTERVAL_MSEC = 500 (mm/compaction.c, 5.9+,
# Nitin Gupta's proactive compaction, "mm: proactive compaction")
PROACTIVE_PERIOD_NS = 500_000_000
# the percentiles outcome_summary gives every figure over the samples (p5..p95: a 90 % interval)
QUANTILES = (("p5", 0.05), ("p50", 0.50), ("p95", 0.95))


@dataclass(frozen=True)
class Draw:
    """What one sample drew."""
    sample: int
    seed: int                       # Params.seed of the sample
    proactive_phase_ns: int         # a trace time at which kcompactd's timer fires
    params: Params                  # the deterministic run's with the drawn values
    drawn: dict                     # parameter -> drawn value (the costs, contention)
    layout_drawn: bool              # False: the start comes from kpageflags, not drawn
    hole_parity: int = 0            # pfn parity of order-0 holes where the trace shows none (layout drawn)
    untraced_pages: dict = field(default_factory=dict)   # node -> pages the start took untraced (sim/untraced.py)

    def as_dict(self) -> dict:
        return dict(sample=self.sample, seed=self.seed, proactive_phase_ns=self.proactive_phase_ns,
                    layout_drawn=self.layout_drawn, hole_parity=self.hole_parity,
                    untraced_pages={str(k): v for k, v in sorted(self.untraced_pages.items())},
                    **{k: self.drawn[k] for k in sorted(self.drawn)})


def generator(seed: int, sample: int) -> np.random.Generator:
    """Sample `sample`'s generator: from (seed, sample) alone."""
    return np.random.default_rng(np.random.SeedSequence(int(seed), spawn_key=(int(sample),)))


def layout_known(inputs) -> bool:
    """The start layout is the capture's own (kpageflags), not an assumption a seed lays out."""
    return inputs.state.summary.get("source") == "kpageflags"


def draw(inputs, sample: int, seed: int) -> Draw:
    """Sample `sample` of seed `seed` for these replay inputs (simulate.Inputs)."""
    rng = generator(seed, sample)
    model_seed = int(rng.integers(0, 2**32))
    t0 = int(inputs.demand.ops.ts_min) if inputs.demand.ops.height else 0
    phase = t0 + int(rng.integers(0, PROACTIVE_PERIOD_NS))
    explicit = set(inputs.params.explicit)
    drawn = {}
    for e in inputs.estimates:   # calibrate's order (Params field order): fixed, so the draws are too
        if e.draw is not None and e.param not in explicit:
            value = e.draw(rng)
            drawn[e.param] = type(getattr(inputs.params, e.param))(value)
    params = replace(inputs.params, seed=model_seed, **drawn)
    # drawn last, so that the draws before it are those of a sample without it
    hole_parity = int(rng.integers(0, 2))
    untraced = getattr(inputs, "untraced", None)
    untraced_pages = untraced.draw(rng) if untraced is not None else {}
    # kswapd's wake-up latency, within one scheduler slice of the capture's kernel and CPUs (kernel/sched.py)
    wake = float(rng.uniform(0.0, wake_slice_us(getattr(inputs, "kernel_release", None),
                                                 len(getattr(inputs.state, "cpu_node", None) or {}) or 1)))
    if "kswapd_wake_us" not in explicit:
        drawn["kswapd_wake_us"] = wake
        params = replace(params, kswapd_wake_us=wake)
    return Draw(sample, model_seed, phase, params, drawn, not layout_known(inputs), hole_parity, untraced_pages)


def sample_state(inputs, d: Draw):
    """The start of sample d: the deterministic run's when kpageflags gave it, else laid out with the
    sample's seed (state.build, as prepare() does with Params.seed)."""
    if not d.layout_drawn:
        return inputs.state
    dm = inputs.demand
    return state_mod.build(inputs.dataset, dm.used_at_start, dm.free_at_start, dm.pfns_by_migratetype,
                           inputs.params.compact_unevictable_allowed, d.seed, dm.traced_pages, d.hole_parity)


def runs(inputs, policies, n: int, seed: int, progress=None) -> Iterator[tuple[Draw, object, object]]:
    """(draw, policy, engine.Run) of every sample and policy, sample by sample (one start layout per
    sample, shared by its policies). The runs are not kept: a caller takes what it needs from each."""
    from thpreplay.sim import engine

    for i in range(n):
        d = draw(inputs, i, seed)
        st = sample_state(inputs, d)
        for policy in policies:
            run = engine.run(policy, inputs.settings, inputs.demand, st, d.params, inputs.stall_rule,
                             progress=progress, release=inputs.kernel_release, proactive_phase_ns=d.proactive_phase_ns,
                             **untraced_mod.engine_args(getattr(inputs, "untraced", None), d.untraced_pages))
            yield d, policy, run


def quantiles(values: list) -> dict[str, float | None]:
    """p5 / p50 / p95 of a figure over the samples (the Nones left out); None with fewer than two values."""
    v = np.array([x for x in values if x is not None], dtype=np.float64)
    if len(v) < 2:
        return {name: None for name, _ in QUANTILES}
    return {name: float(np.quantile(v, q)) for name, q in QUANTILES}
