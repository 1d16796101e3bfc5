"""The browser's memory under a stream of selections with no DevTools session on the page: what a
user's Chromium holds, not what the test harness makes it hold.

    python tests/benchmarks/bench_browser_memory.py                    # 1e5 points, 300 selections
    python tests/benchmarks/bench_browser_memory.py --points 1000000 --selections 1000

Why a second benchmark: ``bench_selection_browser.py`` drives Chromium through Playwright, whose
DevTools session enables the Network domain on the page. Chromium then keeps a copy of every
response the page loads for that session, including each thumbnail the grid loads from a ``blob:``
URL, so the renderer grows with every selection (about 20 MB per 100 there, all in Blink's buffer
partition and Oilpan heap, and twice as much with a second such session) while the page itself
holds nothing more.

Here Voilà runs a notebook with an Explorer on N uniform random points, and Debian's Chromium
opens it with no DevTools client attached to the page: a browser-level connection only reads the
page's title and, between the phases, takes a memory dump of Chromium's memory-infra tracing (per
allocator: Blink's partitions, Oilpan, V8, malloc, Skia, shared memory…). The selections are made
in the kernel (``ex.select()`` on seeded random boxes, 0.2 s apart), so the page does all of a
selection's work — the map redrawn, the statistics and the grid page replaced, 24 thumbnails
fetched and shown — with no input event and no protocol traffic. Reported: the renderer's
allocators and proportional set size (PSS) after the warm-up selections and after the run, and the
kernel's resident memory. Nothing asserts a size.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tests.benchmarks.bench_selection_browser import SETUP, _rss_mb  # noqa: E402
from tests.ui.test_browser import _free_port, _notebook  # noqa: E402

CHROMIUM = "/usr/lib/chromium/chromium"  # the binary itself: /usr/bin/chromium is a wrapper script
TOKEN = "faultlens-bench-memory"  # noqa: S105 - a throwaway token for a 127.0.0.1 server
#: Allocators reported (memory-infra names; the partition_alloc ones are Blink's partitions).
ALLOCATORS = ("partition_alloc/partitions/buffer", "partition_alloc/partitions/fast_malloc",
              "partition_alloc/partitions/array_buffer", "partition_alloc/partitions/layout",
              "blink_gc", "v8", "malloc", "skia", "shared_memory", "web_cache", "cc")  # fmt: skip

SELECT = r"""
import threading
ex = faultlens.explore(analysis)
# asked through files: select.json {"n": …, "pause_s": …} starts a phase, selected-<n>.done ends it
def selections():
    r = np.random.default_rng(1)
    phase = 0
    while True:
        if not os.path.exists(f"select-{phase}.json"):
            time.sleep(0.2)
            continue
        spec = json.load(open(f"select-{phase}.json"))
        for _ in range(spec["n"]):
            (x0, y0), (w, h) = r.uniform(-1, 0.6, 2), r.uniform(0.05, 0.4, 2)
            inside = (xy[:, 0] >= x0) & (xy[:, 0] <= x0 + w) & (xy[:, 1] >= y0) & (xy[:, 1] <= y0 + h)
            ex.select(np.flatnonzero(inside))
            time.sleep(spec["pause_s"])
        open(f"select-{phase}.done", "w").close()
        phase += 1
threading.Thread(target=selections, daemon=True).start()
ex
"""


def _get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as r:  # noqa: S310 - our own 127.0.0.1 server
        return json.load(r)


class Browser:
    """Chromium with a browser-level DevTools connection only (``websocket-client``, which
    jupyter_server already needs): it opens targets, reads their state and traces memory; no
    domain is enabled on a page."""

    def __init__(self, profile: Path) -> None:
        import websocket

        self.port = _free_port()
        self.proc = subprocess.Popen(
            [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
             "--disable-background-networking", "--disable-dev-shm-usage",
             f"--remote-debugging-port={self.port}", f"--user-data-dir={profile}",
             "--window-size=1400,1100", "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        for _ in range(200):
            try:
                ws_url = _get_json(f"http://127.0.0.1:{self.port}/json/version")[
                    "webSocketDebuggerUrl"
                ]
                break
            except OSError:
                time.sleep(0.1)
        self.ws = websocket.create_connection(ws_url, timeout=300)
        self.next_id = 0

    def call(self, method: str, params: dict | None = None, session: str | None = None,
             events: list | None = None) -> dict:  # fmt: skip
        self.next_id += 1
        msg: dict[str, Any] = {"id": self.next_id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        self.ws.send(json.dumps(msg))
        while True:
            reply = json.loads(self.ws.recv())
            if "method" in reply and events is not None:
                events.append(reply)
            if reply.get("id") == self.next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})

    def evaluate(self, target: str, expression: str) -> Any:
        """One expression in the page, through a session that is attached, used once (no domain
        enabled) and detached."""
        session = self.call("Target.attachToTarget", {"targetId": target, "flatten": True})[
            "sessionId"
        ]
        try:
            out = self.call("Runtime.evaluate", {"expression": expression, "returnByValue": True},
                            session=session)  # fmt: skip
        finally:
            self.call("Target.detachFromTarget", {"sessionId": session})
        return out.get("result", {}).get("value")

    def renderer_memory(self) -> dict[str, float]:
        """Sizes (MB) of the renderers' allocators from one detailed memory-infra dump."""
        events: list[dict] = []
        config = {"includedCategories": ["disabled-by-default-memory-infra"],
                  "memoryDumpConfig": {"triggers": []}}  # fmt: skip
        self.call(
            "Tracing.start", {"traceConfig": config, "transferMode": "ReportEvents"}, events=events
        )
        self.call("Tracing.requestMemoryDump", {"deterministic": True, "levelOfDetail": "detailed"},
                  events=events)  # fmt: skip
        self.call("Tracing.end", events=events)
        while not any(e["method"] == "Tracing.tracingComplete" for e in events):
            events.append(json.loads(self.ws.recv()))
        values = [
            v
            for e in events
            if e["method"] == "Tracing.dataCollected"
            for v in e["params"]["value"]
        ]
        names = {v["pid"]: v["args"]["name"] for v in values
                 if v.get("ph") == "M" and v.get("name") == "process_name"}  # fmt: skip
        out = dict.fromkeys(ALLOCATORS, 0.0)
        pids = set()
        for v in values:
            if v.get("ph") != "v" or names.get(v["pid"]) != "Renderer":
                continue
            pids.add(v["pid"])
            for name, entry in v["args"]["dumps"].get("allocators", {}).items():
                size = entry.get("attrs", {}).get("size")
                if name in out and size:
                    out[name] = round(out[name] + int(size["value"], 16) / 2**20, 1)
        out["renderer_pss"] = round(
            sum(_rss_mb(p, "Pss") for p in pids if Path(f"/proc/{p}").exists()), 1
        )
        return out

    def close(self) -> None:
        self.ws.close()
        self.proc.terminate()
        self.proc.wait(30)


def run(points: int, selections: int, warmup: int, pause_s: float, every: int) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="faultlens-memory-"))
    (work / "memory.ipynb").write_text(
        json.dumps(_notebook([SETUP.format(n=points, busy_s=0), SELECT]))
    )
    port = _free_port()
    log = (work / "voila.log").open("w")
    voila = subprocess.Popen(
        [sys.executable, "-m", "voila", "memory.ipynb", "--no-browser", f"--port={port}",
         "--Voila.ip=127.0.0.1", f"--token={TOKEN}"],
        cwd=work, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    browser = Browser(work / "profile")
    report: dict[str, Any] = {"points": points, "selections": selections, "warmup": warmup,
                              "pause_s": pause_s}  # fmt: skip
    try:
        for _ in range(600):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/?token={TOKEN}", timeout=5)
                break
            except OSError:
                time.sleep(0.5)
        t0 = time.perf_counter()
        target = browser.call(
            "Target.createTarget", {"url": f"http://127.0.0.1:{port}/?token={TOKEN}"}
        )["targetId"]
        drawn = "Number(document.querySelector('canvas.fl-map')?.dataset.rendered || 0)"
        while not browser.evaluate(target, drawn):
            if time.perf_counter() - t0 > 900:
                raise TimeoutError(
                    f"no map after 900 s; Voilà's log:\n{(work / 'voila.log').read_text()[-2000:]}"
                )
            time.sleep(1)
        report["page_load_s"] = round(time.perf_counter() - t0, 1)
        kernel_pid = json.loads((work / "kernel.json").read_text())["pid"]

        def phase(k: int, n: int) -> float:
            (work / f"select-{k}.json").write_text(json.dumps({"n": n, "pause_s": pause_s}))
            t = time.perf_counter()
            while not (work / f"select-{k}.done").exists():
                time.sleep(0.2)
            time.sleep(2)  # the page catches up with the last one
            return time.perf_counter() - t

        phase(0, warmup)
        samples = [
            {"after": 0, **browser.renderer_memory(), "kernel_rss": round(_rss_mb(kernel_pid), 1)}
        ]
        t_run, done = time.perf_counter(), 0
        while done < selections:
            step = min(every, selections - done)
            phase(len(samples), step)
            done += step
            samples.append({"after": done, **browser.renderer_memory(),
                            "kernel_rss": round(_rss_mb(kernel_pid), 1)})  # fmt: skip
            print(
                f"[memory] after {done}: renderer PSS {samples[-1]['renderer_pss']} MB",
                file=sys.stderr,
                flush=True,
            )
        report["run_s"] = round(time.perf_counter() - t_run, 1)
        report["thumbnails_shown"] = browser.evaluate(
            target, "document.querySelectorAll('.fl-thumb').length"
        )
        report["samples"] = samples
        before, after = samples[0], samples[-1]
        report["before_mb"], report["after_mb"] = before, after
        report["growth_mb"] = {k: round(after[k] - before[k], 1) for k in before if k != "after"}
    finally:
        browser.close()
        voila.terminate()
        voila.wait(30)
        log.close()
        shutil.rmtree(work, ignore_errors=True)
    return report


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--points", type=int, default=100_000)
    ap.add_argument("--selections", type=int, default=300)
    ap.add_argument("--warmup", type=int, default=20)
    ap.add_argument("--pause", type=float, default=0.2, help="seconds between two selections")
    ap.add_argument("--every", type=int, default=100, help="a memory dump after this many")
    ap.add_argument("--json", help="also write the report here")
    a = ap.parse_args()
    r = run(a.points, a.selections, a.warmup, a.pause, a.every)
    print(f"{r['points']:,} points, {r['selections']} selections from the kernel ({r['warmup']} "
          f"before the first dump), page loaded in {r['page_load_s']} s, run {r['run_s']} s")  # fmt: skip
    keys = [k for k in r["samples"][0] if k != "after"]
    print(f"{'MB after':40s}" + "".join(f"{s['after']:>8d}" for s in r["samples"]) + "  growth")
    for k in keys:
        print(
            f"{k:40s}"
            + "".join(f"{s[k]:8.1f}" for s in r["samples"])
            + f"  {r['growth_mb'][k]:+.1f}"
        )
    if a.json:
        Path(a.json).write_text(json.dumps(r, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
