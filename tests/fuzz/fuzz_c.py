"""Mutation fuzzing of thpreplay's C paths under AddressSanitizer and UBSan (`make fuzz-asan`).

Run by `make fuzz-asan`, which builds parse/_prefix.c and sim/_engine.c with
-fsanitize=address,undefined into a copy of the package and runs this file with libasan preloaded.
A memory error aborts the process with the sanitizer's report; any Python exception other than
thpreplay's own errors is written as $OUT/crash-c-<sha1> and fails the run.

Three loops share the time (FUZZ_SECONDS), each input made by mutating real trace lines
(tests/fuzz/corpus and tests/data/bad/*.txt) with a seeded generator, so a run is reproducible
with FUZZ_SEED:

- the prefix cutter (parse/_prefix.c) on whole mutated chunks, with the layout that
  text.detect_layout finds in them (the way ingest calls it) and with layouts skewed by a few
  columns (a chunk whose lines do not match the sampled layout);
- `ingest` of a mutated file, end to end (chunking, the C cutter, the parser, the writers);
- `simulate` of the datasets that ingested with events, so the replay core runs on parsed hostile
  values (pfn, order, node, timestamps at their bounds).
The hypothesis property tests of the replay core (tests/test_engine.py) are run under the same
sanitizers by the make target after this file.
"""

from __future__ import annotations

import hashlib
import os
import random
import signal
import sys
import tempfile
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

from thpreplay.errors import ThpreplayError  # noqa: E402
from thpreplay.parse import prefix, text  # noqa: E402

BOUNDARY = [b"0", b"-1", b"4294967295", b"4294967296", b"9223372036854775807", b"9223372036854775808",
            b"18446744073709551615", b"99999999999999999999999", b"0x", b"0xffffffffffffffff", b"-0x1",
            b"1e308", b"nan", b"", b" ", b"\x00", b"\xff\xfe", b"(null)", b"[FAILED TO PARSE]"]
SEPARATORS = [b" ", b"  ", b"[", b"]", b":", b": ", b".", b"=", b"|", b"\t", b"\r", b"-", b"\n"]


def seeds() -> list[bytes]:
    files = sorted((ROOT / "tests" / "fuzz" / "corpus").iterdir())
    files += sorted((ROOT / "tests" / "data" / "bad").glob("*.txt"))
    return [p.read_bytes() for p in files if p.is_file() and p.stat().st_size]


def mutate(rng: random.Random, data: bytes, pool: list[bytes]) -> bytes:
    lines = data.split(b"\n")
    for _ in range(rng.randint(1, 8)):
        op = rng.randrange(9)
        i = rng.randrange(len(lines))
        line = lines[i]
        if op == 0 and line:  # flip a byte
            j = rng.randrange(len(line))
            line = line[:j] + bytes([rng.randrange(256)]) + line[j + 1:]
        elif op == 1:  # a number at its bound in place of a digit run
            j = rng.randrange(len(line) + 1)
            k = j
            while k < len(line) and line[k:k + 1].isalnum():
                k += 1
            line = line[:j] + rng.choice(BOUNDARY) + line[k:]
        elif op == 2 and line:  # delete a span (a column lost)
            j = rng.randrange(len(line))
            line = line[:j] + line[j + rng.randint(1, 12):]
        elif op == 3:  # insert a separator (a column shifted)
            j = rng.randrange(len(line) + 1)
            line = line[:j] + rng.choice(SEPARATORS) + line[j:]
        elif op == 4:  # splice a line of another seed
            other = rng.choice(pool).split(b"\n")
            lines.insert(i, rng.choice(other))
            continue
        elif op == 5:  # duplicate a line many times (chunk boundaries, long files)
            lines[i:i] = [line] * rng.randint(2, 300)
            continue
        elif op == 6:  # a long field
            j = rng.randrange(len(line) + 1)
            line = line[:j] + rng.choice([b"9", b" ", b"x", b"\xc3\xa9"]) * rng.randint(64, 70000) + line[j:]
        elif op == 7:  # cut the line short
            line = line[:rng.randrange(len(line) + 1)]
        else:  # drop the line
            del lines[i]
            if not lines:
                lines = [b""]
            continue
        lines[i] = line
    out = b"\n".join(lines)
    return out[: rng.randrange(len(out) + 1)] if rng.random() < 0.1 else out


def cut_once(data: bytes, rng: random.Random) -> None:
    sample = data[: 1 << 16].decode("utf-8", errors="replace").split("\n")[:400]
    try:
        fmt = text.detect_format(sample, "fuzz")
    except ThpreplayError:
        return
    layout = text.detect_layout(sample, fmt)
    if layout.fixed is None or layout.tgid:
        return
    prefix.cut(data, 1, rng.random() < 0.3, layout)
    # the same chunk against a layout a few columns off: lines that do not fit must be misfits
    ob, cb, tc, ec = layout.fixed
    d = rng.randint(-3, 3)
    skew = (max(ob + d, 0), max(cb + d, 1), max(tc + d, 2), ec if ec < 0 else max(ec + d, 3))
    if skew[0] < skew[1] < skew[2] and (skew[3] < 0 or skew[3] > skew[2]):
        prefix._prefix.cut(data, *skew, layout.fmt == "perf", layout.lat_width, layout.frac_digits or 0,
                           rng.random() < 0.3)


def ingest_once(data: bytes, work: Path, n: int, simulate_too: bool) -> None:
    from thpreplay.ingest import ingest
    from thpreplay.simulate import simulate

    src = work / f"in-{n}.txt"
    src.write_bytes(data)
    out = work / f"ds-{n}"
    try:
        summary = ingest([str(src)], out, force=True)
    except ThpreplayError:
        return
    # a topology inferred from hostile pfns can span terabytes: a real replay of that takes minutes and
    # gigabytes, which is no finding; replay only what a small machine holds
    from thpreplay.sim.state import read_table
    topo = read_table(out, "topology")
    if topo.height and int(topo["spanned"].sum()) > 1 << 22:
        return
    if simulate_too and sum(summary.events.values()):
        try:
            simulate(out, policies=["no-local-reclaim-7.0", "thisnode-noretry-5.6"])
        except ThpreplayError:
            pass


class Hang(Exception):
    """An input that took longer than FUZZ_HANG_SECONDS (a parser gone quadratic or worse)."""


def _hang(signum, frame):
    raise Hang(f"no answer in {os.environ.get('FUZZ_HANG_SECONDS', '20')} s")


def main() -> int:
    seconds = float(os.environ.get("FUZZ_SECONDS", "300"))
    seed = int(os.environ.get("FUZZ_SEED", "1"))
    out = Path(os.environ.get("FUZZ_OUT", "out"))
    c_file = getattr(prefix._prefix, "__file__", "")
    print(f"fuzz-asan: prefix cutter {c_file}, seed {seed}, {seconds:.0f} s", flush=True)
    if not prefix.AVAILABLE:
        print("fuzz-asan: the C prefix helper is not built", file=sys.stderr)
        return 2
    warnings.simplefilter("error", RuntimeWarning)  # e.g. a null cast to an integer: a silently wrong value
    hang_after = float(os.environ.get("FUZZ_HANG_SECONDS", "20"))
    signal.signal(signal.SIGALRM, _hang)
    rng = random.Random(seed)
    pool = seeds()
    counts = {"cut": 0, "ingest": 0}
    deadline = time.monotonic() + seconds
    with tempfile.TemporaryDirectory(prefix="thpreplay-fuzz-") as tmp:
        work = Path(tmp)
        n = 0
        while time.monotonic() < deadline:
            n += 1
            data = mutate(rng, rng.choice(pool), pool)
            kind = "ingest" if n % 25 == 0 else "cut"
            signal.setitimer(signal.ITIMER_REAL, hang_after)
            try:
                if kind == "cut":
                    cut_once(data, rng)
                else:
                    ingest_once(data, work, n, simulate_too=n % 100 == 0)
            except ThpreplayError:
                pass
            except Exception as e:  # noqa: BLE001 - every other exception is a finding
                crash = out / f"crash-c-{hashlib.sha1(data).hexdigest()}"
                crash.parent.mkdir(parents=True, exist_ok=True)
                crash.write_bytes(data)
                print(f"fuzz-asan: {type(e).__name__}: {e} (input saved as {crash})", file=sys.stderr)
                return 1
            finally:
                signal.setitimer(signal.ITIMER_REAL, 0)
            counts[kind] += 1
    print(f"fuzz-asan: {counts['cut']} chunks cut, {counts['ingest']} files ingested, no sanitizer report",
          flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
