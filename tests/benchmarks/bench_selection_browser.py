"""1,000 box and lasso selections on a 1e6-point Explorer in real Chromium: none lost, none
reordered, each one intact, and the memory of the kernel and the browser before and after.

    python tests/benchmarks/bench_selection_browser.py                  # 1e6 points x 1,000
    python tests/benchmarks/bench_selection_browser.py --smoke          # 1e5 points x 50 (CI size)
    python tests/benchmarks/bench_selection_browser.py --points 200000 --selections 300 --json out.json

(Not collected by the test run; ``tests/ui/test_selection_stress.py`` runs the smoke size in the
suite.) A JupyterLab server and Debian's Chromium (Playwright) open a notebook with an Explorer on
N uniform random points and a small echo label that the kernel sets to the selection counter after
each selection. The script then draws seeded random boxes and lassos (star-shaped polygons of 5-12
vertices) with the mouse: "slow" ones with pauses and many mouse steps, each waited for, and
"fast" ones in bursts of 2-6 drawn back to back without waiting for the kernel. For each
selection the kernel writes the rows it received and its counter; the script checks

* lost: every drag reached Python (one log entry each);
* reordered: the counters are 1, 2, 3, … in the order of the drags, and each entry's source is
  the drag's tool (box / lasso);
* intact: the rows equal a NumPy reference computed from the coordinates and the view transform
  the canvas publishes (the same even-odd rule as the front end); a row may differ only when its
  point lies within 1.5 px of the outline (float rounding at the edge), and the explorer's
  statistics and grid count the same rows.

Latency is the round trip measured on the page clock: from the pointerup on the map to the echo
label showing that selection's counter (the kernel set it after computing the statistics and the
grid page, so their messages went out before it); also the one-way time to Python (kernel clock
minus the page's pointerup, the same machine). Memory, after a forced garbage collection, after
the warm-up selections, every 100 selections and after the last one: the kernel's resident memory
(``/proc/<pid>/status``), the page's JavaScript heap, its ArrayBuffer backing stores and its DOM
counters (CDP), and the proportional set size of Chromium's processes by type (browser, renderer,
GPU, utility). Options: ``--allocators`` breaks the renderers down by allocator (memory-infra
tracing); ``--idle S`` first leaves the page open S seconds (the growth of a page that is only
open); ``--python-selections N`` ends with N selections made in the kernel (the page's own work,
without input events). Playwright's DevTools session keeps a copy of every response the page
loads, each grid thumbnail included, so the renderer grows here with every selection;
``bench_browser_memory.py`` measures the same page with no DevTools session attached. Nothing
asserts a time.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

SMOKE = {"points": 100_000, "selections": 50, "warmup": 5}
FULL = {"points": 1_000_000, "selections": 1000, "warmup": 20}
#: Growth allowed between the warm-up and the end (MB): a selection kept by mistake on every
#: selection (about 40 kB at 1e5 points, 0.4 MB at 1e6) crosses it.
KERNEL_BOUND_MB = 64.0
JS_HEAP_BOUND_MB = 32.0
#: Memory is sampled (after a forced garbage collection) every this many selections.
SAMPLE_EVERY = 100

SETUP = r"""
import gc, json, os, time, numpy as np, pandas as pd, ipywidgets
import faultlens
from faultlens.analysis.result import Analysis
from faultlens.data.sources import ArraySource
n = {n}
busy_s = {busy_s}  # a slow selection callback (user code), so drags queue up behind it
rng = np.random.default_rng(0)
label = (np.arange(n) % 4).astype(np.int64)
xy = rng.uniform(-1, 1, (n, 2)).astype(np.float32)
pred = np.where(rng.random(n) < 0.2, (label + 1) % 4, label)
conf = rng.uniform(0.3, 1.0, n).astype(np.float32)
names = ["a", "b", "c", "d"]
table = pd.DataFrame({{"id": np.arange(n).astype(str), "path": None, "label": label,
    "label_name": np.array(names, dtype=object)[label], "pred": pred,
    "pred_name": np.array(names, dtype=object)[pred], "confidence": conf, "loss": 1 - conf,
    "correct": pred == label, "x": xy[:, 0], "y": xy[:, 1], "source_index": np.arange(n)}})
images = np.full((n, 4, 4, 3), 128, dtype=np.uint8)
analysis = Analysis(table, class_names=names, source=ArraySource(images, label, class_names=names))
np.save("coords.npy", xy)
os.makedirs("sel", exist_ok=True)
with open("kernel.json", "w") as fh:
    json.dump({{"pid": os.getpid()}}, fh)
"""

EXPLORE = r"""
ex = faultlens.explore(analysis)
echo = ipywidgets.Label("0")
echo.add_class("fl-bench-echo")
log = open("selections.jsonl", "a", buffering=1)
from_python = False  # True while the selections below are made from Python (not logged)
def on_selection(rows):
    if from_python:
        return
    t = time.time()
    c = ex._selection_counter
    echo.value = str(c)  # the round trip ends when the page shows it
    np.save(f"sel/{c}.npy", rows)
    log.write(json.dumps({"counter": c, "source": ex._selection_source, "n": len(rows), "t": t,
        "n_selected": ex.stats.get("n_selected"), "grid_total": ex._grid.get("total")}) + "\n")
    if busy_s:
        time.sleep(busy_s)
ex.observe_selection(on_selection)
# every "select" message the view sent, logged as it arrives (before it is applied), and every
# status message, so a selection that did not reach the callback can be told apart: never sent
# by the page, or sent and refused in Python
received = open("received.jsonl", "a", buffering=1)
apply_message = getattr(ex, "_select_from_view", None)  # (older versions: not there)
def log_message(content, buffers):
    received.write(json.dumps({"source": content.get("source"), "t": time.time(),
        "bytes": len(buffers[0]) if buffers else 0, "status": ex.status}) + "\n")
    apply_message(content, buffers)
if apply_message:
    ex._select_from_view = log_message
# when the script asks (python-selections.json): that many box selections made with ex.select(),
# so the page redraws as for a drag, with no input event and no message from the page
def select_from_python():
    global from_python
    while not os.path.exists("python-selections.json"):
        time.sleep(0.2)
    spec = json.load(open("python-selections.json"))
    r = np.random.default_rng(1)
    from_python = True
    for _ in range(spec["n"]):
        (x0, y0), (w, h) = r.uniform(-1, 0.6, 2), r.uniform(0.05, 0.4, 2)
        inside = (xy[:, 0] >= x0) & (xy[:, 0] <= x0 + w) & (xy[:, 1] >= y0) & (xy[:, 1] <= y0 + h)
        ex.select(np.flatnonzero(inside))
        time.sleep(spec["pause_s"])
    open("python-selections.done", "w").close()
import threading
threading.Thread(target=select_from_python, daemon=True).start()
display(echo)
ex
"""

# the page's side: pointerups on the map, and when the echo label showed each counter
WATCH = """() => {
  window.__ups = [];
  document.addEventListener('pointerup', (e) => {
    if (e.target.tagName === 'CANVAS') window.__ups.push(e.timeStamp);
  }, true);
  window.__echo = {};
  const el = document.querySelector('.fl-bench-echo');
  const seen = () => {
    const c = el.textContent.trim();
    if (!(c in window.__echo)) window.__echo[c] = performance.now();
  };
  new MutationObserver(seen).observe(el, {childList: true, subtree: true, characterData: true});
}"""


# --------------------------------------------------------------------------- the selections


def plan(n: int, seed: int = 0) -> list[dict[str, Any]]:
    """``n`` seeded selections: tool (box / lasso), speed (slow / fast, fast ones in bursts of
    2-6), and the outline as fractions of the canvas (a box's two corners, a lasso's vertices)."""
    rng = np.random.default_rng(seed)
    out: list[dict[str, Any]] = []
    while len(out) < n:
        burst = 1 if rng.random() < 0.5 else int(rng.integers(2, 7))
        for _ in range(min(burst, n - len(out))):
            tool = "box" if rng.random() < 0.5 else "lasso"
            size = 0.06 + 0.5 * rng.random() ** 2  # many small outlines, a few large ones
            c = rng.uniform(0.05 + size / 2, 0.95 - size / 2, 2)
            if tool == "box":
                w, h = size * rng.uniform(0.5, 1.0, 2)
                pts = [(c[0] - w / 2, c[1] - h / 2), (c[0] + w / 2, c[1] + h / 2)]
                if rng.random() < 0.5:  # dragged from the other corner
                    pts.reverse()
            else:
                k = int(rng.integers(5, 13))
                ang = np.sort(rng.uniform(0, 2 * np.pi, k))
                rad = size / 2 * rng.uniform(0.4, 1.0, k)
                pts = list(zip(c[0] + rad * np.cos(ang), c[1] + rad * np.sin(ang), strict=True))
            out.append({"tool": tool, "slow": burst == 1, "burst_end": False, "pts": pts})
        out[-1]["burst_end"] = True
    return out


def _pixels(pts: list[tuple[float, float]], box: dict) -> list[tuple[float, float]]:
    """Fractions of the canvas as whole page pixels, consecutive ones at least 3 px apart (the
    front end keeps a lasso point 2 px or more from the last one, so every vertex is kept)."""
    out: list[tuple[float, float]] = []
    for fx, fy in pts:
        p = (
            float(round(box["x"] + fx * box["width"])),
            float(round(box["y"] + fy * box["height"])),
        )
        if not out or abs(p[0] - out[-1][0]) + abs(p[1] - out[-1][1]) >= 3:
            out.append(p)
    return out


def _draw(page, sel: dict, box: dict) -> list[tuple[float, float]]:
    """Draw one selection with the mouse; returns its outline in page pixels."""
    px = _pixels(sel["pts"], box)
    while sel["tool"] == "lasso" and abs(px[-1][0] - px[0][0]) + abs(px[-1][1] - px[0][1]) < 3:
        px.pop()  # ending where it began would be a click, not a lasso
    if sel["tool"] == "lasso" and len(px) < 3:
        msg = f"lasso outline {sel['pts']} has fewer than 3 points on this canvas"
        raise ValueError(msg)
    slow = sel["slow"]
    page.mouse.move(*px[0])
    if slow:
        page.wait_for_timeout(80)
    page.mouse.down()
    if sel["tool"] == "box":
        page.mouse.move(*px[1], steps=12 if slow else 2)
    else:
        for p in [*px[1:]]:  # one move per vertex: the path is exactly the vertices
            page.mouse.move(*p)
    if slow:
        page.wait_for_timeout(80)
    page.mouse.up()
    return px


def expected_rows(
    xy: np.ndarray, sel: dict, px: list, box: dict, view: dict
) -> tuple[np.ndarray, np.ndarray]:
    """The rows inside the outline (data space, the front end's rule) and the rows whose point
    lies within 1.5 px of the outline (where float rounding may decide either way)."""
    cx, cy, scale = view["cx"], view["cy"], view["scale"]
    w, h = box["width"], box["height"]

    def data(p: tuple[float, float]) -> tuple[float, float]:
        return (p[0] - box["x"] - w / 2) / scale + cx, (h / 2 - (p[1] - box["y"])) / scale + cy

    poly = np.array([data(p) for p in px], dtype=np.float64)
    x, y = xy[:, 0].astype(np.float64), xy[:, 1].astype(np.float64)
    tol = 1.5 / scale
    if sel["tool"] == "box":
        (xa, xb), (ya, yb) = sorted(poly[:, 0]), sorted(poly[:, 1])
        inside = (x >= xa) & (x <= xb) & (y >= ya) & (y <= yb)
        near = ((np.abs(x - xa) < tol) | (np.abs(x - xb) < tol) | (np.abs(y - ya) < tol)
                | (np.abs(y - yb) < tol))  # fmt: skip
        return np.flatnonzero(inside), np.flatnonzero(near)
    inside = np.zeros(len(x), dtype=bool)
    near = np.zeros(len(x), dtype=bool)
    for k in range(len(poly)):  # even-odd, as the front end
        (xi, yi), (xj, yj) = poly[k], poly[k - 1]
        cross = (yi > y) != (yj > y)
        with np.errstate(divide="ignore", invalid="ignore"):
            at = (xj - xi) * (y - yi) / (yj - yi) + xi
        inside ^= cross & (x < at)
        seg = np.array([xj - xi, yj - yi])
        t = np.clip(((x - xi) * seg[0] + (y - yi) * seg[1]) / max(seg @ seg, 1e-300), 0, 1)
        near |= np.hypot(x - (xi + t * seg[0]), y - (yi + t * seg[1])) < tol
    lo, hi = poly.min(axis=0), poly.max(axis=0)
    inside &= (x >= lo[0]) & (x <= hi[0]) & (y >= lo[1]) & (y <= hi[1])
    return np.flatnonzero(inside), np.flatnonzero(near)


# --------------------------------------------------------------------------- memory


def _rss_mb(pid: int, field: str = "VmRSS") -> float:
    """Resident memory of ``pid`` in MB; ``field="Pss"``: its proportional share (pages shared
    with other processes divided among them), so a sum over processes counts each page once."""
    path = f"/proc/{pid}/status" if field == "VmRSS" else f"/proc/{pid}/smaps_rollup"
    for line in Path(path).read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _chromium_rss_mb() -> dict[str, float]:
    """Resident memory of the Chromium processes started from this process (through Playwright's
    driver): their proportional set sizes summed by process type (browser, renderer, gpu-process,
    utility, zygote) and in all."""
    parents: dict[int, int] = {}
    names: dict[int, str] = {}
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            stat = (d / "stat").read_text()
        except OSError:
            continue
        names[int(d.name)] = stat[stat.index("(") + 1 : stat.rindex(")")]
        parents[int(d.name)] = int(stat[stat.rindex(")") + 2 :].split()[1])
    mine, frontier = set(), {os.getpid()}
    while frontier:
        frontier = {p for p, pp in parents.items() if pp in frontier} - mine
        mine |= frontier
    total: dict[str, float] = {"all": 0.0}
    for p in mine:
        if "chrom" not in names.get(p, ""):
            continue
        with contextlib.suppress(OSError):
            args = Path(f"/proc/{p}/cmdline").read_bytes().replace(b"\0", b" ").split()
            kind = next((a[7:].decode() for a in args if a.startswith(b"--type=")), "browser")
            mb = _rss_mb(p, "Pss")
            total[kind] = round(total.get(kind, 0.0) + mb, 1)
            total["all"] = round(total["all"] + mb, 1)
    return total


def _allocators(page, browser_cdp) -> dict[str, float]:
    """The renderers' memory by allocator (MB), from one detailed memory-infra dump of Chromium's
    tracing: partition_alloc's partitions (buffer, fast_malloc, array_buffer, layout), blink_gc,
    v8, malloc, skia, cc, font and web caches…, so growth outside the JavaScript heap has a name."""
    events: list[dict] = []
    done: list[bool] = []
    browser_cdp.on("Tracing.dataCollected", lambda e: events.extend(e["value"]))
    browser_cdp.on("Tracing.tracingComplete", lambda _e: done.append(True))
    config = {"includedCategories": ["disabled-by-default-memory-infra"],
              "memoryDumpConfig": {"triggers": []}}  # fmt: skip
    browser_cdp.send("Tracing.start", {"traceConfig": config, "transferMode": "ReportEvents"})
    browser_cdp.send(
        "Tracing.requestMemoryDump", {"deterministic": True, "levelOfDetail": "detailed"}
    )
    browser_cdp.send("Tracing.end")
    for _ in range(600):
        if done:
            break
        page.wait_for_timeout(50)
    kinds = {
        e["pid"]: e["args"]["name"]
        for e in events
        if e.get("ph") == "M" and e.get("name") == "process_name"
    }
    out: dict[str, float] = {}
    for e in events:
        dumps = e.get("args", {}).get("dumps", {}) if e.get("ph") == "v" else {}
        if kinds.get(e.get("pid")) != "Renderer":
            continue
        for name, entry in dumps.get("allocators", {}).items():
            parts = name.split("/")
            depth = (
                3
                if parts[0] == "partition_alloc" and len(parts) > 1 and parts[1] == "partitions"
                else 1
            )
            size = entry.get("attrs", {}).get("size")
            if len(parts) == depth and size:
                out[name] = round(out.get(name, 0.0) + int(size["value"], 16) / 2**20, 1)
    return dict(sorted(out.items(), key=lambda kv: -kv[1]))


def _memory(page, cdp, kernel_pid: int) -> dict[str, Any]:
    cdp.send("HeapProfiler.collectGarbage")
    heap = cdp.send("Runtime.getHeapUsage")
    dom = cdp.send("Memory.getDOMCounters")
    procs = _chromium_rss_mb()
    out = {
        "kernel_rss_mb": round(_rss_mb(kernel_pid), 1),
        "js_heap_mb": round(heap["usedSize"] / 2**20, 1),
        # ArrayBuffer backing stores (typed arrays, ImageData, binary messages) live outside the heap
        "js_backing_mb": round(heap.get("backingStorageSize", float("nan")) / 2**20, 1),
        "js_embedder_mb": round(heap.get("embedderHeapUsedSize", float("nan")) / 2**20, 1),
        "dom": {k: dom[k] for k in ("documents", "nodes", "jsEventListeners")},
        "chromium_rss_mb": procs["all"],
        "chromium_by_type_mb": procs,
    }
    if os.environ.get("FAULTLENS_STRESS_ALLOCATORS"):
        out["renderer_allocators_mb"] = _allocators(
            page, page.context.browser.new_browser_cdp_session()
        )
    return out


# --------------------------------------------------------------------------- the run


def _say(text: str) -> None:
    print(f"[stress {time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


def stress(
    url: str,
    root: Path,
    *,
    points: int,
    selections: int,
    warmup: int,
    idle_s: int = 0,
    busy_s: float = 0.0,
    python_selections: int = 0,
) -> dict[str, Any]:
    """Run the stress on a JupyterLab server at ``url`` serving ``root``; returns the report.
    ``idle_s``: first leave the page alone that long and measure its memory before and after
    (the baseline growth of a page that is only open). ``busy_s``: the kernel's selection
    callback sleeps that long after each selection, so the drags of a burst queue up behind a
    busy kernel (each must still reach Python, in order). ``python_selections``: after the run,
    that many selections made with ``ex.select()`` in the kernel, 0.3 s apart, and the memory
    after them (the page's own work for a selection, without input events or their messages)."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout
    from playwright.sync_api import sync_playwright

    from tests.ui.test_browser import (
        CHROMIUM,
        FLAGS,
        _new_page,
        _notebook,
        _open_and_run,
        _read_log,
    )

    name = f"stress-{points}.ipynb"
    (root / name).write_text(
        json.dumps(_notebook([SETUP.format(n=points, busy_s=busy_s), EXPLORE]))
    )
    log_path, sel_dir = root / "selections.jsonl", root / "sel"
    log_path.unlink(missing_ok=True)
    (root / "received.jsonl").unlink(missing_ok=True)
    drags = plan(warmup + selections)
    report: dict[str, Any] = {"points": points, "selections": selections, "warmup": warmup,
                              "idle_s": idle_s, "busy_s": busy_s}  # fmt: skip
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
        try:
            page = _new_page(browser, viewport={"width": 1400, "height": 1100})
            t_load = time.perf_counter()
            try:
                _open_and_run(page, url, name)  # waits 90 s for the map
            except AssertionError:  # 1e6 points on a loaded machine take longer to build
                page.wait_for_function(
                    "() => Number(document.querySelector('canvas.fl-map')?.dataset.rendered || 0) > 0",
                    timeout=600000,
                )
            page.locator(".fl-bench-echo").wait_for(timeout=60000)
            report["page_load_s"] = round(time.perf_counter() - t_load, 1)
            _say(f"page loaded in {report['page_load_s']} s")
            cdp = page.context.new_cdp_session(page)
            kernel_pid = json.loads((root / "kernel.json").read_text())["pid"]
            xy = np.load(root / "coords.npy")
            page.evaluate(WATCH)
            canvas = page.locator("canvas.fl-map")
            canvas.scroll_into_view_if_needed()
            page.wait_for_timeout(500)
            box = canvas.bounding_box()
            tool = "box"
            checked: list[dict] = []
            outlines: list[list] = []
            views: list[dict] = []
            problems: list[str] = []

            def view() -> dict:
                ds = canvas.evaluate("c => ({...c.dataset})")
                return {k: float(ds[k]) for k in ("cx", "cy", "scale")}

            def settle(upto: int) -> None:
                """Wait until the kernel logged ``upto`` selections (or 120 s without one more),
                then check the new ones and remove their files."""
                last, t_last = len(checked), time.time()
                entries = _read_log(log_path)
                while len(entries) < upto and time.time() - t_last < 120:
                    time.sleep(0.02)
                    entries = _read_log(log_path)
                    if len(entries) > last:
                        last, t_last = len(entries), time.time()
                for k in range(len(checked), min(upto, len(entries))):
                    e, d = entries[k], drags[k]
                    rows = np.load(sel_dir / f"{e['counter']}.npy")
                    want, near = expected_rows(xy, d, outlines[k], box, views[k])
                    diff = np.setxor1d(want, rows)
                    ok = {
                        "order": e["counter"] == k + 1 and e["source"] == d["tool"],
                        "edge_only": bool(np.isin(diff, near).all()),
                        "counted": e["n_selected"] == len(rows) == e["grid_total"],
                        "sorted": bool(np.all(np.diff(rows.astype(np.int64)) > 0)),
                    }
                    if not all(ok.values()):
                        problems.append(f"selection {k + 1}: {ok} ({len(diff)} rows differ)")
                    checked.append({"k": k, "rows": len(rows), "exact": len(diff) == 0,
                                    "edge_rows": len(diff), "t_py": e["t"]})  # fmt: skip
                    (sel_dir / f"{e['counter']}.npy").unlink()

            mem_before: dict[str, Any] = {}
            samples: list[dict[str, Any]] = []
            t_run = time.perf_counter()
            for k, d in enumerate(drags):
                if k == warmup:
                    settle(k)
                    if idle_s:  # the baseline: the same page left alone as long as the run takes
                        idle_from = _memory(page, cdp, kernel_pid)
                        page.wait_for_timeout(1000 * idle_s)
                        samples.append({"after": f"idle {idle_s} s", **idle_from})
                    mem_before = _memory(page, cdp, kernel_pid)
                    samples.append({"after": 0, **mem_before})
                    t_run = time.perf_counter()
                elif k > warmup and (k - warmup) % SAMPLE_EVERY == 0:
                    settle(k)
                    samples.append({"after": k - warmup, **_memory(page, cdp, kernel_pid)})
                    _say(f"memory after {k - warmup}: {samples[-1]}")
                if d["tool"] != tool:
                    page.locator(f".faultlens-explorer .fl-mode-{d['tool']}").click()
                    tool = d["tool"]
                if k % 25 == 0:
                    _say(f"selection {k + 1} of {len(drags)}; {len(checked)} checked")
                views.append(view())
                outlines.append(_draw(page, d, box))
                if d["burst_end"]:
                    try:
                        page.wait_for_function(
                            f"() => String({k + 1}) in window.__echo", timeout=120000
                        )
                    except PlaywrightTimeout:
                        problems.append(f"selection {k + 1}: no echo from the kernel in 120 s")
                if d["burst_end"] and len(outlines) - len(checked) >= 20:
                    settle(k + 1)
            settle(len(drags))
            run_s = time.perf_counter() - t_run
            page.wait_for_timeout(500)
            mem_after = _memory(page, cdp, kernel_pid)
            if python_selections:  # the same page work with no input events: after the run
                done = root / "python-selections.done"
                done.unlink(missing_ok=True)
                spec = {"n": python_selections, "pause_s": 0.3}
                (root / "python-selections.json").write_text(json.dumps(spec))
                t_py_run = time.perf_counter()
                while not done.exists() and time.perf_counter() - t_py_run < 600:
                    page.wait_for_timeout(200)
                page.wait_for_timeout(1000)
                samples.append(
                    {"after": f"{python_selections} from Python", **_memory(page, cdp, kernel_pid)}
                )
                (root / "python-selections.json").unlink()
            ups = page.evaluate("() => window.__ups")
            echo = page.evaluate("() => window.__echo")
            origin = page.evaluate("() => performance.timeOrigin")
        finally:
            browser.close()
    got = _read_log(log_path)
    received = _read_log(root / "received.jsonl")
    lost = len(drags) - len(got)
    counters = [e["counter"] for e in got]
    measured = range(warmup, len(drags))
    rt = [echo[str(k + 1)] - ups[k] for k in measured if str(k + 1) in echo and k < len(ups)]
    one_way = [1000 * checked[k]["t_py"] - (origin + ups[k]) for k in measured
               if k < len(checked) and k < len(ups)]  # fmt: skip
    slow = [echo[str(k + 1)] - ups[k] for k in measured if drags[k]["slow"] and str(k + 1) in echo]
    # drawn while Python was still busy with the one before (its callback started at t_py and
    # slept busy_s): the selections a kernel that merged updates would never have seen
    queued = sum(origin + ups[k] < 1000 * (checked[k - 1]["t_py"] + busy_s)
                 for k in range(1, min(len(checked), len(ups))))  # fmt: skip

    def q(v: list[float], p: float) -> float:
        return round(float(np.percentile(v, p)), 1) if v else float("nan")

    report.update({
        "drags": len(drags), "pointerups": len(ups), "messages_received": len(received),
        "reached_python": len(got), "lost": lost,
        "statuses": sorted({e["status"] for e in received} - {""})[:10],
        "reordered": int(counters != list(range(1, len(drags) + 1))),
        "not_intact": len(problems), "problems": problems[:10],
        "exact": sum(c["exact"] for c in checked), "edge_rows_max": max((c["edge_rows"] for c in checked), default=0),
        "boxes": sum(d["tool"] == "box" for d in drags), "lassos": sum(d["tool"] == "lasso" for d in drags),
        "fast": sum(not d["slow"] for d in drags), "queued_behind_busy_kernel": int(queued),
        "rows_median": int(statistics.median(c["rows"] for c in checked)) if checked else 0,
        "rows_max": max((c["rows"] for c in checked), default=0),
        "round_trip_ms": {"median": q(rt, 50), "p95": q(rt, 95), "max": q(rt, 100), "n": len(rt)},
        "round_trip_slow_ms": {"median": q(slow, 50), "p95": q(slow, 95), "n": len(slow)},
        "to_python_ms": {"median": q(one_way, 50), "p95": q(one_way, 95)},
        "memory_before": mem_before, "memory_after": mem_after, "memory_samples": samples,
        "kernel_growth_mb": round(mem_after["kernel_rss_mb"] - mem_before["kernel_rss_mb"], 1),
        "js_heap_growth_mb": round(mem_after["js_heap_mb"] - mem_before["js_heap_mb"], 1),
        "chromium_growth_mb": round(mem_after["chromium_rss_mb"] - mem_before["chromium_rss_mb"], 1),
        "bounds_mb": {"kernel": KERNEL_BOUND_MB, "js_heap": JS_HEAP_BOUND_MB},
        "run_s": round(run_s, 1),
    })  # fmt: skip
    report["within_bounds"] = (
        report["kernel_growth_mb"] <= KERNEL_BOUND_MB
        and report["js_heap_growth_mb"] <= JS_HEAP_BOUND_MB
    )
    return report


def _sizes() -> dict[str, int]:
    sizes = dict(SMOKE if os.environ.get("FAULTLENS_STRESS") == "smoke" else FULL)
    for key in sizes:
        env = os.environ.get(f"FAULTLENS_STRESS_{key.upper()}")
        if env:
            sizes[key] = int(env)
    return sizes


def test_selection_stress(lab: tuple[str, Path]) -> None:  # run through main() below
    url, root = lab
    env = os.environ.get
    report = stress(url, root, **_sizes(), idle_s=int(env("FAULTLENS_STRESS_IDLE", 0)),
                    python_selections=int(env("FAULTLENS_STRESS_PYTHON", 0)))  # fmt: skip
    print("\n@@stress " + json.dumps(report))
    out = os.environ.get("FAULTLENS_STRESS_JSON")
    if out:
        Path(out).write_text(json.dumps(report, indent=1))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--smoke", action="store_true", help="1e5 points x 50 selections")
    ap.add_argument("--points", type=int)
    ap.add_argument("--selections", type=int)
    ap.add_argument("--warmup", type=int)
    ap.add_argument(
        "--idle", type=int, help="first leave the page open this many seconds (baseline)"
    )
    ap.add_argument(
        "--python-selections",
        type=int,
        help="after the run, this many selections made in the kernel (the page's own work)",
    )
    ap.add_argument(
        "--allocators",
        action="store_true",
        help="break the renderers' memory down by allocator (Chromium memory-infra)",
    )
    ap.add_argument("--json", help="also write the report here")
    args = ap.parse_args()
    env = dict(os.environ)
    if args.smoke:
        env["FAULTLENS_STRESS"] = "smoke"
    for key in ("points", "selections", "warmup"):
        if getattr(args, key) is not None:
            env[f"FAULTLENS_STRESS_{key.upper()}"] = str(getattr(args, key))
    if args.idle:
        env["FAULTLENS_STRESS_IDLE"] = str(args.idle)
    if args.python_selections:
        env["FAULTLENS_STRESS_PYTHON"] = str(args.python_selections)
    if args.allocators:
        env["FAULTLENS_STRESS_ALLOCATORS"] = "1"
    if args.json:
        env["FAULTLENS_STRESS_JSON"] = str(Path(args.json).resolve())
    root = Path(__file__).resolve().parents[2]
    cmd = [sys.executable, "-m", "pytest", str(Path(__file__).relative_to(root)), "-s", "-q",
           "-p", "no:cacheprovider", "-o", "addopts=", "--timeout=0"]  # fmt: skip
    import subprocess

    return subprocess.call(cmd, cwd=root, env=env)


pytestmark = pytest.mark.ui

if __name__ == "__main__":
    sys.exit(main())
else:  # under pytest: the JupyterLab server fixture of the browser tests
    from tests.ui.test_browser import lab  # noqa: F401
