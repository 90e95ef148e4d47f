"""The software a result was produced with: recorded in the report beside the numbers.

``requirements.lock`` (scripts/lock.sh) pins every package; scripts/setup.sh installs it; the report names the
key versions and the lock's hash, so a number can be traced to the environment that made it.
"""

from __future__ import annotations

import hashlib
import platform
import sys
from importlib import metadata
from pathlib import Path

KEY_PACKAGES = ("torch", "transformers", "accelerate", "datasets", "dvc", "dvclive", "numpy", "pandas", "matplotlib")


def versions() -> dict[str, str]:
    """Python and the key packages' installed versions ("not installed" when absent)."""
    out = {"python": platform.python_version()}
    for name in KEY_PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def lock_digest(lock: Path) -> str:
    """First 12 hex digits of the lock file's sha256, or "no lock" when it is missing."""
    return hashlib.sha256(lock.read_bytes()).hexdigest()[:12] if lock.is_file() else "no lock"


def environment_markdown(lock: Path = Path("requirements.lock")) -> str:
    v = versions()
    rows = ", ".join(f"{k} {val}" for k, val in v.items())
    return (f"Produced with {rows}; `{lock.name}` sha256 {lock_digest(lock)} "
            f"({sys.platform}, {platform.machine()}).")
