"""Helpers for the theme and layout browser tests: the widgets' real bundles rendered in Debian's
Chromium against a mock anywidget model wired to the real Python widgets (no kernel, no JupyterLab),
and two page probes used both there and inside JupyterLab: element boxes, and the WCAG contrast of
every text on screen against the background under it.

The mock model answers like anywidget's: ``get``/``set``/``on``/``off``/``save_changes``/``send``.
``save_changes`` and ``send`` call into Python (Playwright's ``expose_function``), where the widget
receives the state through ``set_state`` and the message through its ``on_msg`` handlers; the traits
it changes and the messages it sends in reply come back to the page.
"""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

ORIGIN = "http://faultlens.test"
_JS = Path(__file__).parent / "js"


def theme_css(name: str) -> str:
    """JupyterLab's own stylesheet of theme ``"light"`` or ``"dark"`` (it defines the --jp-* variables)."""
    import jupyterlab

    path = (
        Path(jupyterlab.__file__).parent
        / "themes"
        / "@jupyterlab"
        / f"theme-{name}-extension"
        / "index.css"
    )
    return path.read_text()


def static_dir() -> Path:
    import faultlens.ui

    return Path(faultlens.ui.__file__).parent / "static"


def _encode(value: Any) -> Any:
    if isinstance(value, (bytes, bytearray, memoryview)):
        return {"__b64__": base64.b64encode(bytes(value)).decode()}
    if isinstance(value, dict):
        return {k: _encode(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_encode(v) for v in value]
    return value


def _decode(value: Any) -> Any:
    if isinstance(value, dict):
        if set(value) == {"__b64__"}:
            return base64.b64decode(value["__b64__"])
        return {k: _decode(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_decode(v) for v in value]
    return value


MOCK_JS = (_JS / "mock.js").read_text()


class MockHost:
    """Serves the bundles and a page to ``page`` and bridges the mock models to ``widgets``."""

    def __init__(self, page: Any, widgets: dict[str, Any]) -> None:
        self.page, self.widgets = page, widgets
        self.outbox: list[tuple[dict, list[bytes]]] = []
        self.changed: set[str] = set()
        for w in widgets.values():
            w.send = self._capture  # the widget's replies go to the page, not to a kernel
            w.observe(lambda ch: self.changed.add(ch["name"]), names=list(w.keys))
        page.expose_function("flCall", self._call)
        page.route(f"{ORIGIN}/**", self._serve)
        self.html = ""

    def _capture(self, content: dict, buffers: list[bytes] | None = None) -> None:
        self.outbox.append((content, list(buffers or [])))

    def _call(self, wid: str, kind: str, payload: Any) -> dict:
        w = self.widgets[wid]
        self.outbox, self.changed = [], set()
        if kind == "state":
            w.set_state(_decode(payload))
        else:
            w._handle_custom_msg(_decode(payload), [])
        state = w.get_state(sorted(self.changed)) if self.changed else {}
        msgs = [{"content": _encode(c), "buffers": [base64.b64encode(bytes(b)).decode() for b in bufs]}
                for c, bufs in self.outbox]  # fmt: skip
        return {"state": _encode(state), "msgs": msgs}

    def _serve(self, route: Any) -> None:
        path = route.request.url[len(ORIGIN) :].split("?")[0]
        if path == "/":
            route.fulfill(body=self.html, content_type="text/html")
        elif path == "/mock.js":
            route.fulfill(body=MOCK_JS, content_type="text/javascript")
        elif path.startswith("/static/") and (static_dir() / path[8:]).is_file():
            kind = "text/css" if path.endswith(".css") else "text/javascript"
            route.fulfill(body=(static_dir() / path[8:]).read_text(), content_type=kind)
        else:
            route.fulfill(status=404, body="")

    def open(self, theme: str, mounts: list[tuple[str, str]], width: int = 1200) -> None:
        """A page in JupyterLab's ``theme`` with the widgets ``mounts`` = [(id, bundle)], each in its
        own ``width``-pixel cell, and only the stylesheets of the widgets mounted (as anywidget)."""
        css = "".join(
            f'<link rel="stylesheet" href="/static/{b.replace(".js", ".css")}">' for _, b in mounts
        )
        cells = "".join(
            f'<div id="cell-{i}" style="width:{width}px;margin:8px"></div>' for i, _ in mounts
        )
        light = "true" if theme == "light" else "false"
        self.html = (
            f"<!doctype html><html><head><meta charset='utf-8'><style>{theme_css(theme)}</style>{css}"
            "<style>body{margin:0;background:var(--jp-layout-color0)}</style>"
            f"<script type='module' src='/mock.js'></script></head>"
            f"<body data-jp-theme-light='{light}' data-jp-theme-name='JupyterLab {theme.title()}'>{cells}</body></html>"
        )
        self.page.goto(f"{ORIGIN}/")
        self.page.wait_for_function("() => !!window.flMount")
        for wid, bundle in mounts:
            state = _encode(self.widgets[wid].get_state())
            self.page.evaluate(
                "([i, b, s]) => window.flMount(i, b, 'cell-' + i, s)", [wid, bundle, state]
            )


# Boxes of the elements matched by each selector inside the first element matching `root`,
# relative to that root: {selector: [x, y, width, height] or null}.
BOXES_JS = (_JS / "boxes.js").read_text()

# Every piece of text shown inside the elements matching `roots` (and the frames that mark right and
# wrong tiles, as graphics needing 3:1): its colour (with the opacity of
# it and its ancestors) over the background under it (translucent backgrounds composed up to the
# first opaque one); returns one record per element with its WCAG contrast ratio and the ratio
# required (3 for large text, else 4.5). Disabled controls are exempt (WCAG 1.4.3).
CONTRAST_JS = (_JS / "contrast.js").read_text()


def failing(records: list[dict]) -> list[dict]:
    """The records of CONTRAST_JS below their required ratio."""
    return [r for r in records if r["ratio"] < r["need"]]


def switch_theme(page: Any, name: str) -> None:
    """Switch JupyterLab to theme ``name`` ("JupyterLab Dark", "JupyterLab Light") through its
    Settings menu and wait until the theme's variables apply."""
    page.locator(".lm-MenuBar-item", has_text="Settings").first.click()
    page.locator("li.lm-Menu-item", has_text="Theme").first.hover()
    page.locator(
        "li.lm-Menu-item[data-command='apputils:change-theme']", has_text=name
    ).first.click()
    light = "true" if "Light" in name else "false"
    page.wait_for_function(
        "(light) => document.body.dataset.jpThemeLight === light && getComputedStyle(document.body)"
        ".getPropertyValue('--jp-layout-color0').trim() === (light === 'true' ? 'white' : '#111')",
        arg=light,
        timeout=20000,
    )
    page.wait_for_timeout(800)  # the map redraws a moment after the switch


# Switches off (or back on) the stylesheet anywidget added for one widget's bundle, found by the
# source comment esbuild writes into it ("src/explorer/explorer.css" or "src/features/features.css").
TOGGLE_SHEET_JS = """([marker, off]) => {
  let n = 0;
  for (const s of document.querySelectorAll('style')) {
    if (s.textContent.includes(marker)) { s.sheet.disabled = off; n++; }
  }
  return n;
}"""
