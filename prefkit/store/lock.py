"""One lock per output folder: every writer of OUT holds it from reading OUT to swapping in what it wrote.

Commands that change a set (`build --overwrite`, `reflogps`, `score`, `generate`, `stats` recording into OUT)
each stage a new folder from what they read and rename it into place. Two of them on one OUT at once (a
`reflogps` on one GPU, a `score` on another) would each swap in a copy made from the folder they read, and the
later swap would silently drop the earlier one's columns. So each writer takes :func:`out_lock` around
"read OUT → write the stage → swap it in"::

    from prefkit.store.lock import out_lock, folder_identity

    with out_lock(out_dir, "generate"):
        folder = read_output(out_dir)          # read under the lock
        seen = folder_identity(out_dir)
        ...                                    # stage the new folder
        with staged_folder(out_dir, overwrite=True, expect=seen) as stage:
            ...                                # re-checked just before the swap

The lock is an advisory ``flock`` on ``.<OUT name>.lock`` next to OUT (OUT itself is renamed by every swap, so
a lock inside it would move with the old folder), removed by its holder when done; the kernel releases the lock
when its process dies, so a killed run never leaves OUT locked (only, at worst, the empty-ish file). ``flock`` works across processes and, on NFS (Linux clients emulate it with
byte-range locks) and most cluster file systems, across machines. Inside one process a thread lock per folder
serialises threads too, and a thread that already holds the lock takes it again at once (re-entrant), so a
writer may call another writer's function under its own lock. A waiting writer says on stderr whom it waits for
(the holder's pid, host and command are written into the lock file).

:func:`folder_identity` is the check behind the lock: what a writer read (OUT's inode, its manifest's inode,
size and mtime). A writer that finds it changed just before its swap (a writer that does not take the lock: an
older prefkit, a user's copy) redoes its work or refuses instead of swapping in a stale copy.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from prefkit.errors import os_error

#: the manifest's file name (also in :mod:`prefkit.store.folder`, which imports this module)
_MANIFEST = "prefkit.json"

_guard = threading.Lock()
#: resolved OUT → [thread lock, owning thread id, depth, open lock file]
_held: dict[Path, list] = {}


def lock_path(out_dir: Path | str) -> Path:
    """The lock file of ``out_dir``: ``.<name>.lock`` in OUT's parent folder, there while a writer holds it."""
    out = Path(out_dir).expanduser().resolve()
    return out.with_name(f".{out.name}.lock")


def folder_identity(out_dir: Path | str) -> tuple:
    """What a writer read: OUT's (device, inode) and its manifest's (inode, size, mtime in ns); ``()`` when OUT
    or its manifest is missing. Any swap of OUT or rewrite of its manifest changes it."""
    out = Path(out_dir)
    try:
        folder = out.stat()
        manifest = (out / _MANIFEST).stat()
    except OSError:
        return ()
    return (folder.st_dev, folder.st_ino, manifest.st_ino, manifest.st_size, manifest.st_mtime_ns)


def _stderr(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


@contextmanager
def out_lock(
    out_dir: Path | str, what: str, *, notify: Callable[[str], None] | None = _stderr
) -> Iterator[None]:
    """Hold OUT's writer lock for the block; waits (without limit) while another writer holds it.

    ``what`` names this writer in the lock file and in other writers' waiting message (``"reflogps"``,
    ``"score"``, ``"build --overwrite"``); ``notify`` gets one sentence when this writer has to wait (stderr by
    default; None: silent). Re-entrant within a thread. Raises :class:`prefkit.errors.OutputError` when the
    lock file cannot be created (OUT's parent folder missing or read-only)."""
    out = Path(out_dir).expanduser().resolve()
    me = threading.get_ident()
    with _guard:
        entry = _held.setdefault(out, [threading.Lock(), None, 0, None])
    if entry[1] == me:  # re-entered by the holder
        entry[2] += 1
        try:
            yield
        finally:
            entry[2] -= 1
        return
    if not entry[0].acquire(blocking=False):
        if notify:
            notify(f"waiting for another writer of {out} in this process to finish")
        entry[0].acquire()
    try:
        handle = _flock(out, what, notify)
        entry[1], entry[2], entry[3] = me, 1, handle
        try:
            yield
        finally:
            entry[1], entry[2], entry[3] = None, 0, None
            _release(out, handle)
    finally:
        entry[0].release()


def _flock(out: Path, what: str, notify: Callable[[str], None] | None):
    """Open and flock OUT's lock file (waiting while another process holds it); record this holder in it.

    The holder removes the file when it is done (:func:`_release`), so a waiter may get the lock on a file that
    is no longer there: it checks that the path still names the file it locked, and tries again when not."""

    path = lock_path(out)
    told = False
    while True:
        try:
            handle = open(path, "a+", encoding="utf-8")  # noqa: SIM115 (held until the block ends)
        except OSError as err:
            raise os_error(err, path) from None
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if notify and not told:
                notify(f"waiting for {_holder(path)} to finish writing {out}")
                told = True
            fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            same = os.stat(path).st_ino == os.fstat(handle.fileno()).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        handle.close()
    holder = {"pid": os.getpid(), "host": socket.gethostname(), "what": what, "since": time.time()}
    handle.seek(0)
    handle.truncate()
    handle.write(json.dumps(holder) + "\n")
    handle.flush()
    return handle


def _release(out: Path, handle) -> None:
    """Remove the lock file, then let the lock go (waiters then find the path gone or new, and try again)."""
    try:
        lock_path(out).unlink(missing_ok=True)
    finally:
        handle.close()


def _holder(path: Path) -> str:
    """Who holds the lock, as its lock file says ("reflogps (pid 123 on node1)")."""
    try:
        info = json.loads(path.read_text(encoding="utf-8") or "{}")
        return f"{info['what']} (pid {info['pid']} on {info['host']})"
    except (OSError, ValueError, KeyError, TypeError):
        return "another prefkit command"
