"""Execute a notebook (default: results.ipynb next to this script) in place, saving its outputs.

Usage: ``python notebooks/execute.py [NOTEBOOK]``. Cells run with the notebook's own folder as
the working directory, so its relative paths (``../results``) resolve as in Jupyter.
Needs ``nbformat``, ``nbclient`` and ``ipykernel``. Exits 2 with a one-line message without them,
for a missing notebook, or when a cell fails; the notebook is then left as it was.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def _error(message: str) -> int:
    print(f"execute: error: {message}", file=sys.stderr)
    return 2


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebook", type=Path, nargs="?",
                        default=Path(__file__).with_name("results.ipynb"))
    args = parser.parse_args(argv)
    try:
        import nbformat
        from nbclient import NotebookClient
        from nbclient.exceptions import CellExecutionError
    except ImportError as err:
        return _error(f"{err.name} is missing; pip install nbformat nbclient ipykernel")
    if not args.notebook.is_file():
        return _error(f"notebook {args.notebook} does not exist")
    notebook = nbformat.read(args.notebook, as_version=4)
    client = NotebookClient(notebook, timeout=300, kernel_name="python3",
                            resources={"metadata": {"path": str(args.notebook.parent)}})
    try:
        client.execute()
    except CellExecutionError as err:
        return _error(f"a cell of {args.notebook} failed: {err.ename}: {err.evalue}")
    from cl_binvae.suite.atomic import atomic_path

    with atomic_path(args.notebook) as tmp:  # a kill mid-write keeps the previous notebook
        nbformat.write(notebook, tmp)
    print(f"executed {args.notebook}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
