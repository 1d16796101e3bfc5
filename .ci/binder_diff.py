"""Print what binder/requirements.txt installed over repo2docker's base environment; exit 1 when it
replaced a package of the base (Binder's Jupyter stack must stay the base's own), except the kernel
pinned on purpose (KERNEL in binder/pin_requirements.py).

    python .ci/binder_diff.py BASE_FREEZE AFTER_FREEZE
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

# the installers: the venv brings its own and the base lock's are left out (binder/base_lock.py)
INSTALLERS = {"pip", "setuptools", "wheel"}
# the kernel, not the Jupyter server: the base's ipykernel 7.0.1 can leave the page's messages unread
KERNEL_PIN = Path(__file__).resolve().parents[1] / "binder" / "pin_requirements.py"
ON_PURPOSE = set(re.findall(r'^KERNEL = "([A-Za-z0-9_.-]+)==', KERNEL_PIN.read_text(), re.M))


def freeze(path: str) -> dict[str, str]:
    out = {}
    for line in Path(path).read_text().splitlines():
        if "==" in line:
            name, version = line.split("==", 1)
            key = re.sub(r"[-_.]+", "-", name).lower()
            if key not in INSTALLERS:
                out[key] = version
    return out


def main(base_file: str, after_file: str) -> int:
    base, after = freeze(base_file), freeze(after_file)
    added = sorted(set(after) - set(base))
    changed = sorted(k for k in base if k in after and after[k] != base[k])
    print(f"[binder] the base holds {len(base)} packages; the pins add {len(added)}:")
    print("  " + " ".join(f"{k}=={after[k]}" for k in added))
    for k in changed:
        why = " on purpose (binder/pin_requirements.py)" if k in ON_PURPOSE else ""
        print(f"[binder] the pins REPLACED {k} {base[k]} -> {after[k]} of repo2docker's base{why}")
    return 1 if set(changed) - ON_PURPOSE else 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:3]))
