"""Known faults of the kernel the widgets run in, said when a widget is made, with the fix.

ipykernel 7.0 to 7.3 can leave a message from the page unread in the kernel's shell socket: one
that arrives while the kernel sends a reply (a cell finishing) is not read until another client
connects, and every message after it waits too (ipykernel issue 1554, fixed by 1529 in 7.4). The
widgets ask for their images as they are displayed, exactly then, so their tiles can stay blank;
in "Run All" a later cell can stay queued. Measured on Binder's base (ipykernel 7.0.1, its
JupyterLab and Notebook 7): of 223 runs of a notebook displaying a FeatureBrowser, 10 showed blank
tiles and 2 never ran a queued cell. Nothing the page sends wakes the socket (four later messages
from the page stayed unread as well), so the fix is the kernel's; Binder's pins replace it.
"""

from __future__ import annotations

import sys
import warnings

# the first release that answers on the shell socket through its stream (ipykernel PR 1529)
FIXED = (7, 4)


def _version(text: str) -> tuple[int, ...]:
    parts = []
    for piece in text.split(".")[:2]:
        digits = "".join(ch for ch in piece if ch.isdigit())
        parts.append(int(digits or 0))
    return tuple(parts)


def kernel_fault(version: str | None = None) -> str | None:
    """What is wrong with the running ipykernel (``version``: that one instead), or None."""
    if version is None:
        module = sys.modules.get("ipykernel")
        version = getattr(module, "__version__", None) if module is not None else None
    if not version or not (7, 0) <= _version(version) < FIXED:
        return None
    return (
        f"ipykernel {version} can leave a widget's message unread until another client connects "
        "(ipykernel issue 1554): images may stay blank and a queued cell may not run. "
        'Install ipykernel>=7.4 (or "ipykernel<7") in the kernel\'s environment and restart it.'
    )


def warn_kernel_fault() -> None:
    """A ``RuntimeWarning`` at the caller's caller (the line creating a widget) when the running
    ipykernel has a known fault."""
    fault = kernel_fault()
    if fault:
        warnings.warn(fault, RuntimeWarning, stacklevel=3)
