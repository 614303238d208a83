"""The report's figures, each drawn from the tidy results table (and the trial folders' sample
grids), each saved as PNG and SVG. Figures of several protocols get one panel per protocol."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np
import pandas as pd

from matplotlib.ticker import MaxNLocator

from bench.records.trial_folder import TrialFolder
from bench.reports.bootstrap import DRAWS
from bench.reports.results import finished, score_keys
from bench.reports.tables import NLL_COLUMNS, at_protocol_k, best_trials, budget_curves, search_trials, trial_scores
from bench.reports.style import model_styles
from bench.scores import FID, score_for


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only: a report is written on headless machines
    import matplotlib.pyplot as plt

    plt.rcParams.update({"figure.dpi": 110, "axes.grid": True, "grid.alpha": 0.3, "axes.spines.top": False,
                         "axes.spines.right": False, "font.size": 9,
                         "svg.fonttype": "none"})  # SVG text stays text: smaller, searchable
    return plt


def _save(fig, out_dir: Path, name: str, tight: bool = True) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    if tight:  # the sample grid sets its own spacing
        fig.tight_layout()
    for ext in ("png", "svg"):
        fig.savefig(out_dir / f"{name}.{ext}", bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    return out_dir / f"{name}.png"


def _panels(frame: pd.DataFrame, plt, width: float = 6.0, height: float = 3.6):
    """One axis per (dataset, protocol) block of `frame`."""
    blocks = list(frame.groupby(["dataset", "protocol_id"], sort=False))
    fig, axes = plt.subplots(1, len(blocks), figsize=(width * len(blocks), height), squeeze=False)
    for ax, ((dataset, pid), block) in zip(axes[0], blocks):
        ax.set_title(f"{dataset} (protocol {pid})" if len(blocks) > 1 else dataset)
        yield fig, ax, block


def _styles(results: pd.DataFrame) -> dict:
    """Every model of the report, not only this figure's: a model keeps its colour from figure to figure."""
    return model_styles(results["model"].dropna().unique())


def _legend(fig, styles: dict) -> None:
    """One legend for the figure, outside the axes (right of the panels) so that it hides no data;
    a model's series carry one label however many panels show it, listed in registry order."""
    handles = {}
    for ax in fig.axes:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            handles.setdefault(label, handle)
    place = {model: i for i, model in enumerate(styles)}
    handles = dict(sorted(handles.items(), key=lambda item: (place.get(item[0].split(" (trial ")[0], len(place)),
                                                              item[0])))
    if handles:
        fig.legend(list(handles.values()), list(handles), loc="upper left", bbox_to_anchor=(1.0, 0.98), fontsize=7,
                   frameon=False, ncol=1 if len(handles) <= 16 else 2)


def _drop_empty(fig) -> None:
    """Remove the panels a facet left without a series (a dataset whose models are all GANs)."""
    for ax in list(fig.axes):
        if not ax.get_lines():
            fig.delaxes(ax)


FACET_AT = 8  # more models than this on one axis: GANs and the other families get a panel each


def _facets(models) -> list[tuple[str, list]]:
    """[(panel title suffix, models)]: one facet, or GANs and the likelihood-based families apart."""
    models = list(models)
    if len(models) <= FACET_AT:
        return [("", models)]
    gans = [m for m in models if _family(m) == "gan"]
    others = [m for m in models if m not in gans]
    return [(f" · {name}", group) for name, group in (("GANs", gans), ("other families", others)) if group]


def _family(model: str) -> str:
    from bench.models import model_names, get_model_class

    return get_model_class(model).family if model in model_names() else ""


def score_distribution(results: pd.DataFrame, out_dir: Path) -> Optional[Path]:
    """Each model's trial scores (box + points), as the study's wide-search figure."""
    trials = search_trials(results)
    trials = trials[finished(trials["status"])]
    trials = trials[np.isfinite(score_keys(trials))]
    if trials.empty:
        return None
    plt = _pyplot()
    styles = _styles(results)
    fig = None
    for fig, ax, block in _panels(trials, plt):
        score = score_for(block["dataset"].iloc[0])
        models = list(dict.fromkeys(block["model"]))
        data = [block.loc[block["model"] == m, score.metric].astype(float).to_numpy() for m in models]
        ax.boxplot(data, showfliers=False, widths=0.6, medianprops={"color": "#333333"})
        for i, (model, values) in enumerate(zip(models, data), start=1):
            jitter = np.random.default_rng(i).uniform(-0.15, 0.15, len(values))
            ax.scatter(i + jitter, values, s=12, alpha=0.7, color=styles[model].color, marker=styles[model].marker,
                       zorder=3, label=model)
        ax.set_xticks(range(1, len(models) + 1), models, rotation=30, ha="right")
        ax.set_ylabel(f"{score.label} ({score.best_word} over evaluation points)")
    return _save(fig, out_dir, "score_distribution")


def budget_plot(results: pd.DataFrame, out_dir: Path, draws: int = DRAWS) -> Optional[Path]:
    """The best score against budget k with a ±1 std band (bootstrap); on triangles, beside F1,
    the precision and recall of the winning max-F1 points. Columns: protocol × quantity; rows:
    the facets of _facets when one axis would hold too many bands."""
    curves = budget_curves(results, draws=draws)
    if curves.empty:
        return None
    plt = _pyplot()
    styles = _styles(results)
    blocks = list(curves.groupby(["dataset", "protocol_id"], sort=False))
    columns = []  # (title, block, column, y label)
    for (dataset, pid), block in blocks:
        score = score_for(dataset)
        title = f"{dataset} (protocol {pid})" if len(blocks) > 1 else dataset
        columns.append((title, block, "mean", f"{score.best_word} {score.label} among k trials"))
        columns += [(title, block, c, f"{c.replace('tri_', 'triangle ')} at that point")
                    for c in score.companions if c in block and block[c].notna().any()]
    facets = _facets(dict.fromkeys(curves["model"]))
    fig, axes = plt.subplots(len(facets), len(columns), figsize=(5.2 * len(columns), 3.4 * len(facets)),
                             squeeze=False, sharey="col")
    for row, (suffix, models) in zip(axes, facets):
        for ax, (title, block, column, label) in zip(row, columns):
            for model, curve in block[block["model"].isin(models)].groupby("model", sort=False):
                style = styles[model]
                ax.plot(curve["k"], curve[column], marker=style.marker if len(curve) < 12 else None, ms=3.5,
                        label=model, color=style.color)
                if column == "mean":
                    ax.fill_between(curve["k"], curve["mean"] - curve["std"], curve["mean"] + curve["std"],
                                    alpha=0.15, color=style.color)
            ax.set_title(title + suffix)
            ax.set_xlabel("budget k (trials)")
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            ax.set_ylabel(label)
            if block["k"].max() > 10:
                ax.set_xscale("log")
    _drop_empty(fig)
    _legend(fig, styles)
    return _save(fig, out_dir, "budget_curve")


def precision_recall_plot(results: pd.DataFrame, out_dir: Path) -> Optional[Path]:
    """Precision against recall of every trial's best point (triangle P/R where measured)."""
    trials = search_trials(results)
    pair = next(((p, r) for p, r in (("tri_precision", "tri_recall"), ("precision", "recall"))
                 if p in trials and trials[p].notna().any()), None)
    if pair is None:
        return None
    plt = _pyplot()
    styles = _styles(results)
    fig = None
    for fig, ax, block in _panels(trials.dropna(subset=list(pair)), plt, width=4.8, height=4.2):
        for model, group in block.groupby("model", sort=False):
            ax.scatter(group[pair[1]], group[pair[0]], s=16, alpha=0.75, label=model, color=styles[model].color,
                       marker=styles[model].marker)
        ax.set_xlim(-0.02, 1.02)
        ax.set_ylim(-0.02, 1.02)
        ax.set_xlabel("recall" + (" (triangles)" if pair[0].startswith("tri") else ""))
        ax.set_ylabel("precision" + (" (triangles)" if pair[0].startswith("tri") else ""))
    _legend(fig, styles)
    return _save(fig, out_dir, "precision_recall")


def learning_rate_plot(results: pd.DataFrame, out_dir: Path) -> Optional[Path]:
    """Trial score against learning rate: how sensitive each model is to the most important knob."""
    trials = search_trials(results)
    if "hp.lr" not in trials:
        return None
    trials = trials[finished(trials["status"]) & trials["hp.lr"].notna()]
    if trials.empty:
        return None
    plt = _pyplot()
    styles = _styles(results)
    fig = None
    for fig, ax, block in _panels(trials, plt):
        score = score_for(block["dataset"].iloc[0])
        values = trial_scores(block, score)
        scored = values[np.isfinite(values)]
        # Trials without a score sit on a line beyond the worst scored one.
        edge = (scored.min() - 0.05 if score.maximize else scored.max() * 1.1) if len(scored) else np.nan
        for model in dict.fromkeys(block["model"]):
            mine = (block["model"] == model).to_numpy()
            ok = mine & np.isfinite(values)
            ax.scatter(block.loc[ok, "hp.lr"], values[ok], s=16, alpha=0.75, label=model, color=styles[model].color,
                       marker=styles[model].marker)
            none = mine & ~np.isfinite(values)
            if none.any() and np.isfinite(edge):
                ax.scatter(block.loc[none, "hp.lr"], np.full(none.sum(), edge), marker="x", s=18,
                           color=styles[model].color)
        ax.set_xscale("log")
        ax.set_xlabel("learning rate")
        ax.set_ylabel(f"{score.label} (x: no score)")
    _legend(fig, styles)
    return _save(fig, out_dir, "score_vs_learning_rate")


def training_curves(results: pd.DataFrame, out_dir: Path) -> Optional[Path]:
    """The score against step of each model's best trial (rows: the facets of _facets)."""
    best = best_trials(results)
    if best.empty:
        return None
    keys = ["dataset", "protocol_id", "model", "role", "trial"]
    points = results.merge(best[keys], on=keys).dropna(subset=["step"])
    plt = _pyplot()
    styles = _styles(results)
    blocks = list(points.groupby(["dataset", "protocol_id"], sort=False))
    facets = _facets(dict.fromkeys(points["model"]))
    fig, axes = plt.subplots(len(facets), len(blocks), figsize=(6.0 * len(blocks), 3.4 * len(facets)),
                             squeeze=False, sharey="col")
    for row, (suffix, models) in zip(axes, facets):
        for ax, ((dataset, pid), block) in zip(row, blocks):
            score = score_for(dataset)
            ax.set_title((f"{dataset} (protocol {pid})" if len(blocks) > 1 else dataset) + suffix)
            mine = block[block["model"].isin(models)].dropna(subset=[score.metric])
            for model, group in mine.groupby("model", sort=False):
                ax.plot(group["step"].astype(float), group[score.metric], marker=styles[model].marker, ms=3.5,
                        label=f"{model} (trial {group['trial'].iloc[0]})", color=styles[model].color)
            ax.set_xlabel("step (D updates)")
            ax.set_ylabel(score.label)
    _drop_empty(fig)
    _legend(fig, styles)
    return _save(fig, out_dir, "training_curves")


def sample_grids(results: pd.DataFrame, out_dir: Path) -> Optional[Path]:
    """Each model's samples at the best evaluation point of its best trial (saved by the trial)."""
    best = best_trials(results)
    grids = []
    for _, row in best.iterrows():
        folder = row.get("folder")
        if isinstance(folder, str) and pd.notna(row["step"]):
            path = TrialFolder(folder).sample_grid_path(int(row["step"]))
            if path.is_file():
                grids.append((row, path))
    if not grids:
        return None
    plt = _pyplot()
    from PIL import Image

    # As many grids per row as fit the page's width (7 at 1.9 in); the last row's empty cells are
    # removed so that the saved figure ends at the last grid, and each cell has the grid's aspect.
    columns = min(7, len(grids))
    rows = -(-len(grids) // columns)
    height, width = np.asarray(Image.open(grids[0][1])).shape[:2]
    cell = 1.9
    fig, axes = plt.subplots(rows, columns, figsize=(cell * columns, (cell * height / width + 0.45) * rows),
                             squeeze=False, gridspec_kw={"wspace": 0.06, "hspace": 0.3})
    for ax in axes.flat[len(grids):]:
        fig.delaxes(ax)
    for ax in axes.flat[:len(grids)]:
        ax.axis("off")
    for ax, (row, path) in zip(axes.flat, grids):
        image = np.asarray(Image.open(path))
        score = score_for(row["dataset"])
        shown = score if pd.notna(row.get(score.metric)) else FID  # a model without the score: its FID
        ax.imshow(image, cmap="gray" if image.ndim == 2 else None, vmin=0, vmax=255, interpolation="nearest")
        ax.set_title(f"{row['model']}\n{shown.label} {row[shown.metric]:.3g}, step {int(row['step'])}", fontsize=7.5)
    return _save(fig, out_dir, "samples", tight=False)


def fid_vs_nll(results: pd.DataFrame, out_dir: Path) -> Optional[Path]:
    """FID against NLL at the evaluation points of the explicit models whose NLL is the protocol's
    bound: whether a better likelihood comes with better samples (Theis et al. 2016 say it need not)."""
    search = at_protocol_k(results[results["role"] == "search"] if "role" in results else results)
    units = {u: label for u, label in NLL_COLUMNS if u in search and search[u].notna().any()}
    if not units or "fid" not in search:
        return None
    panels = [(key, unit, block.dropna(subset=[unit, "fid"]))
              for key, block in search.groupby(["dataset", "protocol_id"], sort=False) for unit in units]
    panels = [p for p in panels if not p[2].empty]
    plt = _pyplot()
    styles = _styles(results)
    fig, axes = plt.subplots(1, len(panels), figsize=(4.8 * len(panels), 4.0), squeeze=False)
    for ax, ((dataset, pid), unit, block) in zip(axes[0], panels):
        for model, group in block.groupby("model", sort=False):
            ax.scatter(group[unit], group["fid"], s=16, alpha=0.75, label=model, color=styles[model].color,
                       marker=styles[model].marker)
        ax.set_title(dataset if search["protocol_id"].nunique() == 1 else f"{dataset} (protocol {pid})")
        ax.set_xlabel(f"NLL ({units[unit]})")
        ax.set_ylabel("FID")
    _legend(fig, styles)
    return _save(fig, out_dir, "fid_vs_nll")


FIGURES = {
    "score_distribution": ("Score of every trial (FID; triangle F1 on triangles)", score_distribution),
    "budget_curve": ("Best score against budget (bootstrap mean ± 1 std; on triangles with the precision and "
                     "recall of the winning points)", budget_plot),
    "precision_recall": ("Precision against recall", precision_recall_plot),
    "score_vs_learning_rate": ("Score against learning rate", learning_rate_plot),
    "training_curves": ("Score during training, best trial of each model", training_curves),
    "fid_vs_nll": ("FID against NLL at every evaluation point of the explicit models", fid_vs_nll),
    "samples": ("Samples of each model's best trial at its best point", sample_grids),
}
