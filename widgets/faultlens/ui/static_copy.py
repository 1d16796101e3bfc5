"""A widget's static copy beside its live view: what nbviewer, exported HTML and GitHub show."""

from __future__ import annotations

import base64
from collections.abc import Callable
from typing import Any

__all__ = ["with_static_copy"]


def with_static_copy(bundle: Any, render: Callable[[], tuple[bytes, str]]) -> Any:
    """Add ``image/png`` and ``text/html`` from ``render() -> (PNG bytes, HTML)`` to a widget's
    ``_repr_mimebundle_`` result (the widget view stays first choice where a kernel runs). A failing
    render is said in ``text/plain`` instead: the live widget matters more than the static copy."""
    if bundle is None:
        return None
    data, meta = bundle if isinstance(bundle, tuple) else (bundle, {})
    try:
        image, page = render()
        data["image/png"] = base64.b64encode(image).decode()
        data["text/html"] = page
    except Exception as exc:  # any failure: say it, keep the widget
        data["text/plain"] = f"{data.get('text/plain', '')} (static image failed: {exc})"
    return data, meta
