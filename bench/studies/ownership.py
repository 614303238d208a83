"""Who owns a trial while it trains, how a lost one is found, and how a worker rides out a
database restart.

A worker has an identity unique to its process (a random id beside host, PID, the process's start
and its PID namespace), writes it into each trial it claims, refreshes a heartbeat while it
trains, and holds the trial folder's lease (bench/records/trial_folder.py). A RUNNING trial whose
process is gone (same host and PID namespace) or whose heartbeat is older than the grace period
(elsewhere) goes back to WAITING; the next claim resumes from the slot's checkpoint. A heartbeat
that finds its trial taken over, or cannot reach the storage for half the grace period, marks
the lease lost: the worker stops at its next step and writes nothing more, so two owners never
write one folder. Storage calls are retried through an outage for STORAGE_PATIENCE seconds.
"""

from __future__ import annotations

import os
import platform
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Callable, Optional

from bench.errors import BenchError
from bench.records.study_store import StoredStudy
from bench.records.trial_folder import Lease

HEARTBEAT_SECONDS = 15.0
GRACE_SECONDS = 300.0  # a trial on another host is presumed lost after this long without a heartbeat
ABANDON_SECONDS = GRACE_SECONDS / 2  # a worker that cannot renew its claim this long stops the trial
STORAGE_PATIENCE = 600.0  # how long storage calls are retried through an outage before the worker gives up
CLAIM_SECONDS = 60.0  # a claim begun this recently is in progress, whatever its previous owner
HOST = platform.node()


def reclaim_lost_trials(study: StoredStudy, grace: float = GRACE_SECONDS) -> int:
    """Put RUNNING trials whose worker is gone back in the queue; returns how many. Called only
    between trials, so a trial this very process holds is one it is not training (a claim cut
    by a storage error after the state change): it goes back too."""
    return sum(study.release(t, (study.owner(t) or {}).get("id")) for t in study.trials("running")
               if not _alive(study, t, grace))


def _alive(study: StoredStudy, trial, grace: float) -> bool:
    if study.claim_in_progress(trial, CLAIM_SECONDS):  # its owner record is still the previous claim's
        return True
    owner = study.owner(trial) or {}
    me = worker_identity()
    if owner.get("id") == me["id"]:
        return False
    # The process table answers only within one PID namespace: containers that share a host name
    # (docker --network host) but not their PIDs are told apart by the heartbeat alone.
    local = owner.get("host") == HOST and owner.get("pidns", me["pidns"]) == me["pidns"]
    if local and owner.get("pid"):
        return _process_alive(owner.get("pid"), owner.get("start"))
    return time.time() - study.last_heartbeat(trial) < grace


_IDENTITY: Optional[dict] = None


def worker_identity() -> dict:
    """This process as the owner of the trials it claims; `id` is unique to it (a forked child
    gets its own)."""
    global _IDENTITY
    if _IDENTITY is None or _IDENTITY["pid"] != os.getpid():
        pid = os.getpid()
        _IDENTITY = {"host": HOST, "pid": pid, "start": _process_start(pid), "pidns": _pid_namespace(),
                     "id": uuid.uuid4().hex}
    return _IDENTITY


def _pid_namespace() -> Optional[str]:
    try:
        return os.readlink("/proc/self/ns/pid")
    except OSError:
        return None


def _process_start(pid: int) -> Optional[str]:
    """The process's start time in clock ticks since boot (Linux), to tell a reused PID apart."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def _process_alive(pid: Optional[int], start: Optional[str]) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # exists, owned by someone else
    return start is None or _process_start(pid) in (None, start)


class Heartbeat:
    """Keeps a worker's claims alive while it trains them, and tells it when one is lost.

    Every HEARTBEAT_SECONDS it renews each trial; a trial the storage says is no longer this
    worker's (re-queued as lost, e.g. after a long outage) has its lease marked lost. Errors
    reaching the storage are retried at the next beat; after ABANDON_SECONDS without one
    successful renewal every lease is marked lost, well before another worker may take the
    trials over (GRACE_SECONDS)."""

    def __init__(self, study: StoredStudy, trials: list, leases: list[Lease]):
        self.study, self.claims = study, list(zip(trials, leases))
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        owner_id, renewed = worker_identity()["id"], time.time()
        while self.claims and not self._stop.wait(HEARTBEAT_SECONDS):
            try:
                for trial, lease in list(self.claims):
                    if not self.study.renew(trial, owner_id):
                        lease.lost.set()
                        self.claims.remove((trial, lease))
                    else:
                        lease.renewed()
                renewed = time.time()
            except Exception:
                if time.time() - renewed > ABANDON_SECONDS:
                    for _, lease in self.claims:
                        lease.lost.set()
                    return


def _transient(exc: BaseException) -> bool:
    """A storage error that a retry may cure: a dropped connection, a database restarting, a busy file."""
    from optuna.exceptions import StorageInternalError

    from bench.records.storage import StorageUnreachable

    if isinstance(exc, StorageUnreachable):
        return True
    if isinstance(exc, (BenchError, KeyboardInterrupt)):
        return False
    if isinstance(exc, (StorageInternalError, ConnectionError, TimeoutError)):
        return True
    try:
        from sqlalchemy.exc import DBAPIError, OperationalError

        return isinstance(exc, (OperationalError, DBAPIError))
    except ImportError:
        return False


def patiently(fn: Callable, *args, **kwargs):
    """`fn(*args)`, retried with back-off through a storage outage of up to STORAGE_PATIENCE seconds."""
    deadline, pause = time.time() + STORAGE_PATIENCE, 1.0
    while True:
        try:
            return fn(*args, **kwargs)
        except Exception as exc:
            if not _transient(exc) or time.time() + pause > deadline:
                raise
            print(f"bench: storage unreachable ({first_line(exc)[:120]}); retrying in {pause:.0f} s",
                  file=sys.stderr, flush=True)
            time.sleep(pause)
            pause = min(pause * 2, 10.0)  # short: a restarted database is used again within seconds


def first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0]}" if text else type(exc).__name__
