"""Where studies live: a journal file in the run folder by default, or a database URL.

- default: Optuna's journal file `DIR/optuna.journal`, safe for several worker processes on one
  machine (file lock, append-only log), no server;
- `sqlite:///PATH`: one machine, with a generous lock timeout so concurrent workers wait rather
  than fail;
- `postgresql://USER:PASS@HOST:PORT/DB`: many machines; `bench worker` joins from anywhere.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlparse

import optuna

from bench.errors import BenchError

JOURNAL_NAME = "optuna.journal"
ACCEPTED = "journal:PATH, sqlite:///PATH, postgresql://USER:PASS@HOST:PORT/DB"


def default_storage_url(run_dir: Path) -> str:
    return f"journal:{(Path(run_dir) / JOURNAL_NAME).resolve()}"


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
            from optuna.storages.journal import JournalFileBackend, JournalFileOpenLock

            path = Path(url[len("journal:"):])
            path.parent.mkdir(parents=True, exist_ok=True)
            return optuna.storages.JournalStorage(JournalFileBackend(str(path), lock_obj=JournalFileOpenLock(str(path))))
        if url.startswith("sqlite"):
            return optuna.storages.RDBStorage(url, engine_kwargs={"connect_args": {"timeout": 120}})
        if url.startswith("postgres://"):
            url = "postgresql://" + url[len("postgres://"):]
        return optuna.storages.RDBStorage(url, engine_kwargs={"pool_pre_ping": True, "connect_args": {"connect_timeout": 10}})
    except BenchError:
        raise
    except ModuleNotFoundError as exc:
        raise BenchError(f"storage {_redact(url)} needs the Python package {exc.name!r}: "
                         "pip install 'bench[postgres]'") from None
    except Exception as exc:  # unreachable server, bad credentials, unwritable file
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise BenchError(f"cannot open storage {_redact(url)}: {reason}") from None


def _redact(url: str) -> str:
    parsed = urlparse(url)
    if parsed.password:
        return url.replace(f":{parsed.password}@", ":***@")
    return url
