"""Wait for a Jupyter front end to serve its page (200 with its app's HTML); exit 1 with its log
when it does not within two minutes.

    python .ci/binder_serve.py URL LOG_FILE NAME
"""

from __future__ import annotations

import sys
import time
import urllib.request
from pathlib import Path

MARKERS = {"lab": "JupyterLab", "notebook": "Jupyter Notebook"}


def main(url: str, log: str, name: str) -> int:
    deadline = time.monotonic() + 120
    last = ""
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=5) as r:  # noqa: S310 - our own 127.0.0.1 server
                body = r.read().decode("utf-8", "replace")
            if r.status == 200 and MARKERS[name].lower() in body.lower():
                print(f"[binder] {name} serves {url.split('?')[0]}")
                return 0
            last = f"HTTP {r.status}, no '{MARKERS[name]}' in the page"
        except OSError as exc:
            last = str(exc)
        time.sleep(1)
    print(f"[binder] {name} did not serve its page: {last}\n{Path(log).read_text()[-3000:]}")
    return 1


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:4]))
