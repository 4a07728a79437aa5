"""What a run records about where it ran: git commit, package versions, device."""

from __future__ import annotations

import platform
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torchvision


def _loaded_commit() -> str:
    """The commit checked out as the suite was imported, ``-dirty`` when tracked files
    differed from it; read once: a sweep that outlives a commit (runs take hours) keeps
    recording the code it started with, not the checkout's newer HEAD. A method's builder
    imports some modules when first used, from the checkout as it is then: keep the checkout
    still while a sweep runs."""
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], capture_output=True, text=True, check=True,
                              cwd=Path(__file__).parent).stdout.strip()

    try:
        return git("rev-parse", "HEAD") + ("-dirty" if git("status", "--porcelain",
                                                           "--untracked-files=no") else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


_COMMIT = _loaded_commit()


def environment(device: str) -> dict[str, Any]:
    """``git_commit`` (checked out as the suite was imported, see ``_loaded_commit``),
    ``versions`` and ``device``, as a run directory's ``config.json`` records them."""
    if device.startswith("cuda"):
        name = torch.cuda.get_device_name(torch.device(device))
    else:
        name = f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads"
    versions = {"python": platform.python_version(), "torch": torch.__version__,
                "torchvision": torchvision.__version__, "numpy": np.__version__}
    for dist in ("avalanche-lib", "cl_binvae"):
        versions[dist] = metadata.version(dist)
    return {"git_commit": _COMMIT, "versions": versions, "device": f"{device} ({name})"}
