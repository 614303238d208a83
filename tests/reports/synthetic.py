"""Results folders made from synthetic trial records: every number in them is known."""

from __future__ import annotations

from pathlib import Path

import optuna
from optuna.trial import TrialState, create_trial

from bench.files import atomic_write_json
from bench.models import get_model_class
from bench.scores import score_for
from bench.records.protocol import RunProtocol
from bench.studies.search import distributions
from bench.records.storage import default_storage_url, open_storage
from bench.records.study_store import StudyStore
from bench.studies.study import SEARCH, SEEDS, open_study

TINY = dict(search="wide", steps=100, eval_every=50, eval_samples=64, extractor="tiny", match="steps")


def make_run(out: Path, trials: dict, dataset: str = "mnist", seeds: dict | None = None,
             pending: dict | None = None, protocol: dict | None = None, nll: dict | None = None,
             f1: dict | None = None, seed_f1: dict | None = None, stored: str = "new") -> RunProtocol:
    """`trials`: model -> list of per-trial FID lists (one FID per evaluation point; None = the
    trial diverged before any; an infinite or NaN FID = it diverged there, after the points before);
    `seeds`: model -> the same for best-configuration reruns; `pending`: model -> number of extra
    slots still waiting; `nll`: model -> (metric, lists of values parallel to its FID lists), e.g.
    ("nll_bpd", [[5.1, 4.8], [6.0]]); `f1` (`seed_f1`): model -> triangle F1 lists parallel to the
    (seed) FID lists (default 0.2 everywhere). `stored="old"` writes the Optuna values as bench did
    before diverged trials kept their best point (infinite) and triangles were scored by F1 (min FID)."""
    proto = RunProtocol(dataset=dataset, **(protocol or TINY))
    url = default_storage_url(out)
    store = StudyStore(url)
    for model, fid_lists in trials.items():
        _add_trials(open_study(store, proto, model, SEARCH), url, proto, model, fid_lists, first_slot=0,
                    waiting=(pending or {}).get(model, 0), nll=(nll or {}).get(model), f1=(f1 or {}).get(model),
                    stored=stored)
    for model, fid_lists in (seeds or {}).items():
        _add_trials(open_study(store, proto, model, SEEDS), url, proto, model, fid_lists, first_slot=1,
                    f1=(seed_f1 or {}).get(model), stored=stored)
    atomic_write_json(out / "run.json", {"format": "bench-run/1", "protocol": proto.to_dict(), "storage": url,
                                         "models": list(trials), "budgets": {m: len(v) for m, v in trials.items()},
                                         "seeds": 0, "updated": "2026-11-26T00:00:00+00:00"})
    return proto


def _add_trials(study, study_url, proto, model, fid_lists, first_slot, waiting=0, nll=None, f1=None, stored="new"):
    raw = optuna.load_study(study_name=study.name, storage=open_storage(study_url))  # finished trials, made directly
    space = get_model_class(model).search_space
    dists = distributions(space, proto.search)
    for i, fids in enumerate(fid_lists):
        slot = first_slot + i
        params = dict(space.defaults)
        params["lr"] = 10.0 ** (-5 + 0.5 * i)
        diverged = fids is None or any(f != f or f == float("inf") for f in fids)
        finite = []
        for f in fids or []:
            if f != f or f == float("inf"):
                break  # the trial stopped where it diverged
            finite.append(f)
        f1s = f1[i] if f1 is not None else [0.2] * len(finite)
        evaluations = [{"step": proto.eval_every * (j + 1), "g_steps": proto.eval_every * (j + 1),
                        "images_seen": 64 * proto.eval_every * (j + 1), "train_seconds": 10.0 * (j + 1),
                        "eval_seconds": 2.0 * (j + 1),
                        "metrics": {"fid": f, "precision": 0.5 + 0.01 * i, "recall": 0.4, "kid_mean": f / 1000,
                                    "tri_precision": 0.9 - 0.01 * j, "tri_recall": 0.1 * j, "tri_f1": f1s[j]},
                        "protocol": {"standard": False, "extractor": {"extractor": "tiny-random-projection"},
                                     "n_real": 64, "n_fake": 64}}
                       for j, f in enumerate(finite)]
        if nll is not None:
            metric, values = nll
            for evaluation, value in zip(evaluations, values[i]):
                evaluation["metrics"].update({metric: value, f"{metric}_se": 0.01})
                # As a trial records it: exact models k = 1, bounds the protocol's k (at reported points).
                evaluation["protocol"]["nll"] = ({"k": 1, "estimator": "exact", "n": 64} if metric == "nll_bpd" else
                                                 {"k": _protocol_k(proto), "n": 64,
                                                  "estimator": f"importance-weighted bound, k = {_protocol_k(proto)}"})
        attrs = {"slot": slot, "seed": slot, "role": study.meta.role,
                 "status": "diverged" if diverged else "complete",
                 "best_fid": min(finite) if finite else None, "evaluations": evaluations,
                 "compute": {"steps": proto.steps, "g_steps": proto.steps, "images_seen": 64 * proto.steps,
                             "flops": 1e9 * (i + 1), "flops_per_step": 1e7, "train_seconds": 20.0, "eval_seconds": 4.0},
                 "folder": f"/nonexistent/{model}/{slot}"}
        score = score_for(proto.dataset)
        value = (float("inf") if diverged or not finite else min(finite)) if stored == "old" else \
            score.stored_value(evaluations)
        raw.add_trial(create_trial(state=TrialState.COMPLETE, value=value, params=params, distributions=dists,
                                     user_attrs=attrs))
    space_defaults = dict(space.defaults)
    for k in range(waiting):
        raw.add_trial(create_trial(state=TrialState.WAITING, params=space_defaults, distributions=dists,
                                     user_attrs={"slot": first_slot + len(fid_lists) + k, "seed": 0,
                                                 "role": study.meta.role}))


def _protocol_k(proto) -> int:
    value = proto.get("nll_k") if isinstance(proto, dict) else getattr(proto, "nll_k", None)
    return int(value) if value else 16
