"""Traces of old kernels, as posted to the mailing lists: their event names, print formats and gfp tables.

The data files are real lines (tests/data/bad/README.md gives each one's source and what was changed).
Each test runs `thpreplay ingest` in-process and checks the tables it writes and the gfp-table line it
prints; the gfp masks expected are those of the era's include/linux/gfp.h (tests/test_gfp.py).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest
from typer.testing import CliRunner

from thpreplay.cli import app

BAD = Path(__file__).resolve().parent / "data" / "bad"


def _ingest(tmp_path: Path, name: str, *args: str) -> tuple[Path, str]:
    shutil.copy(BAD / name, tmp_path / name)
    out = tmp_path / "ds"
    res = CliRunner().invoke(app, ["ingest", str(tmp_path / name), "-o", str(out), "--force", *args])
    assert res.exit_code == 0, (res.output, res.exception)
    return out, res.output


def _table(ds: Path, name: str) -> pl.DataFrame:
    return pl.read_parquet(sorted((ds / name).glob("*.parquet"))).sort("line")


def _gfp_line(output: str) -> str:
    return next(ln for ln in output.splitlines() if "gfp table" in ln).split("gfp table ", 1)[1]


def _meta(ds: Path) -> dict:
    rows = pl.read_parquet(sorted((ds / "metadata").glob("*.parquet"))).select("key", "value").rows()
    return {k: json.loads(v) for k, v in rows}


FLAGS = ["gfp_thisnode", "gfp_noretry", "gfp_direct_reclaim", "gfp_kswapd_reclaim", "gfp_comp", "gfp_movable"]


def test_2_6_33_mm_page_free_direct_is_a_free(tmp_path):
    """2.6.33-rc (Li Hong's report, Jan 2010): mm_page_free_direct is the free of 2.6.32-3.2 (renamed
    mm_page_free in 3.3); it dates the trace, so the gfp table is 2.6.32's, where GFP_KERNEL is
    __GFP_WAIT|__GFP_IO|__GFP_FS = 0xd0. The order-0 free is printed twice (the bug the mail fixed)."""
    ds, out = _ingest(tmp_path, "ftrace-2.6.33-free-direct.txt")
    assert _gfp_line(out) == "2.6.32 (from event and gfp names)"
    free = _table(ds, "page_free")
    assert free.select("line", "event", "pid", "cpu", "pfn", "order").rows() == [
        (ln, "mm_page_free_direct", 1567, 0, 1155800, 0) for ln in (1, 2, 4, 5)]
    alloc = _table(ds, "page_alloc")
    assert alloc.select("line", "pfn", "success", "order", "gfp_flags", "gfp_mask", *FLAGS).rows() == [
        (3, 1155800, True, 0, "GFP_KERNEL", 0xD0, False, False, True, True, False, False)]
    assert _table(ds, "other_events").height == 0
    meta = _meta(ds)
    assert meta["gfp_table"] == "2.6.32" and "mm_page_free_direct" in meta["gfp_table_reason"]


def test_2_6_33_failed_allocation_prints_a_null_page(tmp_path):
    """Before TP_printk checked page for NULL, a failed mm_page_alloc printed page_to_pfn(NULL), a garbage
    pfn: the NULL page= makes it a failed attempt (pfn null, success false)."""
    ds, out = _ingest(tmp_path, "ftrace-2.6.33-null-page.txt", "--kernel-release", "2.6.33")
    assert _gfp_line(out) == "2.6.32 (--kernel-release 2.6.33)"
    assert _table(ds, "page_alloc").select("line", "pfn", "success", "gfp_mask").rows() == [
        (1, 1155800, True, 0xD0), (2, None, False, 0xD0)]
    assert _meta(ds)["kernel_release"] == "2.6.33"


def test_free_batched_is_not_a_second_free(tmp_path):
    """mm_pagevec_free (2.6.32-3.2) and mm_page_free_batched (3.3 on) report pages that mm_page_free[_direct]
    reports too: they stay whole in other_events, so a batch-freed page is freed once."""
    ds, _ = _ingest(tmp_path, "ftrace-free-batched.txt")
    assert _table(ds, "page_free").select("line", "event", "pfn", "order").rows() == [
        (1, "mm_page_free_direct", 1155800, 0), (3, "mm_page_free", 0x2AE3BE, 0)]
    assert _table(ds, "other_events").select("line", "event").rows() == [
        (2, "mm_pagevec_free"), (4, "mm_page_free_batched")]


def test_4_4_gfp_names_pick_the_4_4_table(tmp_path):
    """4.4.x stable, arm64, with options/stacktrace (Kefeng Wang, Nov 2019): GFP_-prefixed single flags
    and GFP_NOTRACK are only known to the 2.6.32-4.5 tables; the newest of them is 4.4's, whose
    __GFP_DIRECT_RECLAIM (0x400000) and __GFP_KSWAPD_RECLAIM (0x2000000) make GFP_USER 0x24200c0."""
    ds, out = _ingest(tmp_path, "ftrace-4.4-stacktrace.txt")
    assert _gfp_line(out) == "4.4 (from gfp names)"
    alloc = _table(ds, "page_alloc")
    assert alloc.select("line", "pfn", "order", "migratetype", "gfp_mask", *FLAGS).rows() == [
        (1, 299406, 0, 1, 0x24200CA, False, False, True, True, False, True),
        (7, 296764, 2, 0, 0x26280C0, False, False, True, True, False, False),
        (13, 296757, 0, 0, 0x26284C0, False, False, True, True, False, False),
    ]
    assert "3.8" in _meta(ds)["gfp_table_reason"]  # the older tables know these names too, with other values


def test_4_9_needs_the_kernel_release_to_tell_4_8_from_4_10(tmp_path):
    """4.9-rc5 (Mel Gorman, Dec 2016): __GFP_-prefixed names with __GFP_REPEAT and __GFP_NOTRACK fit the
    4.6, 4.8 and 4.10 tables, whose bits differ (41b6167e8f74 moved __GFP_KSWAPD_RECLAIM in 4.10). Without
    a release the newest is taken and the reason says so; --kernel-release 4.9 gives 4.8's."""
    ds, out = _ingest(tmp_path, "ftrace-4.9-stacktrace.txt")
    assert _gfp_line(out) == "4.10 (from gfp names)"
    assert "tables 4.8, 4.6 know them too with other bit values" in _meta(ds)["gfp_table_reason"]
    assert _table(ds, "page_alloc").get_column("gfp_mask").to_list() == [0x16146C0, 0x2156C0]

    ds, out = _ingest(tmp_path, "ftrace-4.9-stacktrace.txt", "--kernel-release", "4.9")
    assert _gfp_line(out) == "4.8 (--kernel-release 4.9)"
    alloc = _table(ds, "page_alloc")
    assert alloc.select("line", "pfn", "order", "gfp_mask", *FLAGS).rows() == [
        (1, 8690824, 3, 0x26146C0, False, False, True, True, True, False),
        (19, 17106128, 2, 0x2156C0, False, True, False, False, True, False),
    ]


def test_4_6_extfrag(tmp_path):
    """4.6 (Johannes Weiner, Sep 2016): the extfrag fields of 3.12+, read as printed."""
    ds, out = _ingest(tmp_path, "ftrace-4.6-extfrag.txt")
    cols = ["line", "cpu", "pid", "pfn", "alloc_order", "fallback_order", "pageblock_order", "alloc_migratetype",
            "fallback_migratetype", "fragmenting", "change_ownership"]
    assert _table(ds, "extfrag").select(cols).rows() == [(1, 6, 0, 26235008, 3, 3, 9, 0, 2, True, True)]
    assert _gfp_line(out) == "5.4 (assumed: no gfp names)"


def test_kernel_release_that_is_not_one(tmp_path):
    shutil.copy(BAD / "ftrace-4.6-extfrag.txt", tmp_path / "t.txt")
    res = CliRunner().invoke(app, ["ingest", str(tmp_path / "t.txt"), "-o", str(tmp_path / "ds"),
                                   "--kernel-release", "four"])
    assert res.exit_code == 1
    assert "--kernel-release 'four': not a kernel release (e.g. 3.2 or 4.4.0-21)" in res.output
    assert not (tmp_path / "ds").exists()


@pytest.mark.parametrize("release, table", [("3.2", "2.6.32"), ("4.4.0-21-generic", "4.4")])
def test_kernel_release_overrules_the_inference(tmp_path, release, table):
    ds, out = _ingest(tmp_path, "ftrace-4.4-stacktrace.txt", "--kernel-release", release)
    assert _gfp_line(out) == f"{table} (--kernel-release {release})"
    assert _meta(ds)["gfp_table"] == table


def test_raw_hex_masks_say_which_table_was_assumed(tmp_path):
    """perf script of a 6.10+ kernel printing gfp_flags as raw hex, no bundle: nothing dates the masks, so
    the newest table decodes them and the summary says it was assumed."""
    _, out = _ingest(tmp_path, "perf-raw-hex-gfp.txt")
    assert _gfp_line(out) == "6.13 (assumed: raw hex masks, no kernel release)"
    assert ("warning: gfp masks printed as raw hex and no kernel release: decoded with table 6.13 (kernels 6.8+), "
            "assumed; pass --kernel-release for another kernel") in out.splitlines()


def test_bad_kernel_release_is_one_line_through_the_console_script(tmp_path):
    script = Path(sys.executable).parent / "thpreplay"
    cmd = [str(script)] if script.exists() else [sys.executable, "-m", "thpreplay"]
    proc = subprocess.run([*cmd, "ingest", str(BAD / "ftrace-4.6-extfrag.txt"), "-o", "ds", "--kernel-release",
                           "four"], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1 and proc.stdout == ""
    assert proc.stderr.splitlines() == ["thpreplay: --kernel-release 'four': not a kernel release (e.g. 3.2 or 4.4.0-21)"]
    assert not (tmp_path / "ds").exists()
