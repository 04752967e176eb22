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
  values (pfn, order, node, timestamps at their bounds);
- the perf.data reader (parse/_perfdata.c) on real captures (tests/data/perfdata) with header fields,
  sizes and offsets set to boundary values, spans zeroed, records repeated, the file cut short.
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
                           rng.random() < 0.3, prefix.SPECS if rng.random() < 0.7 else None)


def perfdata_seeds() -> list[bytes]:
    import lzma
    return [lzma.decompress(p.read_bytes()) for p in sorted((ROOT / "tests" / "data" / "perfdata").glob("*.perf.data.xz"))]


PERF_BOUNDS = [0, 1, 7, 8, 9, 16, 0xFF, 0xFFFF, 0x7FFFFFFF, 0xFFFFFFFF, 1 << 32, (1 << 63) - 1, (1 << 64) - 1]


def mutate_perfdata(rng: random.Random, data: bytes) -> bytes:
    """A real perf.data with a few fields damaged: most mutations hit the header, the attrs, the
    feature sections and the first records, where the sizes and offsets are."""
    import struct
    d = bytearray(data)
    data_off = struct.unpack_from("<Q", d, 40)[0] if len(d) >= 48 else 0
    hot = [0, 104, 256, 1024, data_off, data_off + 512, max(len(d) - 4096, 0)]
    for _ in range(rng.randint(1, 6)):
        at = min(rng.choice(hot) + rng.randrange(4096), max(len(d) - 8, 0))
        op = rng.randrange(5)
        if op == 0:
            d[at] = rng.randrange(256)
        elif op in (1, 2):  # a size/offset/count field at a boundary
            width = rng.choice((2, 4, 8))
            v = rng.choice(PERF_BOUNDS) & ((1 << (8 * width)) - 1)
            d[at:at + width] = v.to_bytes(width, "little")
        elif op == 3:  # a span of zeros (a lost page of the file)
            d[at:at + rng.randint(1, 256)] = bytes(min(256, len(d) - at))
        else:  # records repeated or moved
            n = rng.randint(8, 512)
            d[at:at] = d[at:at + n]
    if rng.random() < 0.15:
        d = d[: rng.randrange(len(d) + 1)]
    return bytes(d)


def perfdata_once(data: bytes, work: Path) -> None:
    """The C reader on a damaged perf.data: a clean error or whole lines, never a memory error."""
    from thpreplay.parse import _perfdata
    src = work / "in.perf.data"
    src.write_bytes(data)
    try:
        reader = _perfdata.Reader(str(src))
        while True:
            text, lines = reader.read(1 << 20)
            if not text:
                break
            assert text.endswith(b"\n") and text.count(b"\n") == lines
        reader.info()
    except (_perfdata.Error, _perfdata.Unsupported):
        pass
    # the typed route (read_typed, plans from the damaged formats): typed rows and text, never a memory error
    from thpreplay.errors import InputError
    from thpreplay.parse import perfdata
    try:
        native, _ = perfdata.open_native(str(src), "fuzz")
        if native is not None:
            for chunk in native.chunks():
                if isinstance(chunk, perfdata.TypedChunk):
                    t = chunk.typed
                    assert t.typed[0] + len(t.xlines) // 8 == t.lines and t.text.count(b"\n") == len(t.xlines) // 8
    except InputError:
        pass


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
    try:
        from thpreplay.parse import _perfdata  # noqa: F401
        perf_pool = perfdata_seeds()
    except ImportError:
        print("fuzz-asan: the perf.data reader is not built", file=sys.stderr)
        return 2
    counts = {"cut": 0, "ingest": 0, "perfdata": 0}
    deadline = time.monotonic() + seconds
    with tempfile.TemporaryDirectory(prefix="thpreplay-fuzz-") as tmp:
        work = Path(tmp)
        n = 0
        while time.monotonic() < deadline:
            n += 1
            kind = "ingest" if n % 25 == 0 else "perfdata" if n % 4 == 0 else "cut"
            if kind == "perfdata":
                data = mutate_perfdata(rng, rng.choice(perf_pool))
            else:
                data = mutate(rng, rng.choice(pool), pool)
            signal.setitimer(signal.ITIMER_REAL, hang_after)
            try:
                if kind == "cut":
                    cut_once(data, rng)
                elif kind == "perfdata":
                    perfdata_once(data, work)
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
    print(f"fuzz-asan: {counts['cut']} chunks cut, {counts['ingest']} files ingested, {counts['perfdata']} "
          f"damaged perf.data files read, no sanitizer report",
          flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
