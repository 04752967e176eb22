"""What bounds the time from waking a kernel thread to its running (kernel/sched/fair.c), for the samples'
draw of kswapd's wake-up latency (sim/samples.py).

wakeup_kswapd() (mm/vmscan.c) only wakes kswapd (wake_up_interruptible on the node's kswapd_wait); kswapd
runs when the scheduler picks it, on one of its node's CPUs, which on the lab's guests is the faulting
task's own. Neither thpreplay's captures (no sched events) nor the model says when: a woken task of
equal weight runs at the latest once the running one's slice is spent, so the samples draw the latency
uniformly from zero to one slice:

- CFS (up to 6.5): sysctl_sched_latency, 6 ms scaled, shared by the two runnable tasks (the faulting task
  and kswapd): 3 ms x factor;
- EEVDF (6.6+, 147f3efaa241): sysctl_sched_base_slice, 0.75 ms x factor.

factor is get_update_sysctl_factor()'s default (SCHED_TUNABLESCALING_LOG): 1 + ilog2(min(CPUs, 8)).
"""

from __future__ import annotations

from thpreplay.kernel.gfp import parse_release

EEVDF_SINCE = (6, 6)
CFS_LATENCY_US = 6000.0          # normalized_sysctl_sched_latency
EEVDF_BASE_SLICE_US = 750.0      # normalized_sysctl_sched_base_slice


def scaling_factor(cpus: int) -> int:
    """SCHED_TUNABLESCALING_LOG: 1 + ilog2(min(online CPUs, 8))."""
    return 1 + (max(1, min(cpus, 8)).bit_length() - 1)


def wake_slice_us(release: str | None, cpus: int) -> float:
    """The longest a woken kthread of equal weight waits for its CPU, in µs (the module's docstring). An
    unknown release counts as the newer scheduler."""
    version = parse_release(release) if release else None
    if version is not None and version < EEVDF_SINCE:
        return CFS_LATENCY_US / 2 * scaling_factor(cpus)
    return EEVDF_BASE_SLICE_US * scaling_factor(cpus)
