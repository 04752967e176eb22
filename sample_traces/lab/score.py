"""Score the simulator against the fidelity lab's captures and write docs/fidelity.md.

    .venv/bin/python sample_traces/lab/score.py        # or: make fidelity

For every capture under sample_traces/fidelity/ (named KERNEL-sN-SCENARIO): ingest it, replay it
under the policy of the kernel that made it, and compare with what that kernel did (the figures of
`thpreplay validate`). Debian kernels take the policy their upstream version resolves to; the lab's
patched kernels (sample_traces/lab/KERNELS.md) take the policy they were patched to, which their
bundles declare in `thp_policy` (as `thpreplay validate` reads it). Every replay uses the lab machine's costs (sample_traces/fidelity/
tcg-params.toml: QEMU TCG is 50-100 times slower than hardware, which sets how fast background
compaction works in trace time).

Cross-prediction: for each scenario, the Debian 6.1 capture's demand is replayed under each patched
kernel's policy and compared with the capture that patched kernel made of the same scenario.

Writes docs/fidelity.md and tests/golden/fidelity.csv (every figure of every comparison), which
tests/test_fidelity.py checks against a fresh replay of the committed captures.
"""

from __future__ import annotations

import re
import sys
import tempfile
from pathlib import Path

import polars as pl

from thpreplay.ingest import ingest
from thpreplay.policy.registry import get_policy, resolve_kernel
from thpreplay.sim import state
from thpreplay.sim.params import Params
from thpreplay.simulate import prepare, replay
from thpreplay.validate import FIGURES, compare, observed, simulated

ROOT = Path(__file__).resolve().parents[2]
CAPTURES = ROOT / "sample_traces" / "fidelity"
DOC = ROOT / "docs" / "fidelity.md"
GOLDEN = ROOT / "tests" / "golden" / "fidelity.csv"
PARAMS = CAPTURES / "tcg-params.toml"  # the lab machine's costs (QEMU TCG)
TOLERANCE, SMALL = 0.10, 5
NAME = re.compile(r"^(?P<kernel>.+)-s(?P<scenario>\d)-(?P<label>[a-z0-9-]+)$")
SUMMARY_FIGURES = ("huge_local", "huge_remote", "fallback", "compact_stall", "allocstall", "pgsteal_direct", "pswpout")


def declared_policy(dataset: Path) -> str | None:
    """The policy a patched kernel's bundle declares (`thp_policy`), else None."""
    text = state.snapshot_text(dataset, "thp_policy")
    return text.strip() if text and text.strip() else None


def captures() -> list[tuple[str, str, int, str]]:
    """(directory name, kernel label, scenario, scenario label) of every capture, sorted."""
    out = []
    for d in sorted(CAPTURES.iterdir()):
        m = NAME.match(d.name)
        if d.is_dir() and m:
            out.append((d.name, m["kernel"], int(m["scenario"]), m["label"]))
    return out


def _rows(kind: str, capture: str, kernel: str, scenario: int, policy: str, obs: dict, sim: dict) -> list[dict]:
    return [dict(kind=kind, capture=capture, kernel=kernel, scenario=scenario, policy=policy, figure=r.figure,
                 source=r.source, observed=r.observed, simulated=r.simulated, rel_error=round(r.error(), 4),
                 ok=r.ok(TOLERANCE, SMALL)) for r in compare(obs, sim)]


def score(work: Path, only: list[str] | None = None) -> pl.DataFrame:
    rows: list[dict] = []
    datasets: dict[str, Path] = {}
    caps = [c for c in captures() if not only or c[0] in only]
    for name, kernel, scenario, _ in caps:
        ds = work / name
        ingest([str(CAPTURES / name)], ds, force=True)
        datasets[name] = ds
        inputs = prepare(ds, params=Params.load(PARAMS))
        policy = get_policy(declared_policy(ds)) if declared_policy(ds) else resolve_kernel(inputs.kernel_release)
        run = replay(inputs, [policy]).runs[0]
        rows += _rows("validate", name, kernel, scenario, policy.name, observed(ds), simulated(run))
        print(f"scored {name} under {policy.name}", file=sys.stderr)
    # cross-prediction: the Debian 6.1 capture of a scenario, replayed under a patched kernel's policy
    for name, kernel, scenario, _ in caps:
        if not declared_policy(datasets[name]):
            continue
        base = [n for n, k, s, _ in caps if k == "6.1" and s == scenario]
        if not base:
            continue
        inputs = prepare(datasets[base[0]], params=Params.load(PARAMS))
        policy = get_policy(declared_policy(datasets[name]))
        run = replay(inputs, [policy]).runs[0]
        rows += _rows("cross", name, kernel, scenario, policy.name, observed(datasets[name]), simulated(run))
        print(f"cross-predicted {name} from {base[0]} under {policy.name}", file=sys.stderr)
    return pl.DataFrame(rows)


def _cell(obs: int, sim: int, err: float, ok: bool) -> str:
    """observed / simulated, the relative error when there is one, ✗ when off."""
    rel = "" if obs == sim else f" (+{sim:,})" if obs == 0 else f" ({100 * err:.0f} %)"
    return f"{obs:,} / {sim:,}{rel}" + ("" if ok else " ✗")


def _table(frame: pl.DataFrame, first: str) -> list[str]:
    head = [first, "policy"] + [f.replace("_", " ") for f in SUMMARY_FIGURES] + ["within 10 % or ±5"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for (capture,), g in frame.group_by("capture", maintain_order=True):
        by = {r["figure"]: r for r in g.iter_rows(named=True)}
        cells = [f"`{capture}`", f"`{g['policy'][0]}`"]
        cells += [_cell(by[f]["observed"], by[f]["simulated"], by[f]["rel_error"], by[f]["ok"]) if f in by else "–"
                  for f in SUMMARY_FIGURES]
        cells.append(f"{int(g['ok'].sum())} of {g.height}")
        lines.append("| " + " | ".join(cells) + " |")
    return lines


# Why the misses miss: hand-written, reviewed whenever `make fidelity` changes the tables above it.
ANALYSIS = """## What the misses are

- **Scenario 1 (`fragmented-movable`): compaction that the kernel fails and the model does not.** Node 0
  holds movable pages in every pageblock, every block can be emptied, and the model's async compaction
  always succeeds: 96 local huge pages under the 6.x policies. The kernels' async compactions fail for
  reasons the model leaves out (docs/model.md: no skip bits, no per-order isolation failures, no
  contention aborts); in the committed Debian 6.1 run every one of them ended `partial_skipped` and 74
  faults went to node 1. The kernel's own result varies from run to run: the same scenario on Debian
  6.1 gave 89 / 7 and 85 / 7 (local / remote) in two earlier lab runs, 22 / 74 in this one, and the
  self-built unpatched 6.1 gave 62 / 34. On 5.10, and on the local-only kernel, the failed local
  compaction is followed by direct reclaim (allocstall 42 and 38) that the model, having succeeded,
  never reaches; the local-only kernel then falls back to 4 KiB pages 32 times. The relaxed kernel
  compacts nothing (no direct compaction before going remote), and its split between nodes depends
  on how many free blocks node 0 had: 39 / 57 against the model's 20 / 76.
- **`pages_reclaimed` on 5.10 and with local-only compaction failures.** The trace's `nr_reclaimed` counts
  a page when reclaim stops early so that compaction can run, and slab pages; `pgsteal_direct` is 0
  there, and so is the model's (it reclaims LRU pages only).
- **Direct reclaim calls in the swap storm (`6.1-local-only-s2`).** The model matches the storm's pages
  (81,952 reclaimed and swapped; the model 81,193 and 80,932) but not its calls: the kernel took them in
  8 direct reclaims, the model in 79, because it stops each call at `compact_gap` (1,024 pages).
- **Compaction stalls with background compaction (6.12, scenario 1).** kcompactd's proactive compaction
  makes free pageblocks between the faults. The model paces it at the lab's measured cost per migrated
  page (`tcg-params.toml`, measured on a 6.1 capture); on 6.12 the kernel made more blocks ahead of the
  faults than that pace gives, so the model stalls more often.

Scenarios 2, 3 and 4 are within 10 % or ±5 on every kernel but for the two reclaim figures above: a
full local node with a free remote one (2, 4) and a local node compaction cannot help (3), on the
Debian kernels and the three self-built ones.

## What the cross-prediction shows

Replaying the Debian 6.1 capture of scenario 2 as the local-only kernel predicts the 2019 swap storm
from a capture that had none: 490 local huge pages and 82,231 pages reclaimed and swapped out, where
the local-only kernel really made 481, 81,952 and 81,952. The relaxed prediction of the same capture
(326 local, 164 remote, no reclaim) matches the relaxed kernel (322, 159, none). In scenarios 3 and 4
the THP outcomes and stalls are predicted within 1-3 % for both policies (the local-only kernel's
`pages_reclaimed` misses as above). Scenario 1 misses for the reasons above, in the same direction as
each kernel's own validation.
"""


def write_doc(frame: pl.DataFrame) -> str:
    v = frame.filter(pl.col("kind") == "validate")
    x = frame.filter(pl.col("kind") == "cross")
    per = v.group_by("capture", maintain_order=True).agg(pl.col("ok").all().alias("all_ok"))
    lines = [
        "# Fidelity: the simulator against real kernels",
        "",
        "Generated by `sample_traces/lab/score.py` (`make fidelity`) from the captures in",
        "`sample_traces/fidelity/`; do not edit by hand. `tests/test_fidelity.py` replays every capture and",
        "checks each figure against `tests/golden/fidelity.csv`, which the same script writes.",
        "",
        "The captures come from the QEMU lab (`sample_traces/lab/`: `run-fidelity.sh`, kernels in",
        "`KERNELS.md`): real Debian kernels 5.10, 6.1 and 6.12, and three kernels built from Debian's 6.1",
        "source: one with the THP allocation patched to the 4.8–5.3-rc4 local-only policy, one to the 5.3-rc5",
        "relaxed policy, and one unpatched as a control. Each is booted with two NUMA nodes and runs four",
        "scenarios:",
        "",
        "1. `fragmented-movable`: a small MADV_HUGEPAGE workload, node 0 fragmented with movable pages, node 1 free;",
        "2. `larger-than-node`: a workload of 130 % of node 0, node 1 free, zram swap;",
        "3. `unmovable`: node 0 polluted with unmovable pages, so compaction cannot help, node 1 free;",
        "4. `qemu-threads`: one large MADV_HUGEPAGE region faulted by several threads, like a VM's RAM.",
        "",
        "Each cell is observed / simulated (relative error |sim - obs| / obs, or +sim when nothing was",
        "observed); ✗ marks a figure off by more than 10 % and more than 5. THP outcomes are the trace's",
        f"(per fault); the other figures are the `/proc/vmstat` deltas. All {len(FIGURES)} figures of",
        "`thpreplay validate` are in the CSV; the table shows the ones the scenarios are about and counts",
        "all of them.",
        "",
        "## Each capture under its own kernel's policy",
        "",
        *_table(v, "capture"),
        "",
        f"{int(per['all_ok'].sum())} of {per.height} captures have every figure within 10 % or ±5.",
        "",
        ANALYSIS,
    ]
    if x.height:
        lines += [
            "## Cross-prediction: the 6.1 capture replayed as another kernel",
            "",
            "The demand of the Debian 6.1 capture of each scenario, replayed under the policy a patched kernel",
            "was built to, against what that patched kernel really did on the same scenario. This is the",
            "question thpreplay answers for users (what would kernel B have done with kernel A's workload).",
            "The two runs are separate boots, so their fragmentation differs by chance as well.",
            "",
            *_table(x, "patched kernel's capture"),
            "",
        ]
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    only = argv or None
    with tempfile.TemporaryDirectory(prefix="thpreplay-fidelity-") as tmp:
        frame = score(Path(tmp), only)
    if only:
        print(frame)
        return 0
    GOLDEN.write_text(frame.write_csv())
    DOC.write_text(write_doc(frame) + "\n")
    print(f"wrote {DOC.relative_to(ROOT)} and {GOLDEN.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
