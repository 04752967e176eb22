"""`thpreplay sweep`: every capture x policy x THP setting as independent tasks on Dask distributed.

Layout of a sweep directory (SWEEP):

    sweep.json                                     what was asked: captures (name -> source), policies,
                                                   settings, params
    datasets/<capture>/                            captures that were not datasets yet, ingested
    capture=<c>/policy=<p>/settings=<enabled>-<defrag>/
        outcomes.parquet outcome_summary.parquet memory_series.parquet task.json

A partition is built in a hidden sibling directory and renamed into place, so a partition directory
that exists is complete: a sweep run again skips it (resume). A task is a pure function of (dataset,
policy, settings, params) to its partition, so the bytes do not depend on which worker ran it or when.
The client and every worker must see SWEEP (and the inputs) at the same path.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import threading
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

from thpreplay import schemas
from thpreplay.atomic import (
    dataset_path_problem, exclusive_lock, io_error_reason, make_tmp, replace_dir, write_output,
)
from thpreplay.errors import InputError, OutputError, ThpreplayError
from thpreplay.policy.base import PolicyCrashed, PolicyError, ThpSettings, call_attempts
from thpreplay.sim.params import Params

SWEEP_FILE = "sweep.json"
DATASETS = "datasets"
TASK_FILE = "task.json"
FORMAT = 1  # sweep.json "version"
# A hive value is a path segment and a DuckDB partition value: no '/', '=', spaces or quotes, and no
# leading '.' (hidden names are the build directories).
SAFE = re.compile(r"^[A-Za-z0-9_+-][A-Za-z0-9._+-]*$")
_COMPRESSED = (".gz", ".zst", ".xz")


@dataclass(frozen=True)
class Capture:
    name: str
    source: str  # as resolved: an absolute path
    dataset: str  # absolute path of its dataset (SWEEP/datasets/<name> when it needs ingesting)
    needs_ingest: bool


@dataclass(frozen=True)
class Task:
    capture: str
    policy: str
    enabled: str
    defrag: str

    @property
    def settings(self) -> str:
        return f"{self.enabled}-{self.defrag}"

    def partition(self, root: Path) -> Path:
        return root / f"capture={self.capture}" / f"policy={self.policy}" / f"settings={self.settings}"

    def label(self) -> str:
        return f"{self.capture} {self.policy} {self.settings}"


@dataclass
class SweepSummary:
    output: Path
    tasks: int = 0  # tasks run this time (ingests and partitions)
    written: int = 0
    skipped: int = 0  # partitions already complete
    refused: dict[str, int] = field(default_factory=dict)  # policy refusal message -> partitions
    failures: list[str] = field(default_factory=list)  # "<capture> <policy> <settings>: <error>"


def is_sweep(path: str | Path) -> bool:
    try:
        return (Path(path) / SWEEP_FILE).is_file()
    except OSError:  # a name the system refuses (past PATH_MAX): no sweep; the dataset check says why
        return False


def safe_value(kind: str, value: str) -> str:
    if not SAFE.match(value):
        raise InputError(value, f"{kind} name is not a safe partition value (letters, digits and . _ + - only, "
                         "not starting with '.')", hint="rename the input (a bundle's directory, or the trace file)")
    return value


def capture_name(source: Path) -> str:
    """A bundle's or dataset's directory name; a trace file's name without compression and extension."""
    if source.is_dir():
        return source.name
    name = source.name
    for ext in _COMPRESSED:
        name = name.removesuffix(ext)
    return name.rsplit(".", 1)[0] if "." in name.strip(".") else name


def plan_captures(inputs: list[str], root: Path) -> list[Capture]:
    """One capture per input, named after it; refuses unsafe or repeated names."""
    captures: dict[str, Capture] = {}
    for item in inputs:
        src = Path(item).absolute()  # a missing one is the failed ingest of its capture, not a stop
        name = safe_value("capture", capture_name(src))
        if name in captures:
            raise InputError(item, f"capture name '{name}' is also the name of {captures[name].source}; "
                             "capture names must be unique", hint="rename one of them")
        is_dataset = (src / "dataset.json").is_file()
        dataset = src if is_dataset else root.absolute() / DATASETS / name
        captures[name] = Capture(name, str(src), str(dataset), not is_dataset)
    return list(captures.values())


def capture_settings(dataset: str | Path) -> tuple[str, str]:
    """The capture's own THP (enabled, defrag), with simulate's defaults when the capture lacks them."""
    from thpreplay.simulate import captured_settings

    enabled, defrag = captured_settings(Path(dataset))
    return enabled or "always", defrag or "madvise"


def tasks_for(capture: str, policies: list[str], enabled: list[str], defrag: list[str]) -> list[Task]:
    return [Task(capture, p, e, d) for e in enabled for d in defrag for p in policies]


def pending(tasks: list[Task], root: Path) -> tuple[list[Task], int]:
    """The tasks whose partition does not exist yet, and how many do (complete, by the rename)."""
    todo = [t for t in tasks if not t.partition(root).is_dir()]
    return todo, len(tasks) - len(todo)


def clean_partials(root: Path) -> int:
    """Remove the hidden build directories under SWEEP's partitions. Run under the sweep lock: every
    one of them is then left by a killed task (a pid check would not do: workers run on other hosts)."""
    removed = 0
    for cap in root.glob("capture=*"):
        for d in [*cap.glob(".*"), *cap.glob("policy=*/.*")]:
            if d.is_dir():
                shutil.rmtree(d, ignore_errors=True)
                removed += 1
    return removed


# ---------------------------------------------------------------------------------------------------
# Worker side: plain functions of their arguments. Library errors come back as {"error": message}
# (our exceptions do not survive pickling, and a failed task must not look like a dead worker).

def run_ingest(source: str, dataset: str) -> dict:
    from thpreplay.ingest import ingest

    try:
        if not (Path(dataset) / "dataset.json").is_file():  # a retried task may find it done
            Path(dataset).parent.mkdir(parents=True, exist_ok=True)
            ingest([source], dataset, force=False, progress=None)
        return {}
    except ThpreplayError as e:
        return {"error": e.message}


@dataclass(frozen=True)
class Failed:
    """What a prepare task returns for a capture it cannot read (its simulate tasks report it)."""

    message: str


def run_prepare(dataset: str, enabled: str, defrag: str, params: Params):
    """The replay inputs of one capture under one setting, shared by its policies' tasks (as in
    `thpreplay simulate`; replay does not change them). Dask keeps them on the worker that made them
    and runs the policies there, moving them (~14 MB for the largest sample) only to balance the load."""
    from thpreplay.dataset import reading
    from thpreplay.simulate import prepare

    try:
        with reading(dataset):  # not replaced while it is read (an ingest --force of an input dataset waits)
            return prepare(dataset, enabled=enabled, defrag=defrag, params=params)
    except ThpreplayError as e:
        return Failed(e.message)


def refusal(task: Task) -> str | None:
    """Why the policy refuses the task's setting (a defrag mode its era did not have), if it does."""
    from thpreplay.policy.registry import get_policy

    try:
        call_attempts(get_policy(task.policy), ThpSettings(enabled=task.enabled, defrag=task.defrag), True)
    except PolicyError as e:
        if isinstance(e, PolicyCrashed) or e.message.startswith("unknown policy"):
            raise
        return e.message
    return None


def run_simulate(inputs, task: Task, params: Params, root: str, samples: dict | None = None) -> dict:
    """Replay one policy on prepared inputs and write the partition under root. A refused setting gives
    an empty partition that says why (inputs is then not needed and may be None). samples: {"n", "seed"}
    of sweep --samples (the summary's percentile columns, as simulate --samples)."""
    from thpreplay.policy.registry import get_policy
    from thpreplay.simulate import replay

    final = task.partition(Path(root))
    if final.is_dir():
        return {"skipped": True}
    try:
        refused = refusal(task)
        result = None
        if refused is None:
            if isinstance(inputs, Failed):
                return {"error": inputs.message}
            result = replay(replace(inputs, notes=list(inputs.notes)), [get_policy(task.policy)],
                            samples=samples["n"] if samples else None, seed=samples["seed"] if samples else 1)
        write_partition(final, task, result, params, refused, samples)
        return {"refused": refused} if refused else {}
    except ThpreplayError as e:
        return {"error": e.message}


def _task_record(task: Task, result, params: Params, refused: str | None, samples: dict | None = None) -> dict:
    info = dict(capture=task.capture, policy=task.policy, enabled=task.enabled, defrag=task.defrag,
                params={**params.as_dict(), "explicit": list(params.explicit)}, refused=refused,
                schemas={name: schemas.load(name).id for name in schemas.SIMULATION_TABLES})
    if samples:   # sweep --samples only: a sweep without them writes the record it always did
        info["samples"] = dict(samples)
        if result is not None and result.samples:
            info.update(sample_draws=result.samples["draws"], sample_figures=result.samples["figures"])
    if result is not None:
        inp = result.inputs
        info.update(kernel_release=inp.kernel_release, compact_stall_rule=inp.stall_rule, notes=inp.notes,
                    counters=result.runs[0].counters)
    return info


def write_partition(final: Path, task: Task, result, params: Params, refused: str | None,
                    samples: dict | None = None) -> None:
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = make_tmp(final)
    try:
        frames = {"outcome_summary": result.summary if result else None,
                  "outcomes": result.runs[0].outcomes if result else None,
                  "memory_series": result.runs[0].series if result else None}
        for name, frame in frames.items():
            table = schemas.load(name)
            table.write(table.conform(frame) if frame is not None else table.empty(), tmp / f"{name}.parquet")
        record = _task_record(task, result, params, refused, samples)
        (tmp / TASK_FILE).write_text(json.dumps(record, indent=1, sort_keys=True) + "\n")
        replace_dir(tmp, final)
    except BaseException as e:
        shutil.rmtree(tmp, ignore_errors=True)
        reason = io_error_reason(e, final.parent) if isinstance(e, Exception) else None
        if reason is None:
            raise
        raise OutputError(f"{final}: writing the partition failed: {reason}") from None


# ---------------------------------------------------------------------------------------------------
# Client side.

def _lock(root: Path) -> int:
    try:
        fd = exclusive_lock(root / ".sweep.lock")
    except OSError as e:
        raise OutputError(f"{root}: cannot write: {e.strerror}") from None
    if fd is None:
        raise OutputError(f"{root}: another thpreplay sweep is writing this sweep")
    return fd


def _record(root: Path, captures: list[Capture], policies: list[str], enabled, defrag, params: Params,
            samples: dict | None = None) -> None:
    """Write sweep.json, merged with the one a previous run wrote. Refuses a capture name that now
    means another input, and other params or --samples (the finished partitions would not match)."""
    path = root / SWEEP_FILE
    ask = dict(format="thpreplay-sweep", version=FORMAT, captures={}, policies=policies, enabled=enabled,
               defrag=defrag, params={**params.as_dict(), "explicit": list(params.explicit)})
    if samples:
        ask["samples"] = dict(samples)
    if path.is_file():
        try:
            old = json.loads(path.read_text())
        except (OSError, ValueError) as e:
            raise InputError(str(path), f"unreadable sweep record: {e}") from None
        if old.get("version") != FORMAT:
            raise InputError(str(path), f"sweep format version {old.get('version')}; this thpreplay writes {FORMAT}")
        if old.get("params") != ask["params"]:
            raise OutputError(f"{root}: made with other --params; its partitions would not match",
                              hint="write this sweep to a new directory")
        if old.get("samples") != ask.get("samples"):
            s = old.get("samples")
            made = f"--samples {s.get('n')} --seed {s.get('seed')}" if isinstance(s, dict) else "no --samples"
            raise OutputError(f"{root}: made with {made}; its partitions would not match",
                              hint="write this sweep to a new directory")
        ask["captures"] = old.get("captures", {})
    for c in captures:
        known = ask["captures"].get(c.name)
        if known and known["source"] != c.source:
            raise InputError(c.source, f"capture name '{c.name}' already means {known['source']} in {root}",
                             hint="rename the input or write a new sweep")
        ask["captures"][c.name] = {"source": c.source, "dataset": c.dataset}
    text = json.dumps(ask, indent=1, sort_keys=True) + "\n"
    write_output(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))


# A replay holds its worker's CPU: more local processes than a few per CPU only queue and take memory.
MAX_WORKERS_PER_CPU = 4
# and each takes memory: its libraries and one capture's replay (the bundled samples peak near 400 MB)
WORKER_MEMORY = 512 << 20


def _available_memory() -> int | None:
    """Bytes of memory available to new processes (MemAvailable, within a cgroup v2 limit), or None."""
    avail = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                avail = int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    try:
        cg = Path("/sys/fs/cgroup")
        limit = (cg / "memory.max").read_text().strip()
        if avail is not None and limit != "max":
            avail = min(avail, int(limit) - int((cg / "memory.current").read_text()))
    except (OSError, ValueError):
        pass
    return avail


def local_worker_limit() -> tuple[int, str]:
    """The most worker processes a local cluster may have here, and why: MAX_WORKERS_PER_CPU per CPU,
    and one per WORKER_MEMORY of available memory (at least one)."""
    cpus = os.cpu_count() or 1
    limit, why = MAX_WORKERS_PER_CPU * cpus, f"{cpus} CPUs"
    avail = _available_memory()
    if avail is not None and max(1, avail // WORKER_MEMORY) < limit:
        limit, why = max(1, avail // WORKER_MEMORY), f"{avail / 2**30:.1f} GiB of memory available"
    return limit, why


class _Engine:
    """The Dask client of a sweep: of the scheduler at an address, or of a local cluster of worker
    processes that it starts (and stops in close)."""

    def __init__(self, scheduler: str | None, workers: int):
        self.client = self.cluster = self._runner = None
        self._sigint = None
        if threading.current_thread() is threading.main_thread():
            self._sigint = signal.signal(signal.SIGINT, _quiet_interrupt)
        try:
            self._start(scheduler, workers)
        except BaseException:
            self.close(now=True)
            raise

    def _start(self, scheduler: str | None, workers: int) -> None:
        import logging
        import multiprocessing

        from distributed import Client, LocalCluster

        if scheduler:
            try:
                self.client = Client(scheduler, timeout="20s")
            except (OSError, TimeoutError, ValueError) as e:
                raise ThpreplayError(f"cannot reach the Dask scheduler at {scheduler}: {e}") from None
            return
        engine = self

        class Cluster(LocalCluster):  # known to close() from its first moment, even if its start is interrupted
            def __init__(self, **kwargs):
                engine.cluster = self
                super().__init__(**kwargs)

        # one thread per worker process: the replay holds the GIL, so processes are the parallelism
        # no dashboard, and its HTTP server on a free port (the default 8787 warns when another cluster has it)
        # and polars, whose pool would take every core in each worker, gets its share
        share = str(max(1, (os.cpu_count() or 1) // workers))
        self._others = {p.pid for p in multiprocessing.active_children()}
        self._runner = _quiet_loop()
        Cluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=":0",
                scheduler_kwargs={"dashboard": False}, silence_logs=logging.ERROR,
                env={"POLARS_MAX_THREADS": share}, loop=self._runner.loop)
        self.client = Client(self.cluster)

    def close(self, now: bool = False) -> None:
        """Close the client and the local cluster. now (after a Ctrl-C, or a failed start): at once and
        quietly: the local workers are killed, whatever they were doing (a partition is built in a
        hidden directory, which the next run removes)."""
        if self._sigint is not None:
            signal.signal(signal.SIGINT, self._sigint)
        if not now:
            self.client.close()
            if self.cluster is not None:
                self.cluster.close()
                self._runner.stop()
            return
        import multiprocessing

        _quiet_logs()
        if self.cluster is None:
            if self.client is not None:
                with contextlib.suppress(Exception):
                    self.client.close()
            return
        from distributed.core import Status

        self.cluster.shutdown_on_close = False  # nothing left for distributed's own exit handler
        for nanny in list(self.cluster.workers.values()):
            nanny.status = Status.closing  # so that it does not start its worker again
        # every worker process is gone before this process goes: one still starting when its parent
        # has exited fails to read its start-up data and says so in a traceback
        for _ in range(5):
            ours = [p for p in multiprocessing.active_children() if p.pid not in self._others]
            if not ours:
                break
            for p in ours:
                p.kill()
            for p in ours:
                p.join(2)


def _quiet_logs() -> None:
    """Nothing more from Dask's loggers (each: the command line sets levels of some of them)."""
    import logging

    for name in [n for n in logging.root.manager.loggerDict if n.split(".")[0] in ("distributed", "asyncio", "tornado")]:
        logging.getLogger(name).setLevel(logging.CRITICAL + 1)


def _quiet_interrupt(signum, frame):
    """Ctrl-C during a sweep: Dask's logs go quiet first (the scheduler would log the gather it cancels)."""
    _quiet_logs()
    raise KeyboardInterrupt


def _quiet_loop():
    """A started event-loop runner (a thread) for a local cluster whose worker processes never see a
    Ctrl-C: the thread, which starts them, blocks SIGINT, and a signal mask is inherited across fork and
    exec. A Ctrl-C at the terminal then reaches only this process, which stops them (_Engine.close)."""
    from multiprocessing import resource_tracker

    from distributed.utils import LoopRunner

    # multiprocessing unblocks SIGINT in the thread that first starts its resource tracker: start it here
    resource_tracker.ensure_running()
    old = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        runner = LoopRunner(asynchronous=False)
        runner.start()
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)
    return runner


# ("add", n): n more tasks to run (negative: found finished, or not attempted); ("done", label);
# ("failed", "<capture> <policy> <settings>: <error>")
Events = Callable[[str, object], None]


def sweep(inputs: list[str], output: str | Path, *, policies: list[str] | None = None,
          kernels: list[str] | None = None, enabled: list[str] | None = None, defrag: list[str] | None = None,
          params_file: str | None = None, scheduler: str | None = None, workers: int = 2,
          on_event: Events | None = None, samples: int | None = None, seed: int | None = None) -> SweepSummary:
    """Run every capture x policy x setting not yet in SWEEP. A failed task is recorded in the summary
    (and reported through on_event) and does not stop the others. samples, seed: as simulate's, per
    partition (the summary's percentile columns)."""
    from thpreplay.sim.params import check_samples
    from thpreplay.simulate import select_policies

    check_samples(samples, seed)
    sampling = dict(n=samples, seed=1 if seed is None else seed) if samples else None

    root = Path(output)
    emit = on_event or (lambda kind, value: None)
    if not inputs:
        raise ThpreplayError("no capture or dataset given")
    names = [safe_value("policy", p.name) for p in select_policies(policies, kernels)]
    for kind, values in (("enabled", enabled), ("defrag", defrag)):
        for v in values or []:
            safe_value(kind, v)
    params = Params.load(params_file)
    if scheduler is None:
        limit, why = local_worker_limit()
        if not 1 <= workers <= limit:
            raise ThpreplayError(f"--workers {workers}: this machine has {why}, so a local cluster takes 1 to "
                                 f"{limit} worker processes (use --scheduler for a larger cluster)")
    elif not re.fullmatch(r"(?:[a-z]+://)?[^\s/:]+:\d{1,5}", scheduler):
        raise ThpreplayError(f"--scheduler {scheduler}: not a Dask scheduler address (tcp://HOST:PORT)")
    if problem := dataset_path_problem(root):
        raise OutputError(f"{root}: {problem}")
    if root.exists() and not root.is_dir():
        raise OutputError(f"{root}: exists and is not a directory")
    if root.exists() and not is_sweep(root) and any(root.iterdir()):
        raise OutputError(f"{root}: exists and is not a sweep (no {SWEEP_FILE})")
    captures = plan_captures(inputs, root)
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OutputError(f"{root}: cannot create it: {e.strerror}") from None
    fd = _lock(root)
    try:
        _record(root, captures, names, enabled, defrag, params, sampling)
        clean_partials(root)
        summary = SweepSummary(root)
        engine = _Engine(scheduler, workers)
        try:
            _run(engine.client, root, captures, names, enabled, defrag, params, summary, emit, sampling)
        except BaseException:
            engine.close(now=True)
            raise
        engine.close()
        return summary
    finally:
        os.close(fd)


def _run(client, root: Path, captures: list[Capture], policies: list[str], enabled, defrag, params: Params,
         summary: SweepSummary, emit: Events, samples: dict | None = None) -> None:
    from distributed import as_completed

    per_capture = len(policies) * len(enabled or [None]) * len(defrag or [None])
    waiting: dict[object, tuple[str, object]] = {}  # future -> ("ingest", Capture) | ("simulate", Task)

    def plan_partitions(c: Capture) -> list:
        if enabled and defrag:
            cap_e, cap_d = None, None
        else:
            cap_e, cap_d = capture_settings(c.dataset)
        tasks = tasks_for(c.name, policies, enabled or [cap_e], defrag or [cap_d])
        todo, done = pending(tasks, root)
        summary.skipped += done
        emit("add", -done)  # counted as tasks to run until now
        futures, prepared = [], {}
        for t in todo:
            inputs = None
            if refusal(t) is None:  # one prepare task per setting, only for the policies that run
                key = (t.enabled, t.defrag)
                if key not in prepared:
                    prepared[key] = client.submit(run_prepare, c.dataset, t.enabled, t.defrag, params,
                                                  key=f"prepare-{c.name}-{t.settings}", pure=False, retries=0)
                inputs = prepared[key]
            f = client.submit(run_simulate, inputs, t, params, str(root), samples, key=f"simulate-{t.label()}",
                              pure=False, retries=0)
            waiting[f] = ("simulate", t)
            futures.append(f)
        return futures  # the prepare futures are dropped: Dask frees the inputs once their tasks ran

    first = []
    total = 0
    for c in captures:
        total += per_capture
        if c.needs_ingest and not (Path(c.dataset) / "dataset.json").is_file():
            f = client.submit(run_ingest, c.source, c.dataset, key=f"ingest-{c.name}", pure=False, retries=0)
            waiting[f] = ("ingest", c)
            first.append(f)
            total += 1
    emit("add", total)
    ready = [c for c in captures if not any(w[1] is c for w in waiting.values())]
    for c in ready:
        try:
            first += plan_partitions(c)
        except ThpreplayError as e:
            emit("add", 1 - per_capture)
            _fail(summary, emit, f"{c.name}: {e.message}")
    queue = as_completed(first)
    for future in queue:
        kind, what = waiting.pop(future)
        summary.tasks += 1
        try:
            out = future.result()
        except Exception as e:  # the task raised (a bug) or its workers kept dying (KilledWorker)
            out = {"error": f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}".rstrip(": ")}
        if kind == "ingest":
            if "error" in out:
                emit("add", -per_capture)  # its partitions are not attempted
                _fail(summary, emit, f"{what.name} ingest: {out['error']}")
                continue
            emit("done", f"{what.name} ingest")
            try:
                for f in plan_partitions(what):
                    queue.add(f)
            except ThpreplayError as e:
                emit("add", 1 - per_capture)
                _fail(summary, emit, f"{what.name}: {e.message}")
            continue
        if "error" in out:
            _fail(summary, emit, f"{what.label()}: {out['error']}")
            continue
        if out.get("refused"):
            summary.refused[out["refused"]] = summary.refused.get(out["refused"], 0) + 1
        summary.written += 0 if out.get("skipped") else 1
        summary.skipped += 1 if out.get("skipped") else 0
        emit("done", what.label())


def _fail(summary: SweepSummary, emit: Events, line: str) -> None:
    summary.failures.append(line)
    emit("failed", line)
