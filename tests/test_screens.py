"""What a user sees: the simulate table at 80 columns with the capture's own row first, and the report's
summary, charts and fleet page (the "as captured" row, era order, percent rather than fractions).

The captured figures are checked against validate.observed (the figures `thpreplay validate` compares
with), the policies' against the simulation's outcome_summary.
"""

from __future__ import annotations

import fcntl
import html
import os
import pty
import re
import shutil
import struct
import subprocess
import termios
from pathlib import Path

import polars as pl
import pytest

from test_bad_input import _cli
from thpreplay.captured import LABEL, captured
from thpreplay.validate import observed

POLICIES = ["no-local-reclaim-7.0", "local-only-4.8", "relaxed-5.3-rc5"]  # asked out of era order
ERA = ["local-only-4.8", "relaxed-5.3-rc5", "no-local-reclaim-7.0"]


@pytest.fixture(scope="module")
def simulated(sample_dataset, tmp_path_factory) -> Path:
    from thpreplay.simulate import simulate

    ds = tmp_path_factory.mktemp("screens") / "qemu-6.1-2node"
    shutil.copytree(sample_dataset("qemu-6.1-2node"), ds)
    simulate(ds, policies=POLICIES)
    return ds


def _cli_env(columns: str | None) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("THPREPLAY_DEBUG", "COLUMNS")}
    if columns is not None:
        env["COLUMNS"] = columns
    return env


def report_cli(ds: Path, columns: str | None, *extra: str) -> str:
    proc = subprocess.run([*_cli(), "report", str(ds), "-o", str(ds.parent / "r.html"), *extra], capture_output=True,
                          env=_cli_env(columns), timeout=120)
    assert proc.returncode == 0 and proc.stderr == b"", proc.stderr.decode()
    return proc.stdout.decode()


def _rows(text: str, label: str) -> list[list[str]]:
    """The cells of the line starting with `label` and of the line under it (the differences)."""
    lines = text.splitlines()
    out = []
    for i, line in enumerate(lines):
        if line.startswith(label + " "):
            out.append(line[len(label):].split())
            out.append(lines[i + 1].split() if i + 1 < len(lines) else [])
    return out


def test_the_summary_at_80_columns_has_the_captured_row_and_cuts_nothing(simulated):
    out = report_cli(simulated, "80")
    lines = out.splitlines()
    assert max(len(line) for line in lines) <= 80, max(lines, key=len)
    assert "…" not in out
    obs = observed(simulated)
    pct = f"{100 * (obs['huge_local'] + obs['huge_remote']) / sum(obs[k] for k in ('huge_local', 'huge_remote', 'fallback')):.1f}%"
    # the narrow layout: placement, then costs; the captured row first in each, exact
    assert lines[0].split() == ["policy", "huge", "L", "huge", "R", "4K", "THP", "local"]
    assert lines[2].split() == [*LABEL.split(), str(obs["huge_local"]), str(obs["huge_remote"]), str(obs["fallback"]),
                                pct, "—"]
    cost_head = next(i for i, line in enumerate(lines) if line.split()[:2] == ["policy", "mean"])
    assert lines[cost_head].split() == ["policy", "mean", "p99", "stalls", "recl.", "swap", "cost"]
    cap = lines[cost_head + 2].split()
    assert cap[:2] == LABEL.split() and cap[-4:] == [f"{obs['compact_stall']:,}", f"{obs['pgsteal_direct']:,}",
                                                      f"{obs['pswpout']:,}", "—"]
    # every policy whole, in era order, its figures and its difference from the capture under them
    summary = pl.read_parquet(simulated / "simulation" / "outcome_summary").rows_by_key("policy", named=True,
                                                                                         unique=True)
    starts = [line.split()[0] for line in lines[3:cost_head] if line and not line.startswith(" ")]
    assert starts == ERA
    for p in ERA:
        s = summary[p]
        fallback = s["base_local"] + s["base_remote"] + s["failed"]
        figures, deltas, cost, _ = _rows(out, p)
        assert figures == [str(s["huge_local"]), str(s["huge_remote"]), str(fallback),
                           f"{100 * s['thp_coverage']:.1f}%", f"{100 * s['local_share']:.1f}%"]

        def d(v, ref):
            return "±0" if v == ref else f"{v - ref:+,}"
        assert deltas[:3] == [d(s["huge_local"], obs["huge_local"]), d(s["huge_remote"], obs["huge_remote"]),
                              d(fallback, obs["fallback"])]
        cov = (obs["huge_local"] + obs["huge_remote"]) / s["faults"]
        assert deltas[3:] == [f"{round(100 * (s['thp_coverage'] - cov), 1):+.1f}", "pp"]
        assert cost[-4:] == [f"{s['compact_stall']:,}", f"{s['pgsteal_direct']:,}", f"{s['pswpout']:,}",
                             f"{s['access_cost_mean']:.2f}"]
    assert "—: the trace does not say which node a fallback's 4 KiB pages came from" in lines
    assert "—: access cost is the model's price of a placement, not a measured figure" in lines
    assert "latency: as captured, measured in the trace; the policies', the model's estimate" in lines


def test_piped_without_columns_is_100_wide_and_the_same_every_time(simulated, capsys, monkeypatch):
    from thpreplay.report_text import print_report_summary
    from thpreplay.sim.state import read_table

    class Shown:  # what print_report_summary reads of a Report
        summary = read_table(simulated / "simulation", "outcome_summary")
        captured = captured(simulated)

    monkeypatch.delenv("COLUMNS", raising=False)
    print_report_summary(Shown)
    one = capsys.readouterr().out
    print_report_summary(Shown)
    assert capsys.readouterr().out == one
    assert max(len(line) for line in one.splitlines()) <= 100
    monkeypatch.setenv("COLUMNS", "200")
    print_report_summary(Shown)
    wide = capsys.readouterr().out
    assert wide.splitlines()[0].split()[:4] == ["policy", "huge", "local", "huge"]  # one table, full headers
    assert sum(1 for line in wide.splitlines() if line.startswith(LABEL)) == 1
    assert max(len(line) for line in wide.splitlines()) <= 200


def test_on_an_80_column_terminal(simulated):
    """A real terminal (a pty of 80x40): rich takes its width, so the narrow tables, nothing cut."""
    import sys

    show = ("import sys, types; from thpreplay.captured import captured; from thpreplay.sim.state import read_table; "
            "from thpreplay.report_text import print_report_summary; from pathlib import Path; ds = Path(sys.argv[1]); "
            "print_report_summary(types.SimpleNamespace(summary=read_table(ds / 'simulation', 'outcome_summary'), "
            "captured=captured(ds)))")
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 80, 0, 0))  # before the child asks
    child = subprocess.Popen([sys.executable, "-c", show, str(simulated)], stdout=slave, stderr=slave,
                             env=_cli_env(None))
    os.close(slave)
    chunks = []
    while True:
        try:
            data = os.read(master, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    assert child.wait(timeout=120) == 0
    os.close(master)
    text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", b"".join(chunks).decode()).replace("\r", "")
    assert "…" not in text
    assert any(line.startswith(LABEL) for line in text.splitlines())
    assert max(len(line) for line in text.splitlines()) <= 80
    for p in ERA:
        assert any(line.startswith(p + " ") for line in text.splitlines()), p


def _summary_rows(page: str) -> list[list[str]]:
    table = re.search(r"<table class='summary'>(.*?)</table>", page, re.S).group(1)
    rows = []
    for tr in re.findall(r"<tr[^>]*>(.*?)</tr>", table, re.S):
        cells = re.findall(r"<t[hd][^>]*>(.*?)</t[hd]>", tr, re.S)
        rows.append([html.unescape(re.sub(r"<[^>]+>", " ", c)).split() for c in cells])
    return rows


def test_the_report_puts_the_capture_first_everywhere(simulated):
    from thpreplay.report import build

    page = build(simulated).path.read_text()
    rows = _summary_rows(page)
    assert [r[0] for r in rows[1:]] == [LABEL.split(), *([p] for p in ERA)]  # captured, then era order
    obs = observed(simulated)
    cap = rows[1]
    assert cap[1:5] == [[str(obs["huge_local"])], [str(obs["huge_remote"])], [str(obs["fallback"])], ["36.5%"]]
    assert cap[5] == ["—"] and cap[-1] == ["—"]  # local share and access cost: not in the capture
    assert cap[8] == [f"{obs['compact_stall']:,}"]
    local_only = rows[2]
    assert local_only[2] == ["0", f"-{obs['huge_remote']}"] and local_only[4][1:] == ["-27.1", "pp"]
    # no fractions where percent is meant, no three-decimal microseconds
    assert not re.search(r"<td>0\.\d{3}</td>", page)
    assert not re.search(r"\d\.\d{3}(<br>|</td>)", page)
    # the charts: a captured bar, a captured latency strip, the snapshots in every free-huge panel
    outcomes = page[page.index("<figure id='outcomes'>"):page.index("<figure id='latency'>")]
    assert f"<title>{LABEL}: {obs['huge_remote']:,} huge, remote" in outcomes
    latency = page[page.index("<figure id='latency'>"):page.index("<figure id='free-huge'>")]
    assert f"<title>{LABEL}: p50 " in latency
    free = page[page.index("<figure id='free-huge'>"):]
    assert free.count(f"<title>{LABEL}, node 0: 29 free huge pages in the before snapshot</title>") == len(ERA)
    assert free.count(f"<title>{LABEL}, node 1: 78 free huge pages in the after snapshot</title>") == len(ERA)
    # the validation table's relative errors in percent
    assert re.search(r"<td>huge_remote</td><td>trace</td><td>78</td><td>\d+</td><td>\d+\.\d%</td>", page)


def _check_one_node(ds, want: tuple[int, int, int]) -> None:
    c = captured(ds)
    obs = observed(ds)
    got = (c.row["huge_local"], c.row["huge_remote"], c.row["base"])
    assert got == (obs["huge_local"], obs["huge_remote"], obs["fallback"]) == want
    assert c.row["local_share"] == 1.0 and c.row["thp_coverage"] == (want[0] + want[1]) / sum(want)
    for column in ("compact_stall", "compact_success", "compact_fail", "allocstall", "pgsteal_direct", "pswpout"):
        assert c.row[column] == obs[column], column
    assert c.row["access_cost_mean"] is None and "access_cost_mean" in c.unknown


def test_captured_figures_are_the_captures_own(sample_dataset):
    """One node (local-6.18-ftrace): the fallbacks' node is known (local); the vmstat deltas as validate
    reads them; nothing the capture lacks is filled in. Two nodes: the fallbacks' node is not traced."""
    _check_one_node(sample_dataset("local-6.18-ftrace"), (31, 0, 169))
    two = captured(sample_dataset("qemu-6.1-2node"))
    assert two.row["local_share"] is None and two.row["base_local"] is None and "local_share" in two.unknown
    assert (two.row["huge_local"], two.row["huge_remote"], two.row["base"]) == (27, 78, 183)


@pytest.mark.slow
def test_the_issue_capture_623_local_huge_pages(sample_dataset):
    """local-6.18-perf, where every chart showed the model's figures only: the kernel got 623."""
    _check_one_node(sample_dataset("local-6.18-perf"), (623, 0, 377))


def test_the_docs_screenshot_shows_what_the_report_prints(sample_dataset, tmp_path):
    """docs/report.png (the README's picture of the worked example's report: every built-in policy) carries
    the text of the summary it shows; a fresh report of the same capture must print the same figures."""
    from report_browser import SUMMARY_KEY, read_text, summary_text
    from thpreplay.report import build
    from thpreplay.simulate import simulate

    shown = read_text(Path(__file__).resolve().parents[1] / "docs" / "report.png", SUMMARY_KEY)
    assert shown, "docs/report.png has no summary text: refresh it with make screenshot"
    ds = tmp_path / "qemu-6.1-2node"
    shutil.copytree(sample_dataset("qemu-6.1-2node"), ds)
    simulate(ds)
    fresh = summary_text(build(ds, validate_capture=False).path.read_text())
    assert fresh.startswith("policy | huge local") and f"\n{LABEL} | 27 | 78 | 183 | 36.5% |" in fresh
    assert shown == fresh, ("docs/report.png shows figures the report no longer prints: refresh it with make screenshot "
                            "(or report out/qemu-6.1-2node after ingest and simulate, then tests/report_browser.py "
                            "out/qemu-6.1-2node/report.html docs/report.png)")


def test_a_policy_asked_by_kernel_version_is_labelled_by_it(simulated, tmp_path, capsys, monkeypatch):
    """simulate --kernel 5.3-rc4: the row reads `5.3-rc4 (local-only-4.8)`, in the terminal and the page."""
    from thpreplay.report import _summary_html
    from thpreplay.report_text import print_report_summary
    from thpreplay.sim.state import read_table
    from thpreplay.simulate import simulate

    ds = tmp_path / "k"
    shutil.copytree(simulated, ds)
    simulate(ds, kernels=["5.3-rc4"], replace=True)
    summary = read_table(ds / "simulation", "outcome_summary")

    class Shown:
        pass
    Shown.summary, Shown.captured = summary, captured(ds)
    monkeypatch.setenv("COLUMNS", "80")
    print_report_summary(Shown)
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[:2] for line in lines if line.startswith("5.3-rc4")] == [["5.3-rc4", "(local-only-4.8)"]] * 2
    assert "<tr><th>5.3-rc4 (local-only-4.8)</th>" in _summary_html(summary, Shown.captured)


def test_the_captured_summary_view_is_the_captured_row(simulated):
    """`thpreplay query DS "select * from captured_summary"` gives the row the tables print first."""
    from thpreplay.query import run

    got = run([simulated], "SELECT * FROM captured_summary").row(0, named=True)
    want = captured(simulated).row
    assert got["dataset"] == simulated.name and got["policy"] == LABEL and got["fallback"] == want["base"]
    for column in ("faults", "huge_local", "huge_remote", "thp_coverage", "local_share", "latency_mean_us",
                   "latency_p50_us", "latency_p99_us", "compact_stall", "compact_success", "compact_fail",
                   "allocstall", "pgsteal_direct", "pswpout", "numa_miss"):
        assert got[column] == pytest.approx(want[column]) if want[column] is not None else got[column] is None, column
