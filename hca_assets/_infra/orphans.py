"""Child processes that die with their parent: ``kill -9`` of a run must not leave its dbt build running.

``hca-dbt`` (a console script) asks the kernel to kill it when its parent dies (``PR_SET_PDEATHSIG``, kept
across ``execve``) and then becomes the dbt beside this interpreter; it is the ``dbt_executable`` every dbt
invocation of the pipeline uses.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
from pathlib import Path

__all__ = ["die_with_parent", "exec_dying_with_parent", "main"]

_PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """Have this process killed (SIGKILL) when its parent dies; exit now if the parent is already gone."""
    parent = os.getppid()
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
    if os.getppid() != parent:  # died between the two calls: the signal will never come
        os._exit(1)


def exec_dying_with_parent(argv: list[str]) -> None:
    """Replace this process by ``argv``, which dies with this process's parent."""
    die_with_parent()
    os.execv(argv[0], argv)


def main() -> None:
    """``hca-dbt ARGS``: the venv's dbt with ARGS, dying with its parent."""
    dbt = Path(sys.executable).with_name("dbt")
    exec_dying_with_parent([str(dbt), *sys.argv[1:]])
