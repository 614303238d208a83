"""A run folder: `run.json` (`RunRecord`), the default study storage beside it, and the trial
folders, at `MODEL/PROTOCOL_DIGEST/slot-NNNN` (search) or `.../seed-NNNN` (seed re-runs).

The protocol's digest is stored with the run (and with each study), never recomputed from the
protocol: a protocol field added in a later version must not rename the studies of a stored run.
Run records written before the digest was stored get the digest their studies were named with.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Optional

from bench.config import known_keys
from bench.errors import BenchError
from bench.files import atomic_write_json, now, read_json
from bench.records.protocol import RunProtocol
from bench.records.storage import JOURNAL_NAME, RUN_RELATIVE, resolved

RUN_FILE = "run.json"
RUN_FORMAT = "bench-run/1"
SEARCH, SEEDS = "search", "seeds"  # a study's role: the budget's random search, or the best's re-runs
_FOLDER_PREFIX = {SEARCH: "slot", SEEDS: "seed"}


def legacy_digest(protocol: dict) -> str:
    """The digest a protocol stored without one was named by (`RunProtocol.digest`'s rule)."""
    return RunProtocol.from_dict(protocol).digest


@dataclass
class RunRecord:
    protocol: dict  # RunProtocol.to_dict()
    digest: str
    storage: str  # the storage URL as given; the default journal as `journal:optuna.journal` (run-relative)
    budgets: dict = field(default_factory=dict)  # model -> configurations
    seeds: int = 0
    models: list = field(default_factory=list)
    updated: Optional[str] = None

    @classmethod
    def read(cls, run_dir: Path) -> Optional["RunRecord"]:
        """The run stored in `run_dir`; None where there is none."""
        path = Path(run_dir) / RUN_FILE
        if not path.exists():
            return None
        try:
            data = read_json(path)
        except (OSError, ValueError) as exc:
            raise BenchError(f"{path} is unreadable ({exc}); it was not written by bench or is damaged") from None
        if not isinstance(data, dict) or data.get("format") != RUN_FORMAT:
            raise BenchError(f"{path} is not a bench run record; choose another --out")
        values = known_keys(cls, {k: v for k, v in data.items() if k != "format"}, path)
        values.setdefault("digest", legacy_digest(data["protocol"]))
        values.setdefault("models", list(values.get("budgets", {})))
        return cls(**values)

    @classmethod
    def require(cls, run_dir: Path) -> "RunRecord":
        record = cls.read(run_dir)
        if record is None:
            raise BenchError(f"{run_dir} holds no bench run (no {RUN_FILE}); start one with `bench run`")
        return record

    def write(self, run_dir: Path) -> None:
        self.updated = now()
        self.models = list(self.budgets)
        atomic_write_json(Path(run_dir) / RUN_FILE, {"format": RUN_FORMAT, **{f.name: getattr(self, f.name)
                                                                             for f in fields(self)}})

    @property
    def dataset(self) -> str:
        return self.protocol["dataset"]

    def storage_url(self, run_dir: Path) -> str:
        """The storage to open: a run-relative journal is the run folder's own. Records written
        before storage was stored run-relative hold the journal's absolute path; where the folder
        has a journal of its own, that is the one (a copied folder must not write into its
        original, a moved one must not recreate the old place)."""
        return resolved(self.run_relative_storage(run_dir), run_dir)

    def run_relative_storage(self, run_dir: Path) -> str:
        """`storage` in today's stored form (old absolute default journals become run-relative)."""
        url = self.storage
        if url.startswith("journal:") and Path(url[len("journal:"):]).is_absolute():
            path, beside = Path(url[len("journal:"):]), Path(run_dir) / JOURNAL_NAME
            if path.name == JOURNAL_NAME and (beside.exists() or not path.exists()):
                return RUN_RELATIVE
        return url


def find_runs(path: Path) -> list[Path]:
    """The run folders in `path`: itself, or its sub-folders (a folder of several datasets)."""
    path = Path(path)
    if (path / RUN_FILE).is_file():
        return [path]
    runs = sorted(p.parent for p in path.glob(f"*/{RUN_FILE}")) if path.is_dir() else []
    if not runs:
        raise BenchError(f"{path} holds no bench run (no {RUN_FILE} in it or its sub-folders); "
                         "start one with `bench run ... --out DIR`")
    return runs


def trial_path(run_dir: Path, model: str, digest: str, role: str, slot: int) -> Path:
    """Where a slot's trial folder lies in its run folder."""
    return Path(run_dir) / model / digest / f"{_FOLDER_PREFIX[role]}-{int(slot):04d}"
