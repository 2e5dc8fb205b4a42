"""Failures that come from the machine, not from prefkit or the data: the one place the CLI turns them into
``Error:`` / ``Hint:`` lines (:func:`explain`), and keeps its own output streams usable (:func:`usable_streams`).

* a write the OS refused (disk full, a file too large, a read-only folder, no permission, a name over 255 bytes),
  :data:`prefkit.errors.WRITE_ERRORS`;
* standard output that cannot be written (``> /dev/full``, a full disk): said on stderr, stdout is then sent to
  ``/dev/null`` so that Python's exit does not fail again;
* a closed stderr or stdout (``2>&-``): replaced by ``/dev/null``;
* a thread that cannot be started (Arrow's or Python's, under ``ulimit -u`` / ``ulimit -v``);
* polars' ``PanicException`` (a ``BaseException``: what a Rust panic becomes, e.g. an allocation that failed
  under ``ulimit -v``);
* ``RecursionError`` (a value nested thousands of levels deep).
"""

from __future__ import annotations

import errno
import os
import sys

from prefkit.errors import WRITE_ERRORS

MEMORY_HINT = (
    "give the process more memory (ulimit -v, the container's limit), or lower PREFKIT_BATCH_ROWS and "
    "PREFKIT_WORKERS; run again with --debug for the traceback"
)


def usable_streams() -> None:
    """Replace a closed stdout/stderr (None when the process started without it) with ``/dev/null``."""
    if sys.stdout is None:
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 (lives as long as the process)
    if sys.stderr is None:
        sys.stderr = open(os.devnull, "w")  # noqa: SIM115


def stdout_broken(err: BaseException | None = None) -> bool:
    """Whether standard output cannot be written (a write to its file descriptor fails; ``err`` a closed pipe); if
    so, it is sent to ``/dev/null`` from now on, so that nothing fails again when Python exits."""
    try:
        fd = sys.stdout.fileno()
    except (OSError, ValueError, AttributeError):
        return False  # not a real file (a test's capture)
    if (
        os.path.samefile(f"/proc/self/fd/{fd}", os.devnull)
        if os.path.exists(f"/proc/self/fd/{fd}")
        else False
    ):
        return False  # already sent there
    broken = isinstance(err, BrokenPipeError)
    try:
        sys.stdout.flush()
        os.write(fd, b"")  # a full device (/dev/full) refuses even this
    except (OSError, ValueError):
        broken = True
    if not broken:
        return False
    try:
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, sys.stdout.fileno())
        os.close(null)
    except (OSError, ValueError):
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115
    return True


def explain(err: BaseException) -> tuple[str, str] | None:
    """(message, hint) for a failure of the machine (see the module docstring), or None for anything else."""
    if isinstance(err, OSError) and err.filename is None and stdout_broken(err):
        reason = WRITE_ERRORS.get(err.errno or 0, (err.strerror or type(err).__name__, ""))[0]
        return f"cannot write to standard output: {reason}", "send the output somewhere that can take it"
    if isinstance(err, OSError) and err.errno in WRITE_ERRORS:
        reason, fix = WRITE_ERRORS[err.errno or 0]
        name = str(err.filename or "")
        if len(name) > 120:
            name = name[:60] + "…" + name[-40:]
        return f"cannot write {name!r}: {reason}" if name else reason, fix
    text = " ".join(str(err).split())[:300]
    if _thread_failure(err, text):
        return (
            f"cannot start a thread ({text or type(err).__name__})",
            "the process hit a limit on threads or memory (ulimit -u / ulimit -v, the container's pids limit): "
            "raise it, or set PREFKIT_WORKERS=1 and OMP_NUM_THREADS=1",
        )
    if type(err).__name__ == "PanicException":
        return f"polars failed: {text or 'a panic'}", MEMORY_HINT
    if isinstance(err, RecursionError):
        return "a value is nested too deeply to read (thousands of levels)", "flatten the nested values"
    return None


def _thread_failure(err: BaseException, text: str) -> bool:
    lowered = text.lower()
    if isinstance(err, RuntimeError) and "can't start new thread" in lowered:
        return True
    if isinstance(err, OSError) and err.errno == errno.EAGAIN and "thread" in lowered:
        return True
    arrow = type(err).__module__.startswith("pyarrow")
    return arrow and "thread" in lowered and any(w in lowered for w in ("start", "creat", "spawn", "launch"))
