"""The README's worked example runs as written and prints what the README shows.

Every ```console block between the worked-example markers is a list of `$ command` lines, each followed
by its expected standard output. They run in order with bash in a fresh directory that has the
repository's sample_traces/, with the venv's `thpreplay` first on PATH. A command whose line ends with
`# exit status N` must exit N; every other must exit 0, and none may write to stderr.

After a deliberate change of output, refresh the README with:

    .venv/bin/python tests/test_readme.py --update
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
BEGIN = "<!-- worked-example: tests/test_readme.py runs these commands and compares their output -->"
END = "<!-- /worked-example -->"
EXIT = re.compile(r"#\s*exit status (\d+)\s*$")


@dataclass
class Step:
    command: str
    expected: list[str]
    first: int  # index in the README's lines of the first expected-output line
    last: int   # index one past the last


def steps(lines: list[str]) -> list[Step]:
    start, end = lines.index(BEGIN), lines.index(END)
    out: list[Step] = []
    in_block = False
    for i in range(start + 1, end):
        line = lines[i]
        if line.startswith("```"):
            in_block = line.strip() == "```console"
            continue
        if not in_block:
            continue
        if line.startswith("$ "):
            out.append(Step(line[2:], [], i + 1, i + 1))
        elif out:
            out[-1].expected.append(line)
            out[-1].last = i + 1
    return out


def run(step: Step, cwd: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}", COLUMNS="100")
    env.pop("THPREPLAY_DEBUG", None)
    return subprocess.run(["bash", "-c", step.command], cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


def workdir() -> tempfile.TemporaryDirectory:
    tmp = tempfile.TemporaryDirectory(prefix="thpreplay-readme-")
    (Path(tmp.name) / "sample_traces").symlink_to(ROOT / "sample_traces")
    return tmp


def test_the_worked_example_runs_as_written():
    lines = README.read_text().splitlines()
    todo = steps(lines)
    assert len(todo) >= 7  # ingest, simulate, validate, three queries, report
    with workdir() as tmp:
        for step in todo:
            r = run(step, Path(tmp))
            m = EXIT.search(step.command)
            assert r.returncode == (int(m.group(1)) if m else 0), (step.command, r.stderr)
            assert r.stderr == "", (step.command, r.stderr)
            got = [line.rstrip() for line in r.stdout.splitlines()]
            assert got == [line.rstrip() for line in step.expected], step.command


def update() -> None:
    lines = README.read_text().splitlines()
    with workdir() as tmp:
        results = []
        for step in steps(lines):
            r = run(step, Path(tmp))
            results.append((step, [line.rstrip() for line in r.stdout.splitlines()]))
            print(f"{r.returncode} {step.command}", file=sys.stderr)
    for step, got in reversed(results):  # from the end, so earlier indices stay valid
        lines[step.first:step.last] = got
    README.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    if sys.argv[1:] != ["--update"]:
        sys.exit(__doc__)
    update()
