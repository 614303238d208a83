"""The report's first screen: which model is best on this run, by how much, with what certainty.

Per protocol: the protocol in one line; the models ranked by the bootstrap mean of their best score
among k trials, k the largest budget point every model has reached, with its 95% interval; which
of the best model's leads are clear (P(beats) >= CLEAR) and which are not; the divergence rate;
and, for a smoke protocol, one sentence saying its numbers rank nothing. Everything here is read
from the same tables as the sections below (bench/reports/tables.py), so the two never disagree.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from bench.reports import tables
from bench.reports.render import cell
from bench.reports.bootstrap import BUDGET_POINTS
from bench.reports.results import finished
from bench.scores import score_for

CLEAR = 0.95  # P(A beats B) at or above which the summary calls a difference clear
# Below these a run tests the machinery: models have barely left their initialisation, and FID on
# fewer than a thousand samples is dominated by its bias (Chong & Forsyth 2020).
SMOKE_STEPS = 1000
SMOKE_SAMPLES = 1000


def summary_blocks(results: pd.DataFrame, budget: pd.DataFrame, pairwise) -> list[dict]:
    """One dict per (dataset, protocol): `lines` (Markdown sentences) and `ranking` (a table).
    `budget` is tables.budget_table of `results`; `pairwise(k)` its tables.pairwise_table at k."""
    blocks = []
    search = tables.search_trials(results)
    if search.empty:
        return blocks
    for (dataset, pid), block in search.groupby(["dataset", "protocol_id"], sort=False):
        score = score_for(dataset)
        rows = results[(results["dataset"] == dataset) & (results["protocol_id"] == pid)]
        protocol = {c[len("protocol."):]: v for c, v in rows.iloc[0].items() if c.startswith("protocol.")}
        done = block[finished(block["status"])]
        per_model = done.groupby("model", sort=False).size()
        lines = [_protocol_line(dataset, pid, protocol, block, score)]
        if per_model.empty:
            blocks.append({"lines": lines + ["No trial has finished yet."], "ranking": pd.DataFrame()})
            continue
        reached = int(per_model.min())
        points = [k for k in BUDGET_POINTS if k <= reached]
        k = points[-1] if points else 1
        at_k = budget[(budget["dataset"] == dataset) & (budget["protocol_id"] == pid) & (budget["k"] == k)]
        at_k = at_k.assign(_key=score.key(at_k["mean"].astype(float).to_numpy())).sort_values("_key", kind="stable")
        ranking = _ranking_table(at_k, done, score)
        scored = at_k[np.isfinite(at_k["_key"])]
        if scored.empty:
            lines.append(f"No model has a {score.label} yet at budget {k}.")
        else:
            best = scored.iloc[0]
            # Models whose mean equals the best one's share first place: naming one as "best" would
            # rank by table order (a smoke run where every FID is the same, or every NLL infinite).
            tied = scored[np.isclose(scored["mean"].astype(float), float(best["mean"]), rtol=1e-9, atol=0)]
            head = (f"**Best at budget {k}: {best['model']}**" if len(tied) == 1 else
                    f"**Tied for best at budget {k}: {', '.join(tied['model'])}**")
            lines.append(f"{head}, {score.best_word} {score.label} among {k} "
                         f"trial{'s' if k > 1 else ''} {_num(best['mean'])} (95% interval {_num(best['lo'])}–"
                         f"{_num(best['hi'])}, bootstrap).")
            lines.append(_clear_line(pairwise(k), best["model"], dataset, pid))
        diverged = int((done["status"] == "diverged").sum())
        worst = (done.assign(d=done["status"] == "diverged").groupby("model")["d"].mean().sort_values(ascending=False))
        lines.append(f"Divergence: {diverged} of {len(done)} finished trials ({100 * diverged / len(done):.0f}%)"
                     + (f"; most in {worst.index[0]} ({100 * worst.iloc[0]:.0f}%)." if diverged else "."))
        smoke = _smoke(protocol)
        if smoke:
            lines.append(f"> **Smoke protocol ({smoke}).** These numbers show that every part runs; they rank "
                         "nothing: the models have barely started to learn.")
        blocks.append({"lines": lines, "ranking": ranking})
    return blocks


def _protocol_line(dataset, pid, protocol: dict, block: pd.DataFrame, score) -> str:
    models = block["model"].nunique()
    budgets = block.groupby("model").size()
    budget = f"{budgets.min()}" if budgets.min() == budgets.max() else f"{budgets.min()}–{budgets.max()}"
    return (f"**{dataset}** (protocol `{pid}`): {models} models × {budget} trials of {protocol.get('steps')} steps "
            f"on the {protocol.get('arch')} architecture, {protocol.get('search')} search, scored by "
            f"{score.best_word} {score.label} on {protocol.get('eval_samples')} samples every {protocol.get('eval_every')} steps.")


def _ranking_table(at_k: pd.DataFrame, done: pd.DataFrame, score) -> pd.DataFrame:
    share = done.assign(d=done["status"] == "diverged").groupby("model")["d"].mean()
    ranked = at_k[np.isfinite(at_k["_key"])]
    family = done.groupby("model")["family"].first() if "family" in done else pd.Series(dtype=object)
    table = pd.DataFrame({
        "rank": range(1, len(ranked) + 1),
        "model": ranked["model"].to_numpy(),
        "family": [family.get(m, np.nan) for m in ranked["model"]],
        score.metric: ranked["mean"].astype(float).to_numpy(),
        "lo": ranked["lo"].astype(float).to_numpy(),
        "hi": ranked["hi"].astype(float).to_numpy(),
        "diverged_share": [share.get(m, np.nan) for m in ranked["model"]],
    })
    unscored = at_k[~np.isfinite(at_k["_key"])]["model"].tolist()
    if unscored:
        table = pd.concat([table, pd.DataFrame({"model": unscored, "family": [family.get(m, np.nan) for m in unscored],
                                                "diverged_share": [share.get(m, np.nan) for m in unscored]})],
                          ignore_index=True)
    return table


def _clear_line(pairs: pd.DataFrame, best: str, dataset, pid) -> str:
    if not pairs.empty:
        pairs = pairs[(pairs["dataset"] == dataset) & (pairs["protocol_id"] == pid)].dropna(axis=1, how="all")
    if pairs.empty or best not in set(pairs["model"]):
        return ""
    row = pairs[pairs["model"] == best].iloc[0]
    others = [c for c in pairs.columns if c not in ("model", "dataset", "protocol_id", "k") and c != best]
    clear = [m for m in others if row[m] >= CLEAR]
    unclear = sorted(((m, row[m]) for m in others if row[m] < CLEAR), key=lambda mp: -mp[1])
    matrix = pairs.set_index("model")[[c for c in others + [best] if c in pairs]]
    values = matrix.to_numpy(dtype=float)
    n_clear = int(np.sum(values >= CLEAR))
    n_pairs = len(matrix) * (len(matrix) - 1) // 2
    text = (f"{best} beats {', '.join(clear)} clearly (P ≥ {CLEAR:g})" if clear else
            f"{best} beats no model clearly (P ≥ {CLEAR:g})")
    if unclear:
        shown = ", ".join(f"{m} (P = {p:.2f})" for m, p in unclear[:4]) + (", …" if len(unclear) > 4 else "")
        text += f"; not clearly: {shown}"
    return text + f". Of all {n_pairs} pairs of models, {n_clear} differ clearly."


def _smoke(protocol: dict) -> str:
    reasons = []
    steps, samples = protocol.get("steps"), protocol.get("eval_samples")
    if steps is not None and float(steps) < SMOKE_STEPS:
        reasons.append(f"{int(steps)} steps")
    if samples is not None and float(samples) < SMOKE_SAMPLES:
        reasons.append(f"{int(samples)} samples per evaluation")
    return ", ".join(reasons)


def _num(value) -> str:
    return cell("mean", float(value))  # as the tables print it
