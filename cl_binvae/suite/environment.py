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


def environment(device: str) -> dict[str, Any]:
    """``git_commit`` (with ``-dirty`` when the code that ran differs from it), ``versions``
    and ``device``, as a run directory's ``config.json`` records them."""
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], capture_output=True, text=True, check=True,
                              cwd=Path(__file__).parent).stdout.strip()

    try:
        commit = git("rev-parse", "HEAD") + ("-dirty" if git("status", "--porcelain",
                                                             "--untracked-files=no") else "")
    except (OSError, subprocess.CalledProcessError):
        commit = "unknown"
    if device.startswith("cuda"):
        name = torch.cuda.get_device_name(torch.device(device))
    else:
        name = f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads"
    versions = {"python": platform.python_version(), "torch": torch.__version__,
                "torchvision": torchvision.__version__, "numpy": np.__version__}
    for dist in ("avalanche-lib", "cl_binvae"):
        versions[dist] = metadata.version(dist)
    return {"git_commit": commit, "versions": versions, "device": f"{device} ({name})"}
