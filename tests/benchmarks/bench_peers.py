"""The map against its peers in one Chromium + JupyterLab run: faultlens's Explorer, jupyter-scatter and
plotly's ``FigureWidget`` with ``scattergl`` (hover on, as users have it, and with ``hovermode=False``).

    python tests/benchmarks/bench_peers.py --smoke                  # 1e3 points, 4 drags (~2 min)
    python tests/benchmarks/bench_peers.py --sizes 10000,100000 --drags 8
    python tests/benchmarks/bench_peers.py --sizes 1000000 --only faultlens jscatter

(Not collected by the test run: it only prints numbers.) For each widget and size a fresh notebook
(fresh kernel) builds the widget on the same N uniform points and logs, with ``time.time()``, every
selection Python receives through the peer's own selection API (faultlens: ``observe_selection``;
jupyter-scatter: the synced ``selection`` trait, with its rectangle lasso; plotly: ``on_selection``).
Figures per row:

- *load*: seconds from opening the notebook page (kernel start included) to the map drawn
  (faultlens: the canvas's ``data-rendered``; jupyter-scatter: its regl canvas laid out; plotly: its
  WebGL canvas present). Every widget pays the same kernel start and the same cells.
- *wire*: bytes the page received on the kernel websocket from opening to the map drawn (the real
  frames, JS bundles sent as widget state included), and that divided by N.
- *kernel memory*: the kernel process's resident memory once the map is drawn (``VmRSS``) and the
  most it held by the end of the drags (``VmHWM``), from ``/proc`` (Linux).
- *selection*: box drags alternating fast (3 mouse steps, no pause) and slow (25 steps, 1 s pauses
  before press and release). A drag counts as reaching Python when a selection with at least one row
  is logged within 10 s of the release; latency is the release (page clock, ``Date.now()``) to the
  Python log time (same machine, same clock). Also the bytes the page sent per drag.

Each row prints the peer's version. A peer that cannot run here prints exactly why and is skipped.
Rows go to ``$FAULTLENS_BENCH_JSON`` (JSON lines) when set, like the other browser benchmark.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.metadata as md
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.ui.test_browser import (  # noqa: E402
    CHROMIUM,
    FLAGS,
    _accept_dialogs,
    _notebook,
    _read_log,
)

TOKEN = "faultlens-bench-peers"  # noqa: S105 - a throwaway token for a 127.0.0.1 server

DATA = r"""
import json, time, numpy as np, pandas as pd
n = {n}
rng = np.random.default_rng(0)
xy = rng.uniform(-1, 1, (n, 2)).astype(np.float32)
LOG = "sel-{tag}.jsonl"
def log(rows):
    with open(LOG, "a") as fh:
        fh.write(json.dumps({{"t": time.time() * 1000, "rows": int(len(rows))}}) + "\n")
"""

WIDGETS = {
    "faultlens": r"""
import faultlens
from faultlens.analysis.result import Analysis
from faultlens.data.sources import ArraySource
label = (np.arange(n) % 4).astype(np.int64)
pred = np.where(rng.random(n) < 0.2, (label + 1) % 4, label)
conf = rng.uniform(0.3, 1.0, n).astype(np.float32)
names = ["a", "b", "c", "d"]
na = np.array(names, dtype=object)
table = pd.DataFrame({"id": np.arange(n).astype(str), "path": None, "label": label,
    "label_name": na[label], "pred": pred, "pred_name": na[pred], "confidence": conf,
    "loss": 1 - conf, "correct": pred == label, "x": xy[:, 0], "y": xy[:, 1],
    "source_index": np.arange(n)})
images = np.full((n, 4, 4, 3), 128, dtype=np.uint8)
analysis = Analysis(table, class_names=names, source=ArraySource(images, label, class_names=names))
w = faultlens.explore(analysis)
w.observe_selection(log)
w
""",
    "jscatter": r"""
import jscatter
sc = jscatter.Scatter(data=pd.DataFrame({"x": xy[:, 0], "y": xy[:, 1]}), x="x", y="y", height=560)
sc.mouse(mode="lasso")
sc.lasso(type="rectangle")
def on_sel(change):
    if change["new"] is not None and len(change["new"]):
        log(change["new"])
sc.widget.observe(on_sel, names=["selection"])
sc.show()
""",
    "plotly": r"""
import plotly.graph_objects as go
w = go.FigureWidget(data=[go.Scattergl(x=xy[:, 0], y=xy[:, 1], mode="markers", marker={{"size": 3}})],
                    layout={{"dragmode": "select", "width": 800, "height": 560{extra}}})
w.data[0].on_selection(lambda trace, points, selector: log(points.point_inds))
w
""",
}

DRAWN = {
    "faultlens": "() => { const c = document.querySelector('canvas.fl-map');"
    " return !!c && Number(c.dataset.rendered || 0) > 0; }",
    # the regl canvas is created once the widget has its points; laid out = drawn on the next frame
    "jscatter": "() => { const cs = [...document.querySelectorAll('.jp-OutputArea-output canvas')]"
    ".filter(c => c.getBoundingClientRect().width > 100 && c.getBoundingClientRect().height > 100);"
    " return cs.length > 0; }",
    "plotly": "() => !!document.querySelector('.js-plotly-plot canvas.gl-canvas-context')",
}

# a cell has started: its prompt shows [*] or [1]
STARTED = (
    "() => [...document.querySelectorAll('.jp-NotebookPanel:not(.lm-mod-hidden) .jp-InputArea-prompt')]"
    ".some(e => /\\[(\\*|\\d+)\\]/.test(e.textContent))"
)

TARGET = {
    "faultlens": "canvas.fl-map",
    "jscatter": None,  # the largest canvas in the output (regl-scatterplot's)
    "plotly": ".js-plotly-plot .nsewdrag",
}

BOXES = [(0.1, 0.1, 0.4, 0.4), (0.5, 0.2, 0.9, 0.6), (0.2, 0.5, 0.6, 0.9), (0.3, 0.3, 0.7, 0.7),
         (0.6, 0.6, 0.9, 0.9), (0.1, 0.6, 0.3, 0.95), (0.55, 0.1, 0.85, 0.35), (0.15, 0.3, 0.45, 0.6)]  # fmt: skip

VARIANTS = {
    "faultlens": ("faultlens", "faultlens", ""),
    "jscatter": ("jscatter", "jupyter-scatter", ""),
    "plotly": ("plotly", "plotly", ""),
    "plotly-nohover": ("plotly", "plotly", ', "hovermode": False'),
}


def _version(dist: str) -> str:
    try:
        return md.version(dist)
    except md.PackageNotFoundError:
        return "not installed"


def _why_not(kind: str) -> str | None:
    """Why a widget cannot run here, or None."""
    module = {"faultlens": "faultlens", "jscatter": "jscatter", "plotly": "plotly"}[kind]
    try:
        __import__(module)
    except Exception as exc:
        return f"import {module} failed: {type(exc).__name__}: {exc}"
    if kind == "plotly":
        try:
            __import__("anywidget")
            import plotly.graph_objects as go

            go.FigureWidget()
        except Exception as exc:
            return f"plotly FigureWidget unavailable: {type(exc).__name__}: {exc}"
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def lab_server(root: Path) -> Iterator[str]:
    port = _free_port()
    log = open(root / "lab.log", "w")  # noqa: SIM115 - closed below
    env = dict(os.environ)
    proc = subprocess.Popen(
        [sys.executable, "-m", "jupyter", "lab", "--no-browser", f"--port={port}",
         f"--ServerApp.token={TOKEN}", "--ServerApp.ip=127.0.0.1",
         f"--ServerApp.root_dir={root}", "--allow-root"],
        stdout=log, stderr=subprocess.STDOUT, cwd=root, env=env,
    )  # fmt: skip
    try:
        deadline = time.time() + 60
        while time.time() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    break
            except OSError:
                time.sleep(0.3)
        else:
            msg = f"JupyterLab did not start: {(root / 'lab.log').read_text()[-2000:]}"
            raise RuntimeError(msg)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def _shutdown_kernels(url: str) -> None:
    """Stop every kernel of the server so one widget's kernel does not slow the next."""
    with urllib.request.urlopen(f"{url}/api/kernels?token={TOKEN}", timeout=10) as r:  # noqa: S310
        kernels = json.load(r)
    for k in kernels:
        req = urllib.request.Request(  # noqa: S310 - our own 127.0.0.1 server
            f"{url}/api/kernels/{k['id']}?token={TOKEN}", method="DELETE"
        )
        with contextlib.suppress(Exception):
            urllib.request.urlopen(req, timeout=10).close()  # noqa: S310


def _kernel_memory(url: str) -> dict[str, float]:
    """The running kernels' resident memory (MB, summed; one kernel runs at a time here): ``rss``
    now (``VmRSS``) and ``peak`` (``VmHWM``, the most it ever held), read from ``/proc`` of the
    kernel process, found by its connection file ``kernel-<id>.json`` on its command line."""
    with urllib.request.urlopen(f"{url}/api/kernels?token={TOKEN}", timeout=10) as r:  # noqa: S310
        ids = [k["id"] for k in json.load(r)]
    out = {"rss": 0.0, "peak": 0.0}
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            cmd = (proc / "cmdline").read_bytes().decode(errors="replace")
            if not any(f"kernel-{i}.json" in cmd for i in ids):
                continue
            status = (proc / "status").read_text()
        except OSError:
            continue
        for line in status.splitlines():
            key, _, val = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                out["rss" if key == "VmRSS" else "peak"] += int(val.split()[0]) / 1024
    return out


def _box(page, kind: str) -> dict:
    sel = TARGET[kind]
    if sel:
        loc = page.locator(sel).first
        loc.scroll_into_view_if_needed()
        page.wait_for_timeout(300)
        return loc.bounding_box()
    return page.evaluate(
        "() => { const cs = [...document.querySelectorAll('.jp-OutputArea-output canvas')];"
        " cs.sort((a, b) => b.getBoundingClientRect().width * b.getBoundingClientRect().height"
        " - a.getBoundingClientRect().width * a.getBoundingClientRect().height);"
        " cs[0].scrollIntoView({block: 'center'}); const r = cs[0].getBoundingClientRect();"
        " return {x: r.x, y: r.y, width: r.width, height: r.height}; }"
    )


def run_one(url: str, root: Path, variant: str, n: int, drags: int) -> dict:
    from playwright.sync_api import sync_playwright

    kind, dist, extra = VARIANTS[variant]
    tag = f"{variant}-{n}"
    cells = [DATA.format(n=n, tag=tag), WIDGETS[kind].replace("{extra}", extra)]
    if kind == "plotly":
        cells[1] = cells[1].replace("{{", "{").replace("}}", "}")
    name = f"peers-{tag}.ipynb"
    (root / name).write_text(json.dumps(_notebook(cells)))
    log_path = root / f"sel-{tag}.jsonl"
    row = {"widget": variant, "version": _version(dist), "n": n}
    received = [0]
    sent = [0]

    def on_ws(ws):
        def size(payload):
            return len(payload.encode() if isinstance(payload, str) else payload)

        ws.on("framereceived", lambda p: received.__setitem__(0, received[0] + size(p)))
        ws.on("framesent", lambda p: sent.__setitem__(0, sent[0] + size(p)))

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1100})
        page.on("websocket", on_ws)
        try:
            t0 = time.perf_counter()
            page.goto(
                f"{url}/lab/workspaces/{uuid.uuid4().hex[:10]}/tree/{name}?token={TOKEN}&reset"
            )
            page.add_style_tag(content=".Toastify { display: none !important; }")
            idle = ".jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook-ExecutionIndicator[data-status='idle']"
            deadline = time.time() + 90
            while time.time() < deadline and not page.locator(idle).count():
                _accept_dialogs(page)
                page.wait_for_timeout(200)
            page.locator(idle).wait_for(timeout=30000)
            page.wait_for_timeout(300)
            _accept_dialogs(page)
            deadline = time.time() + 300
            started = False
            for _attempt in range(3):  # on a loaded machine a Run All may land before the kernel
                page.locator(".lm-MenuBar-item", has_text="Run").first.click()
                page.locator("li.lm-Menu-item[data-command='runmenu:run-all']").click()
                t_try = time.time()
                while time.time() < t_try + 20 and not started:
                    _accept_dialogs(page)
                    started = page.evaluate(STARTED)
                    page.wait_for_timeout(200)
                if started:
                    row["run_all_clicks"] = (
                        _attempt + 1
                    )  # >1: the load time includes 20 s per retry
                    break
            while started and time.time() < deadline:
                _accept_dialogs(page)
                if page.evaluate(DRAWN[kind]):
                    break
                page.wait_for_timeout(100)
            if not (started and page.evaluate(DRAWN[kind])):
                row["error"] = (
                    "the map never drew within 300 s"
                    if started
                    else "Run All never started the cells"
                )
                page.screenshot(path=str(root / f"failed-{tag}.png"))
                return row
            page.evaluate(
                "() => new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))"
            )
            row["load_s"] = time.perf_counter() - t0
            row["wire_bytes"] = received[0]
            row["wire_bytes_per_point"] = received[0] / n
            with contextlib.suppress(Exception):
                row["kernel_rss_mb_drawn"] = _kernel_memory(url)["rss"]
            page.wait_for_timeout(1500)  # let trailing state (and plotly's relayout) settle
            box = _box(page, kind)
            lat = {"fast": [], "slow": []}
            tried = {"fast": 0, "slow": 0}
            sent_per_drag = []
            early = 0
            for i in range(drags):
                fx0, fy0, fx1, fy1 = BOXES[i % len(BOXES)]
                slow = i % 2 == 1
                speed = "slow" if slow else "fast"
                tried[speed] += 1
                a = (box["x"] + fx0 * box["width"], box["y"] + fy0 * box["height"])
                b = (box["x"] + fx1 * box["width"], box["y"] + fy1 * box["height"])
                before = len(_read_log(log_path))
                sent0 = sent[0]
                page.mouse.move(*a)
                if slow:
                    page.wait_for_timeout(1000)
                page.mouse.down()
                page.mouse.move(*b, steps=25 if slow else 3)
                if slow:
                    page.wait_for_timeout(1000)
                t_up = page.evaluate("() => Date.now()")
                page.mouse.up()
                deadline = time.time() + 10
                got = None
                while time.time() < deadline:
                    new = [e for e in _read_log(log_path)[before:] if e["rows"] > 0]
                    after = [e for e in new if e["t"] >= t_up]
                    if after:
                        got = after[0]
                        break
                    time.sleep(0.02)
                page.wait_for_timeout(400)  # any second update lands before the next drag
                sent_per_drag.append(sent[0] - sent0)
                # a selection that reached Python before the button was released (a live lasso)
                early += any(e["rows"] > 0 and e["t"] < t_up for e in _read_log(log_path)[before:])
                if got is not None:
                    lat[speed].append(got["t"] - t_up)
                page.mouse.click(box["x"] + 2, box["y"] + box["height"] - 2)  # clear, off the boxes
                page.wait_for_timeout(300)
            all_lat = lat["fast"] + lat["slow"]
            row.update(
                reached=f"{len(all_lat)}/{drags}",
                reached_fast=f"{len(lat['fast'])}/{tried['fast']}",
                reached_slow=f"{len(lat['slow'])}/{tried['slow']}",
                latency_ms_median=statistics.median(all_lat) if all_lat else None,
                latency_ms_min=min(all_lat) if all_lat else None,
                latency_ms_max=max(all_lat) if all_lat else None,
                sent_bytes_per_drag=statistics.median(sent_per_drag) if sent_per_drag else None,
                selections_before_release=early,
            )
            with contextlib.suppress(Exception):
                mem = _kernel_memory(url)
                row["kernel_rss_mb_end"] = mem["rss"]
                row["kernel_peak_mb"] = mem["peak"]
        except Exception as exc:
            row["error"] = f"{type(exc).__name__}: {str(exc)[:300]}"
            with contextlib.suppress(Exception):
                page.screenshot(path=str(root / f"failed-{tag}.png"))
        finally:
            browser.close()
    _shutdown_kernels(url)
    return row


def warm_up(url: str, root: Path) -> None:
    """Open one plain notebook first, so the first measured row does not alone pay JupyterLab's
    first page load (its assets, the first kernel start)."""
    from playwright.sync_api import sync_playwright

    (root / "warm-up.ipynb").write_text(json.dumps(_notebook(["1 + 1"])))
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1100})
        try:
            page.goto(
                f"{url}/lab/workspaces/{uuid.uuid4().hex[:10]}/tree/warm-up.ipynb?token={TOKEN}&reset"
            )
            idle = ".jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook-ExecutionIndicator[data-status='idle']"
            deadline = time.time() + 90
            while time.time() < deadline and not page.locator(idle).count():
                _accept_dialogs(page)
                page.wait_for_timeout(200)
        finally:
            browser.close()
    _shutdown_kernels(url)


def _fmt(row: dict) -> str:
    head = f"{row['widget']:<15} {row['version']:<9} n={row['n']:>9,}"
    if "error" in row:
        return f"{head}  could not run: {row['error']}"
    lat = row["latency_ms_median"]
    lat_s = (
        "—"
        if lat is None
        else f"{lat:7.0f} ms ({row['latency_ms_min']:.0f}–{row['latency_ms_max']:.0f})"
    )
    return (
        f"{head}  load {row['load_s']:6.1f} s  wire {row['wire_bytes'] / 1e6:7.2f} MB "
        f"({row['wire_bytes_per_point']:8.1f} B/pt)  selection reached Python {row['reached']} "
        f"(fast {row['reached_fast']}, slow {row['reached_slow']})  latency {lat_s}  "
        f"sent/drag {row['sent_bytes_per_drag'] or 0:.0f} B; "
        f"selections before release {row.get('selections_before_release', 0)}; "
        f"kernel RSS {row.get('kernel_rss_mb_drawn', float('nan')):.0f} MB drawn, "
        f"peak {row.get('kernel_peak_mb', float('nan')):.0f} MB"
    )


def _ratios(rows: list[dict]) -> list[str]:
    """Each peer's figure over faultlens's at the same size (> 1: faultlens is better)."""
    out = []
    ours = {r["n"]: r for r in rows if r["widget"] == "faultlens" and "error" not in r}
    for r in rows:
        o = ours.get(r["n"])
        if r["widget"] == "faultlens" or o is None or "error" in r:
            continue
        parts = [
            f"load ×{r['load_s'] / o['load_s']:.2f}",
            f"wire ×{r['wire_bytes'] / o['wire_bytes']:.2f}",
        ]
        if r["latency_ms_median"] and o["latency_ms_median"]:
            parts.append(f"latency ×{r['latency_ms_median'] / o['latency_ms_median']:.2f}")
        if r.get("kernel_peak_mb") and o.get("kernel_peak_mb"):
            parts.append(f"kernel peak RSS ×{r['kernel_peak_mb'] / o['kernel_peak_mb']:.2f}")
        out.append(f"{r['widget']:<15} n={r['n']:>9,}: peer / faultlens: " + ", ".join(parts))
    return out


def main(argv: list[str] | None = None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--smoke", action="store_true", help="1e3 points, 4 drags")
    ap.add_argument("--sizes", default="10000,100000")
    ap.add_argument("--drags", type=int, default=8)
    ap.add_argument("--only", nargs="*", default=list(VARIANTS), choices=list(VARIANTS))
    ap.add_argument("--json", help="also write the rows to this JSON file")
    ap.add_argument("--keep", help="keep the server's folder (notebooks, logs, screenshots) here")
    ap.add_argument(
        "--strict",
        action="store_true",
        help="exit 1 when a widget could not run or none of its drags reached Python (for CI)",
    )
    args = ap.parse_args(argv)
    sizes = [1000] if args.smoke else [int(v) for v in args.sizes.split(",")]
    drags = 4 if args.smoke else args.drags
    if not Path(CHROMIUM).exists():
        print(f"[peers] cannot run: {CHROMIUM} is not installed (apt-get install chromium)")
        sys.exit(1 if args.strict else 0)
    try:
        import playwright  # noqa: F401
    except ImportError:
        print(
            "[peers] cannot run: the playwright package is not installed (pip install playwright)"
        )
        sys.exit(1 if args.strict else 0)
    rows: list[dict] = []
    keep = Path(args.keep) if args.keep else None
    if keep:
        keep.mkdir(parents=True, exist_ok=True)
    ctx = (
        contextlib.nullcontext(str(keep))
        if keep
        else tempfile.TemporaryDirectory(prefix="bench-peers-")
    )
    with ctx as tmp, lab_server(Path(tmp)) as url:
        warm_up(url, Path(tmp))
        for n in sizes:
            for variant in args.only:
                why = _why_not(VARIANTS[variant][0])
                if why:
                    row = {
                        "widget": variant,
                        "version": _version(VARIANTS[variant][1]),
                        "n": n,
                        "error": why,
                    }
                else:
                    row = run_one(url, Path(tmp), variant, n, drags)
                rows.append(row)
                print("[peers] " + _fmt(row), flush=True)
    for line in _ratios(rows):
        print("[peers] " + line)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))
    out = os.environ.get("FAULTLENS_BENCH_JSON")
    if out:
        with open(out, "a", encoding="utf-8") as f:
            for r in rows:
                f.write(
                    json.dumps(
                        {"figure": f"map peer {r['widget']} {r['version']}, {r['n']:,} points", **r}
                    )
                    + "\n"
                )
    return rows


if __name__ == "__main__":
    main()
