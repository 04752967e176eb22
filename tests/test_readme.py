r"""The README's worked examples run as written and print what the README shows.

Every ```console block between a pair of worked-example markers (the 2019 question; the fleet sweep)
is a list of `$ command` lines (a line ending in `\` goes on in the next), each followed by its expected
standard output. Each pair's commands run in order with bash in a fresh directory that has the
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


def examples(lines: list[str]) -> list[list[Step]]:
    """The steps of each pair of markers, in README order."""
    begins = [i for i, line in enumerate(lines) if line == BEGIN]
    return [steps(lines, b, lines.index(END, b)) for b in begins]


def steps(lines: list[str], start: int, end: int) -> list[Step]:
    out: list[Step] = []
    in_block = continued = False
    for i in range(start + 1, end):
        line = lines[i]
        if line.startswith("```"):
            in_block = line.strip() == "```console"
            continue
        if not in_block:
            continue
        if continued:  # the command goes on; its output starts after this line
            out[-1].command += "\n" + line
            out[-1].first = out[-1].last = i + 1
            continued = line.endswith("\\")
        elif line.startswith("$ "):
            out.append(Step(line[2:], [], i + 1, i + 1))
            continued = line.endswith("\\")
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


def test_the_worked_examples_run_as_written():
    lines = README.read_text().splitlines()
    todo = examples(lines)
    assert [len(e) >= n for e, n in zip(todo, (7, 3))] == [True, True]  # the 2019 question; the sweep
    for example in todo:
        with workdir() as tmp:
            for step in example:
                r = run(step, Path(tmp))
                m = EXIT.search(step.command)
                assert r.returncode == (int(m.group(1)) if m else 0), (step.command, r.stderr)
                assert r.stderr == "", (step.command, r.stderr)
                got = [line.rstrip() for line in r.stdout.splitlines()]
                assert got == [line.rstrip() for line in step.expected], step.command


def update() -> None:
    lines = README.read_text().splitlines()
    results = []
    for example in examples(lines):
        with workdir() as tmp:
            for step in example:
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
