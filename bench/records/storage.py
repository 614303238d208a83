"""Where studies live: a journal file in the run folder by default, or a database URL.

- default: Optuna's journal file `DIR/optuna.journal`, safe for several worker processes on one
  machine (file lock, append-only log), no server. Its path is stored relative to the run folder
  (`journal:optuna.journal`), so that a copied or moved run folder reads and writes its own. A
  journal whose last record was cut (power loss, a full disk, a kill mid-write) is repaired when
  it is opened, before anything is appended to it: the torn bytes go to `optuna.journal.torn`;
- `sqlite:///PATH`: one machine, with a generous lock timeout so concurrent workers wait rather
  than fail;
- `postgresql://USER:PASS@HOST:PORT/DB`: many machines; `bench worker` joins from anywhere.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Optional
from urllib.parse import urlparse

import optuna
from optuna.storages.journal import JournalFileBackend, JournalFileOpenLock
from optuna.storages.journal._file import get_lock_file

from bench.errors import BenchError

JOURNAL_NAME = "optuna.journal"
ACCEPTED = "journal:PATH, sqlite:///PATH, postgresql://USER:PASS@HOST:PORT/DB"


RUN_RELATIVE = f"journal:{JOURNAL_NAME}"  # the default storage as run.json stores it
TORN_SUFFIX = ".torn"
_TAIL_LINES = 8  # torn records set aside at most; more unreadable lines than this is damage, not a cut


def stored_form(url: str) -> str:
    """The storage as run.json keeps it: a journal path absolute (it must not depend on the
    directory a later command runs in), other URLs as given."""
    if url.startswith("journal:"):
        path = url[len("journal:"):]
        return url if path == JOURNAL_NAME else f"journal:{Path(path).resolve()}"
    return url


def resolved(url: str, run_dir: Path) -> str:
    """The storage to open for a run folder: a relative journal path is the run folder's own."""
    if url.startswith("journal:") and not Path(url[len("journal:"):]).is_absolute():
        return f"journal:{(Path(run_dir) / url[len('journal:'):]).resolve()}"
    return url


def repair_torn_journal(path: Path) -> Optional[Path]:
    """Set aside a journal's torn tail: trailing bytes that are not a complete JSON line.

    Optuna reads such a journal but appends after the fragment, and the next read fails for
    good; cut back to the last complete record, under the journal's own lock, the run goes on
    from there. Returns the `.torn` file written, or None where the journal was whole."""
    path = Path(path)
    if not path.exists() or path.stat().st_size == 0:
        return None
    with get_lock_file(JournalFileOpenLock(str(path))):
        return _cut_torn_tail(path)


def _cut_torn_tail(path: Path) -> Optional[Path]:
    """repair_torn_journal's work, for a caller that holds the journal's lock."""
    with open(path, "rb+") as f:
        cut = _last_whole_record_end(f)
        size = f.seek(0, os.SEEK_END)
        if cut == size:
            return None
        f.seek(cut)
        torn = f.read()
        aside = path.with_name(path.name + TORN_SUFFIX)
        with open(aside, "ab") as out:
            out.write(torn + (b"" if torn.endswith(b"\n") else b"\n"))
            out.flush()
            os.fsync(out.fileno())
        f.truncate(cut)
        f.flush()
        os.fsync(f.fileno())
    print(f"bench: warning: {path} ended in a torn record ({len(torn)} bytes, from a write that was cut); "
          f"it was set aside in {aside} and the run goes on from the record before it", file=sys.stderr)
    return aside


class RepairingJournalFile(JournalFileBackend):
    """Optuna's journal file, checking under its lock before each append that the file ends in a
    whole record: a write cut while workers run (a full disk) is set aside, not appended onto
    (which would make every later read fail)."""

    def append_logs(self, logs) -> None:
        with get_lock_file(self._lock):
            with open(self._file_path, "rb") as f:
                size = f.seek(0, os.SEEK_END)
                if size:
                    f.seek(size - 1)
                whole = size == 0 or f.read(1) == b"\n"
            if not whole:
                _cut_torn_tail(Path(self._file_path))
            text = "\n".join(json.dumps(log, separators=(",", ":")) for log in logs) + "\n"
            with open(self._file_path, "ab") as f:
                f.write(text.encode("utf-8"))
                f.flush()
                os.fsync(f.fileno())


def _last_whole_record_end(f) -> int:
    """The offset just past the journal's last complete, parseable line (reads only the tail)."""
    size = f.seek(0, os.SEEK_END)
    end = size
    for _ in range(_TAIL_LINES + 1):
        if end == 0:
            return 0
        start = _line_start(f, end)
        f.seek(start)
        line = f.read(end - start)
        if line.endswith(b"\n"):
            try:
                json.loads(line)
                return end
            except ValueError:
                pass
        end = start
    raise BenchError(f"{f.name}: more than {_TAIL_LINES} records at its end are unreadable; this is damage, "
                     "not a cut write: restore the journal from a copy")


def _line_start(f, end: int) -> int:
    """Where the line that ends at `end` (its newline included, if any) starts."""
    pos, chunk = end - 1, 1 << 16  # the line's own trailing newline does not end the line before it
    while pos > 0:
        lo = max(0, pos - chunk)
        f.seek(lo)
        found = f.read(pos - lo).rfind(b"\n")
        if found >= 0:
            return lo + found + 1
        pos, chunk = lo, chunk * 2
    return 0


def default_storage_url(run_dir: Path) -> str:
    return resolved(RUN_RELATIVE, run_dir)


def check_storage_url(url: str) -> str:
    """The URL if its form is one we accept; a one-line error otherwise (before anything is written)."""
    if url.startswith("journal:"):
        if not url[len("journal:"):]:
            raise BenchError(f"storage {url!r} names no file; accepted: {ACCEPTED}")
        return url
    parsed = urlparse(url)
    scheme = parsed.scheme.split("+")[0]
    if scheme == "sqlite" and url.startswith("sqlite:///") and len(url) > len("sqlite:///"):
        return url
    if scheme in ("postgresql", "postgres") and parsed.hostname and parsed.path.strip("/"):
        return url
    raise BenchError(f"malformed storage URL {url!r}; accepted: {ACCEPTED}")


def open_storage(url: str) -> optuna.storages.BaseStorage:
    url = check_storage_url(url)
    try:
        if url.startswith("journal:"):
            path = Path(url[len("journal:"):])
            path.parent.mkdir(parents=True, exist_ok=True)
            repair_torn_journal(path)
            return optuna.storages.JournalStorage(RepairingJournalFile(str(path), lock_obj=JournalFileOpenLock(str(path))))
        if url.startswith("sqlite"):
            return optuna.storages.RDBStorage(url, engine_kwargs={"connect_args": {"timeout": 120}})
        if url.startswith("postgres://"):
            url = "postgresql://" + url[len("postgres://"):]
        _check_postgres_driver(url)
        # A worker uses one connection and its heartbeat thread a second: a pool of that size, so
        # that 64 workers stay within PostgreSQL's default 100 connections.
        # TCP keepalives: a connection to a server that went away fails within a minute instead of
        # hanging a heartbeat for good.
        connect = {"connect_timeout": 10, "keepalives": 1, "keepalives_idle": 30, "keepalives_interval": 10,
                   "keepalives_count": 3}
        return optuna.storages.RDBStorage(url, engine_kwargs={
            "pool_pre_ping": True, "pool_size": 1, "max_overflow": 1, "connect_args": connect})
    except BenchError:
        raise
    except ModuleNotFoundError as exc:
        raise BenchError(f"storage {_redact(url)} needs the Python package {exc.name!r}: "
                         "pip install 'bench[postgres]'") from None
    except Exception as exc:  # unreachable server, bad credentials, unwritable file
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise StorageUnreachable(f"cannot open storage {_redact(url)}: {reason}") from None


def _check_postgres_driver(url: str) -> None:
    """SQLAlchemy picks psycopg (3) for postgresql:// and psycopg2 for +psycopg2; without it
    Optuna's message names no package. Not a StorageUnreachable: waiting would not help."""
    import importlib.util

    module = urlparse(url).scheme.partition("+")[2] or "psycopg"  # the driver's name is its module's
    if importlib.util.find_spec(module) is None:
        raise BenchError(f"storage {_redact(url)} needs the PostgreSQL driver {module!r}, which is not installed: "
                         "pip install 'bench[postgres]'")


class StorageUnreachable(BenchError):
    """The storage could not be opened (a server down or refusing, a file that cannot be written):
    `bench run` says so at once; a worker waits for it (bench/studies/worker.py `patiently`)."""


def _redact(url: str) -> str:
    parsed = urlparse(url)
    if parsed.password:
        return url.replace(f":{parsed.password}@", ":***@")
    return url
