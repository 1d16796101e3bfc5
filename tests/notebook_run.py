"""Run a notebook headless and measure its kernel: what the notebook test, the notebook benchmark and
the Binder check (``.ci/binder``) share. Needs only nbformat and nbclient (no pytest), so it also
runs in Binder's environment, which pins JupyterLab but no test tools.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import nbformat

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
ALL = sorted(NOTEBOOKS.rglob("*.ipynb"), key=lambda p: (p.parent != NOTEBOOKS, str(p)))
TIMEOUT = 600  # per cell

# Libraries only the CUDA build of torch maps (nvidia-*, triton, torch's own CUDA parts); the CPU
# build Binder installs ships none of them.
CUDA_ONLY = r"/nvidia/|/triton/|/cuda/bindings/|lib(torch|c10)_cuda|libcudnn|libcudart|libnccl"

# Appended in memory as the last cell: the kernel's peak RSS, and the resident pages of the
# CUDA-only libraries mapped into it.
PEAK_CELL = r"""
import re as _re
with open("/proc/self/status") as _f:
    _hwm = next(int(line.split()[1]) for line in _f if line.startswith("VmHWM:"))
_cuda_kb, _lib = 0, ""
with open("/proc/self/smaps") as _f:
    for _line in _f:
        if _re.match(r"[0-9a-f]+-[0-9a-f]+ ", _line):
            _lib = _line.split()[5] if len(_line.split()) > 5 else ""
        elif _line.startswith("Rss:") and _re.search(CUDA_ONLY, _lib):
            _cuda_kb += int(_line.split()[1])
print(f"@@peak {_hwm / 1024:.0f} @@cuda_only_libs {_cuda_kb / 1024:.0f}")
""".replace("CUDA_ONLY", repr(CUDA_ONLY))


def rel(p: Path) -> str:
    """A notebook's path relative to ``notebooks/`` (its name in reports and test ids)."""
    return str(p.relative_to(NOTEBOOKS))


@dataclass
class Run:
    """One headless run: wall time, the kernel's peak RSS, the part of it that was pages of
    CUDA-only libraries (still resident at the end), and the executed notebook (in memory)."""

    wall_s: float
    peak_mb: int
    cuda_only_mb: int
    nb: nbformat.NotebookNode

    @property
    def cpu_torch_estimate_mb(self) -> int:
        """The peak without the CUDA-only libraries: an estimate of it under torch's CPU build."""
        return self.peak_mb - self.cuda_only_mb

    @property
    def errors(self) -> list:
        return [o for c in self.nb.cells if c.cell_type == "code" for o in c.outputs
                if o.output_type == "error"]  # fmt: skip


def execute(path: Path) -> Run:
    """Run one notebook top to bottom with this process's environment; the file is not touched.
    Raises nbclient's CellExecutionError on the first failing cell."""
    from nbclient import NotebookClient

    nb = nbformat.read(path, as_version=4)
    nb.cells.append(nbformat.v4.new_code_cell(PEAK_CELL))  # in memory only
    client = NotebookClient(
        nb, timeout=TIMEOUT, kernel_name="python3",
        resources={"metadata": {"path": str(path.parent)}},
    )  # fmt: skip
    t0 = time.perf_counter()
    client.execute()
    wall = time.perf_counter() - t0
    last = "".join(o.get("text", "") for o in nb.cells[-1].outputs).split()
    return Run(wall, int(last[last.index("@@peak") + 1]),
               int(last[last.index("@@cuda_only_libs") + 1]), nb)  # fmt: skip
