"""Leases: how any number of workers that share OUT split a job's shards without a coordinator.

A worker is one `prefkit reflogps` process (each torchrun rank is one). Workers on any number of machines that
see the same OUT (one machine, or a shared file system: NFS, Lustre, GPFS, CephFS …) claim shards with lease
files in ``OUT/.reflogps-work/leases/``:

* ``<key>~<generation>.lease`` is a small JSON file naming its holder (host, pid, worker id) and its lease time.
  It is created exclusively: a fully written temporary file is hard-linked to the name, and ``link`` fails when
  the name exists (on NFS a retried ``link`` is settled by the temporary file's link count). Of several workers
  claiming a free shard, exactly one creates generation 0; a reader never sees a half-written lease.
* The holder renews its lease every quarter of the lease time (a heartbeat thread sets the file's modification
  time), but only while its work progresses: a shard lease is renewed while a batch finished within the last
  lease time (:meth:`Lease.progressed`), so a worker stuck in a hung kernel or a deadlocked read stops renewing
  and its shard is taken over. A lease not renewed for its lease time has expired: its holder is dead, hung or
  cut off. A lease held by a dead process on this same machine (same host, boot and pid namespace) counts as
  expired at once, so a killed run restarted on the same machine continues without waiting.
* Taking over an expired lease is creating the next generation, again exclusively, so of several workers that
  see the same expired lease exactly one takes it over; it then removes the older file. The shard never looks
  free in between, and an old holder that wakes up finds a newer generation (or its file gone) and gives the
  shard up without writing it.
* A holder checks, before it writes its shard, that its file is still there, still its own, and that no newer
  generation exists. Even when two workers race past that check, both write the same values atomically.

Clocks: expiry compares a file's modification time with the reader's clock, so the machines' clocks must agree
to well within the lease time (NTP does), and the lease time should exceed the file system's attribute cache
time (NFS ``acregmax``, 60 s by default): hence the default of 120 s. A lease renewed more than its lease time in
the reader's future cannot be a renewal by an agreeing clock: it is treated as expired, with a warning naming
the clock skew. A lease file that cannot be read as a lease (corrupted, or a lease time outside
``MIN_LEASE_SECONDS``..``MAX_LEASE_SECONDS``) lasts the reader's own lease time.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import math
import os
import socket
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from prefkit.store.writer import pid_alive

#: folder of the lease files inside the work folder
LEASE_DIR = "leases"
LEASE_SUFFIX = ".lease"
#: seconds a lease lasts without renewal (renewed every quarter of it); see the module docstring for the choice
DEFAULT_LEASE_SECONDS = 120.0
#: the shortest lease accepted (tests use ~1-2 s; real jobs should keep the default)
MIN_LEASE_SECONDS = 0.5
#: the longest lease accepted (a day): every wait for another worker ends
MAX_LEASE_SECONDS = 86400.0

logger = logging.getLogger(__name__)
_WARNED: set[tuple[str, str]] = set()  # (kind, lease path) already warned about in this process

_ACTIVE: set[str] = set()  # ids of the workers running in this process (a same-pid lease of another is stale)
_ACTIVE_LOCK = threading.Lock()


class LeaseLost(Exception):
    """This worker's lease was taken over (it had expired) or removed: it must give its work up."""


def _read_line(path: str) -> str | None:
    try:
        with open(path) as fh:
            return fh.read().strip() or None
    except OSError:
        return None


def _pid_namespace() -> str | None:
    try:
        return os.readlink("/proc/self/ns/pid")
    except OSError:
        return None


@dataclass(frozen=True)
class Worker:
    """Who holds leases: ``id`` is unique per worker; ``host``/``boot``/``pidns``/``pid`` let a worker on the
    same machine tell that a holder is a dead process; ``rank`` is the torchrun rank (0 alone)."""

    id: str
    host: str
    pid: int
    boot: str | None
    pidns: str | None
    rank: int = 0

    @classmethod
    def here(cls, rank: int = 0) -> Worker:
        """A new worker identity for this process."""
        host = socket.gethostname()
        pid = os.getpid()
        boot = _read_line("/proc/sys/kernel/random/boot_id")
        return cls(f"{host}-{pid}-{os.urandom(4).hex()}", host, pid, boot, _pid_namespace(), rank)

    def record(self) -> dict:
        """The fields a lease file names its holder with."""
        return {"worker": self.id, "host": self.host, "pid": self.pid, "boot": self.boot, "pidns": self.pidns}

    def holder_is_dead(self, info: dict) -> bool:
        """Whether the lease ``info`` belongs to a process on this machine that is gone."""
        if not self.boot or not self.pidns:
            return False
        if (info.get("host"), info.get("boot"), info.get("pidns")) != (self.host, self.boot, self.pidns):
            return False
        pid = info.get("pid")
        if not isinstance(pid, int):
            return False
        if pid == self.pid:
            with _ACTIVE_LOCK:
                return info.get("worker") not in _ACTIVE
        return not pid_alive(pid)


def create_exclusive(path: Path, text: str) -> bool:
    """Create ``path`` holding ``text`` unless it exists; True when this call created it.

    Readers see either no file or the whole text (a temporary file is hard-linked into place). Where the file
    system has no hard links, falls back to ``O_CREAT | O_EXCL``. Raises ``OSError`` when the folder is missing
    or not writable.
    """
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{os.urandom(4).hex()}.tmp")
    with open(tmp, "x", encoding="utf-8") as fh:
        fh.write(text)
    try:
        try:
            os.link(tmp, path)
            return True
        except FileExistsError:
            return os.stat(tmp).st_nlink == 2  # NFS: a retried link whose first try succeeded
        except OSError as err:
            if err.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EMLINK, errno.ENOSYS):
                raise
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666)
        except FileExistsError:
            return False
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        return True
    finally:
        tmp.unlink(missing_ok=True)


def read_json(path: Path) -> dict | None:
    """A lease (or settings) file's JSON: None when it does not exist, ``{}`` when it cannot be parsed."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


class Lease:
    """One claimed lease: renew it (the heartbeat does), check it before writing, release it when done."""

    def __init__(self, book: LeaseBook, key: str, generation: int, taken_over: bool) -> None:
        self.book = book
        self.key = key
        self.generation = generation
        self.path = book.path(key, generation)
        self.taken_over = taken_over
        self.lost = False
        #: renewals need progress (:meth:`progressed`) within the lease time; False for the merge's lease
        self.watch_progress = True
        self.progress_at = time.monotonic()
        self.stalled = False

    def progressed(self) -> None:
        """The holder's work moved on (a batch finished): the heartbeat may keep renewing."""
        self.progress_at = time.monotonic()
        self.stalled = False

    def held(self) -> bool:
        """Whether the lease is still this worker's (its file, its id, no newer generation); sets ``lost``."""
        if self.lost:
            return False
        info = read_json(self.path)
        if (
            not info
            or info.get("worker") != self.book.worker.id
            or self.book.newer(self.key, self.generation)
        ):
            self.lost = True
        return not self.lost

    def check(self) -> None:
        """Raise :class:`LeaseLost` unless the lease is still held."""
        if not self.held():
            raise LeaseLost(self.key)

    def renew(self) -> None:
        """Touch the file (the heartbeat), unless the work made no progress for a lease time (then the lease is
        left to expire, with one warning). A missing file means the lease is lost; other OS errors (a file
        system hiccup) are left to the next beat."""
        if self.lost:
            return
        idle = time.monotonic() - self.progress_at
        if self.watch_progress and idle > self.book.seconds:
            if not self.stalled:
                self.stalled = True
                logger.warning(
                    f"shard {self.key}: no progress for {idle:.0f} s (--lease-seconds {self.book.seconds:g}); "
                    "this worker stops renewing its lease, so another worker can take the shard over"
                )
            return
        try:
            os.utime(self.path)
        except FileNotFoundError:
            self.lost = True
            return
        except OSError:
            return
        with contextlib.suppress(OSError):  # e.g. a stale NFS handle: the next beat looks again
            self.held()

    def release(self) -> None:
        """Remove the file if it is still this worker's (after the shard's part is written, or on failure)."""
        if self.lost:
            return
        info = read_json(self.path)
        if info and info.get("worker") == self.book.worker.id:
            self.path.unlink(missing_ok=True)
        self.lost = True


class LeaseBook:
    """The lease folder of a work folder, seen by one worker; a context manager that marks the worker active."""

    def __init__(self, work: Path, worker: Worker, seconds: float = DEFAULT_LEASE_SECONDS) -> None:
        self.folder = Path(work) / LEASE_DIR
        self.worker = worker
        self.seconds = float(seconds)

    def __enter__(self) -> LeaseBook:
        with _ACTIVE_LOCK:
            _ACTIVE.add(self.worker.id)
        return self

    def __exit__(self, *exc: object) -> None:
        with _ACTIVE_LOCK:
            _ACTIVE.discard(self.worker.id)

    def path(self, key: str, generation: int) -> Path:
        return self.folder / f"{key}~{generation}{LEASE_SUFFIX}"

    def scan(self) -> dict[str, list[int]]:
        """``{key: [generations]}`` of the lease files present. A missing lease folder is made again when its work
        folder exists (a work folder of an older prefkit); raises ``FileNotFoundError`` when the work folder is
        gone (merged away or discarded), which is never made again here."""
        found: dict[str, list[int]] = {}
        try:
            names = os.listdir(self.folder)
        except FileNotFoundError:
            with contextlib.suppress(FileExistsError):  # made meanwhile by another worker
                self.folder.mkdir()  # no parents: FileNotFoundError when the work folder is gone
            return found
        for name in names:
            if name.startswith(".") or not name.endswith(LEASE_SUFFIX):
                continue
            key, _, gen = name[: -len(LEASE_SUFFIX)].rpartition("~")
            if key and gen.isdigit():
                found.setdefault(key, []).append(int(gen))
        return found

    def newer(self, key: str, generation: int) -> bool:
        """Whether a generation after ``generation`` exists for ``key`` (a take-over)."""
        try:
            return any(g > generation for g in self.scan().get(key, []))
        except FileNotFoundError:
            return True

    def expired(self, path: Path) -> bool | None:
        """Whether the lease at ``path`` has expired (or its holder on this machine is dead); None if it is gone.

        A lease renewed more than its lease time in this machine's future (clock skew) counts as expired; a
        corrupted lease lasts this worker's lease time (both with one warning)."""
        try:
            mtime = path.stat().st_mtime
        except FileNotFoundError:
            return None
        info = read_json(path)
        if info is None:
            return None
        if info and self.worker.holder_is_dead(info):
            return True
        seconds = recorded_seconds(info)
        if seconds is None:
            seconds = self.seconds
            _warn_once("corrupt", path, f"lease {path.name} cannot be read as a lease; it lasts --lease-seconds "
                       f"{self.seconds:g} from its last change")  # fmt: skip
        age = time.time() - mtime
        if age < -seconds:
            _warn_once("skew", path, f"lease {path.name} ({describe([info])}) was renewed {-age:.0f} s in this "
                       "machine's future: the clocks disagree (clock skew); it is treated as expired")  # fmt: skip
            return True
        return age > seconds

    def claim(self, key: str, scan: dict[str, list[int]] | None = None) -> Lease | None:
        """Claim ``key``: generation 0 when it has no lease, the next generation when its lease expired (a
        take-over); None when another worker holds it or won the race. ``scan``: a recent :meth:`scan`."""
        gens = sorted((scan if scan is not None else self.scan()).get(key, []))
        if gens:
            if not self.expired(self.path(key, gens[-1])):
                return None  # live, or just released (the caller looks again)
            generation = gens[-1] + 1
        else:
            generation = 0
        record = {
            **self.worker.record(),
            "rank": self.worker.rank,
            "key": key,
            "generation": generation,
            "lease_seconds": self.seconds,
            "acquired": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }
        if not create_exclusive(self.path(key, generation), json.dumps(record) + "\n"):
            return None
        lease = Lease(self, key, generation, taken_over=bool(gens))
        if self.newer(key, generation):  # our view was stale: someone is ahead
            lease.release()
            return None
        for old in gens:
            self.path(key, old).unlink(missing_ok=True)
        return lease

    def live(self) -> list[dict]:
        """The leases held right now (not expired), as their JSON records; [] when there is no lease folder."""
        try:
            scan = self.scan()
        except FileNotFoundError:
            return []
        held = []
        for key, gens in scan.items():
            path = self.path(key, max(gens))
            if self.expired(path) is False:
                held.append(read_json(path) or {"key": key})
        return held


class Heartbeat:
    """Renews the leases this worker holds every quarter of the lease time, on a daemon thread; a context
    manager. A lease found taken over is marked ``lost`` (the scoring loop gives the shard up)."""

    def __init__(self, seconds: float) -> None:
        self.interval = max(float(seconds) / 4, 0.05)
        self.leases: set[Lease] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="prefkit-lease-heartbeat", daemon=True)

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def add(self, lease: Lease) -> None:
        with self._lock:
            self.leases.add(lease)

    def remove(self, lease: Lease) -> None:
        with self._lock:
            self.leases.discard(lease)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            with self._lock:
                leases = list(self.leases)
            for lease in leases:
                lease.renew()


def recorded_seconds(info: dict) -> float | None:
    """The lease time a lease file records, or None when it is missing or not a lease time (a bool, NaN,
    infinite, or outside ``MIN_LEASE_SECONDS``..``MAX_LEASE_SECONDS``)."""
    value = info.get("lease_seconds")
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value) if MIN_LEASE_SECONDS <= value <= MAX_LEASE_SECONDS else None


def _warn_once(kind: str, path: Path, text: str) -> None:
    if (kind, str(path)) not in _WARNED:
        _WARNED.add((kind, str(path)))
        logger.warning(text)


def describe(records: list[dict]) -> str:
    """``host pid N (rank R)`` for up to three lease records, for messages."""
    names = sorted({f"{r.get('host', '?')} pid {r.get('pid', '?')}" for r in records})
    return ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")


#: the lease key of the merge (a shard's key is its split and index, e.g. ``train-00003``)
MERGE_KEY = "merge"


class LeaseWaits:
    """One line for each lease a worker waits for: the shard (or the merge), its holder, and how long until it is
    taken over if not renewed. The leases are read at most every ``EVERY`` seconds (a shared file system is asked
    little)."""

    EVERY = 10.0

    def __init__(self) -> None:
        self.said: set[tuple[str, str]] = set()
        self.next_look = 0.0

    def say(self, book: LeaseBook, keys: set[str]) -> None:
        if time.monotonic() < self.next_look:
            return
        self.next_look = time.monotonic() + self.EVERY
        for record in book.live():
            key, holder = str(record.get("key", "?")), str(record.get("worker", "?"))
            if key not in keys or (key, holder) in self.said:
                continue
            self.said.add((key, holder))
            what = "the merge" if key == MERGE_KEY else f"shard {key}"
            logger.warning(
                f"waiting for {what}, held by {describe([record])} (worker {holder}); it is taken over if its "
                f"lease is not renewed for {record.get('lease_seconds', book.seconds)} s"
            )
