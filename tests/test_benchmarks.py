"""The benchmarks keep working: the runner's smoke size end to end, and its README writer.

Benchmarks are not tests: nothing here looks at a time. What is checked is that every benchmark
runs, measures its baseline in the same run, and reports numbers that are finite and consistent.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from tests.benchmarks import run as bench

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_smoke_run_reports_every_benchmark_against_its_baseline(tmp_path: Path) -> None:
    out = tmp_path / "rows.json"
    only = ["embed", "projection", "explorer", "memory", "ray"]
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "tests.benchmarks.run",
            "--smoke",
            "--only",
            *only,
            "--json",
            str(out),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = json.loads(out.read_text())["rows"]
    assert {r["bench"] for r in rows} == set(only)
    for r in rows:
        assert math.isfinite(r["ours"]) and r["ours"] >= 0, r
        if r.get("ratio") is not None:  # a ratio is ours against a baseline of the same run
            assert r["baseline"] is not None and r["baseline"] > 0, r
            # always "times better": baseline time / ours, or our throughput / the baseline's
            expected = (
                r["baseline"] / r["ours"] if r["unit"] in ("s", "ms") else r["ours"] / r["baseline"]
            )
            assert r["ratio"] == pytest.approx(expected), r
    by_fig = {r["figure"]: r for r in rows}
    payload = next(r for f, r in by_fig.items() if f.startswith("explorer payload"))
    assert payload["ours"] == 10  # float32 x, y + uint8 colour + uint8 filter flag
    trust = next(r for f, r in by_fig.items() if "trustworthiness" in f)
    assert 0.5 < trust["ours"] <= 1 and 0.5 < trust["baseline"] <= 1
    for r in rows:  # the printed table carries every figure
        assert r["figure"] in proc.stdout


def test_readme_section_is_replaced_between_markers_only(tmp_path: Path) -> None:
    readme = tmp_path / "README.md"
    readme.write_text(f"# x\n\nbefore\n{bench.BEGIN}\nold table\n{bench.END}\nafter\n")
    rows = [
        {"figure": "f <b>", "ours": 2.0, "baseline": 4.0, "unit": "s", "ratio": 2.0, "goal": "≥ 2×",
         "met": True, "baseline_is": "plain"},
        {"figure": "g", "ours": 0.9, "baseline": 0.91, "unit": "", "ratio": None, "diff": -0.01,
         "goal": "within 0.01", "met": False},
    ]  # fmt: skip
    bench.write_readme(bench.markdown(rows, "Measured on test."), readme)
    text = readme.read_text()
    assert text.startswith("# x\n\nbefore\n") and text.endswith(f"{bench.END}\nafter\n")
    assert "old table" not in text
    assert "| f <b> | 2.0 s | 4.0 s (plain) | 2.00× | ≥ 2× | yes |" in text
    assert "| g | 0.9000 | 0.9100 | -0.0100 | within 0.01 | **no** |" in text
    # the project's README carries the markers the runner writes between
    assert bench.BEGIN in (ROOT / "README.md").read_text()
