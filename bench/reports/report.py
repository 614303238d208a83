"""`bench report DIR`: tables (CSV, Markdown, LaTeX), figures (PNG, SVG) and one page to read them.

DIR/report/index.html embeds its figures (one file to mail or open offline); DIR/report/README.md
says the same with the figures beside it. Both open with the protocol and with a warning when a
non-standard feature extractor made the numbers. A run still in progress is reported as far as it
has come, and says so.
"""

from __future__ import annotations

import base64
import functools
import datetime as _dt
import html
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np
import pandas as pd

import bench
from bench.errors import BenchError
from bench.files import atomic_write_bytes
from bench.reports import render, tables
from bench.reports.bootstrap import BUDGET_POINTS, DRAWS
from bench.reports.plots import FIGURES
from bench.reports.published import SOURCE, likelihood_anchors, published_table
from bench.reports.results import find_runs, finished, load_results
from bench.reports.summary import summary_blocks
from bench.scores import score_for


@dataclass
class Section:
    key: str
    title: str
    note: str
    table: pd.DataFrame


@dataclass
class Report:
    out: Path
    sections: list = field(default_factory=list)
    figures: dict = field(default_factory=dict)  # key -> (title, png path)
    header: list = field(default_factory=list)  # Markdown lines
    summary: list = field(default_factory=list)  # bench/reports/summary.py: per protocol, lines and a ranking


def write_report(path, out: Optional[Path] = None, draws: int = DRAWS) -> Report:
    path = Path(path)
    find_runs(path)  # one clear line when the folder holds no run
    results = load_results(path)
    if results.empty:
        raise BenchError(f"{path} holds a run with no trials yet; start it with `bench run` first")
    out = Path(out) if out else path / "report"
    # The bootstrap tables the summary and the sections both read, drawn once.
    budget = tables.budget_table(results, draws=draws)
    pairwise = functools.lru_cache(maxsize=None)(lambda k: tables.pairwise_table(results, k, draws=draws))
    report = Report(out, header=_header(results), summary=summary_blocks(results, budget, pairwise))
    report.sections = _sections(results, draws, budget, pairwise)
    for section in report.sections:
        _write_table(out / "tables", section)
    for key, (title, draw) in FIGURES.items():
        kwargs = {"draws": draws} if key == "budget_curve" else {}
        png = draw(results, out / "figures", **kwargs)
        if png is not None:
            report.figures[key] = (title, png)
    atomic_write_bytes(out / "README.md", _markdown(report).encode())
    atomic_write_bytes(out / "index.html", _html(report).encode())
    return report


def pair_budget(summary: pd.DataFrame) -> int:
    """The largest of the study's budget points that every model has reached (at least 1)."""
    done = summary["done"].min() if len(summary) else 1
    points = [k for k in BUDGET_POINTS if k <= done]
    return points[-1] if points else 1


def score_words(results: pd.DataFrame) -> tuple[str, str]:
    """(what the run's trials are scored by, in words; 'minimum'/'maximum' or 'best')."""
    scores = {score_for(d) for d in results["dataset"].unique()}
    if len(scores) == 1:
        (score,) = scores
        return score.label, score.best_word
    return "score (minimum FID; maximum triangle F1 on triangles)", "best"


def _sections(results: pd.DataFrame, draws: int, budget: pd.DataFrame, pairwise) -> list[Section]:
    summary = tables.model_summary(results)
    seeds = tables.seed_table(results)
    k = pair_budget(summary)
    label, best = score_words(results)
    companions = sorted({c for d in results["dataset"].unique() for c in score_for(d).companions})
    with_points = (f" {' and '.join(companions)}: the mean over draws of the winning trial's values at its "
                   "best point." if companions else "")
    unscored = list(dict.fromkeys(summary[(summary["done"] > 0) & summary["best_score"].isna()]["model"]))
    sections = [
        Section("models", f"Trials per model, by {label}",
                f"Each trial's score is its {best} {label} over its evaluation points; a trial that diverged keeps "
                "its best point before the divergence (as compare_gan v1 scored every checkpoint), and one that "
                "diverged before its first evaluation has no score. diverged_share is the divergence rate; "
                "quantiles are over trials with a score."
                + (f" No finished trial of {', '.join(unscored)} has a score: they diverged before any point, or "
                   "their metric cannot be measured (triangle recall needs a generator differentiable in its "
                   "noise); the tables below show them by FID where they have one." if unscored else ""),
                _drop_constant(summary)),
        Section("budget", f"{label} at budget k",
                f"Bootstrap over each model's finished trials ({draws} draws of k trials with replacement): mean, "
                f"std and 95% interval (lo, hi) of the {best} {label} among k trials; no_score is the share of "
                "draws in which no drawn trial has a score (excluded from the statistics). strict_*: the same with "
                "every diverged trial counted as a failure, whatever it reached before." + with_points,
                _drop_constant(budget)),
        Section("pairwise", f"Probability that the row model beats the column model at budget {k}",
                f"Share of paired bootstrap draws in which the row model's {best} {label} is better (ties count "
                "half).",
                _drop_constant(pairwise(k)).drop(columns="k", errors="ignore")),
    ]
    if len(seeds):
        sections.append(Section("seeds", f"Best configuration re-trained with other seeds (mean ± std of {label})",
                                "The study's Table 2 layout: models by datasets.", _seed_layout(seeds)))
    published = published_table(results, seeds, summary)
    if len(published):
        sections.append(Section("published", "Ours beside the study's published numbers",
                                f"Published values are quoted from {SOURCE}, not measured here. Like is compared "
                                "with like where the run has seed re-runs (their mean ± std); otherwise ours is "
                                "the best single trial, and ours_from says so.",
                                published.drop(columns="source")))
    ranked = tables.ranking(results)
    if any(c.startswith("nll") for c in ranked.columns):
        sections.insert(1, Section("ranking", f"Models ranked by {label} and, where they have a likelihood, by NLL",
                                   f"Best {label} over each model's trials; best NLL over all evaluation points of "
                                   "its trials on the test split (bits/dim on 8-bit data; binarised-image models in "
                                   "nats, ranked apart). _se: standard error over test images; _k: importance "
                                   "samples of the bound (1 for exact likelihoods).", _drop_constant(ranked)))
        anchors = likelihood_anchors(results)
        if len(anchors):
            sections.insert(2, Section("likelihood_anchors", "Published likelihoods, for orientation",
                                       "Quoted from the papers named (PROTOCOL §6), not measured here: larger networks "
                                       "trained far longer than the fixed architecture's budget, so not a ranking. "
                                       "Our binarised MNIST is one fixed draw, theirs is dynamic.", anchors))
    scored = checkpoint_likelihoods(results)
    if len(scored):
        sections.append(Section("likelihood_checkpoints", "Likelihoods scored from checkpoints (bench score --nll)",
                                "AIS: annealed importance sampling with a Gaussian observation model of std sigma "
                                "(nats of continuous images; depends on sigma, not bits/dim); bound: the model's "
                                "own likelihood.", _drop_constant(scored)))
    sections += [
        Section("quality", "All metrics at each model's best point",
                f"The best evaluation point (by {label}) of each model's best trial. tri_* are the study's triangle "
                "precision/recall/F1; precision/recall are Kynkäänniemi et al.'s on Inception features.",
                _drop_constant(tables.quality_table(results))),
        Section("compute", "Compute per model",
                "Means per finished trial, totals of wall time: equal budgets should show equal steps "
                "(or equal FLOPs with --match flops).",
                _drop_constant(tables.compute_table(results))),
    ]
    return sections


def checkpoint_likelihoods(results: pd.DataFrame) -> pd.DataFrame:
    """What `bench score --checkpoint DIR --nll ...` wrote into trial folders of this run."""
    from bench.records.trial_folder import TrialFolder

    rows = []
    trials = results.drop_duplicates(["run", "study", "trial"])
    for _, trial in trials.iterrows():
        folder = trial.get("folder")
        if not isinstance(folder, str):
            continue
        for record in TrialFolder(folder).nll_records():
            settings = record.get("protocol", {}).get("settings", {})
            rows.append({"dataset": trial["dataset"], "protocol_id": trial["protocol_id"], "model": trial["model"],
                         "role": trial["role"], "trial": trial["trial"], "step": record.get("step"),
                         "method": record.get("method"), "n": record.get("n"), **record.get("metrics", {}),
                         **{f"ais_{k}": settings[k] for k in ("sigma", "steps", "chains") if k in settings}})
    return pd.DataFrame(rows)


def _drop_constant(frame: pd.DataFrame) -> pd.DataFrame:
    """Identity columns with a single value say nothing in a table: the header names them."""
    drop = [c for c in ("dataset", "protocol_id", "score") if c in frame and frame[c].nunique(dropna=False) <= 1]
    return frame.drop(columns=drop)


def _seed_layout(seeds: pd.DataFrame) -> pd.DataFrame:
    text = seeds.assign(cell=[_mean_std(m, s, n) for m, s, n in zip(seeds["mean"], seeds["std"], seeds["seeds"])])
    return text.pivot_table(index="model", columns="dataset", values="cell", aggfunc="first", sort=False).reset_index()


def _mean_std(mean, std, n) -> str:
    if not np.isfinite(mean):
        return "no score"
    return f"{mean:.4g} ± {std:.2g} (n={n})" if np.isfinite(std) else f"{mean:.4g} (n={n})"


def _write_table(folder: Path, section: Section) -> None:
    atomic_write_bytes(folder / f"{section.key}.csv", section.table.to_csv(index=False).encode())
    atomic_write_bytes(folder / f"{section.key}.md", (f"### {section.title}\n\n{render.markdown(section.table)}\n").encode())
    atomic_write_bytes(folder / f"{section.key}.tex", render.latex(section.table, section.title).encode())


def _header(results: pd.DataFrame) -> list[str]:
    trials = results.drop_duplicates(["run", "study", "trial"])
    done = int(finished(trials["status"]).sum())
    pending = int(trials["status"].isin(["running", "waiting"]).sum())
    lines = [f"Generated {_dt.datetime.now(_dt.timezone.utc):%Y-%m-%d %H:%M UTC} by bench {bench.__version__}. "
             f"{done} of {len(trials)} trials finished"
             + (f"; **the run is still in progress** ({pending} running or waiting)." if pending else ".")]
    for (dataset, pid), block in results.groupby(["dataset", "protocol_id"], sort=False):
        p = {c[len("protocol."):]: v for c, v in block.iloc[0].items() if c.startswith("protocol.")}
        models = ", ".join(dict.fromkeys(block["model"]))
        extractor = _first(block, "metric_protocol.extractor.extractor") or p.get("extractor")
        score = score_for(dataset)
        lines.append(f"- **{dataset}** (protocol `{pid}`): trials scored by {score.best_word} "
                     f"{score.label}; {p.get('arch')} architecture, {p.get('search')} search, {p.get('steps')} steps "
                     f"(match {p.get('match')}), batch {p.get('batch_size')}, {p.get('numerics', 'float32')} numerics, "
                     f"evaluation every {p.get('eval_every')} "
                     f"steps on {p.get('eval_samples')} samples against {_first(block, 'metric_protocol.n_real') or '?'} "
                     f"reference images, features: {extractor}; models: {models}.")
    if "standard" in results and (results["standard"] == False).any():  # noqa: E712 (NaN must not count)
        lines.append("")
        lines.append("> **Non-standard feature extractor.** Some numbers here were computed with a test-only "
                     "extractor: they are not FIDs in the literature's sense and compare with nothing published.")
    return lines


def _first(frame: pd.DataFrame, column: str):
    if column not in frame:
        return None
    values = frame[column].dropna()
    return values.iloc[0] if len(values) else None


def _markdown(report: Report) -> str:
    parts = ["# bench report", "", "## Summary", ""]
    for block in report.summary:
        parts += [line for text in block["lines"] if text for line in (text, "")]
        if len(block["ranking"]):
            parts += [render.markdown(block["ranking"], people=True), ""]
    parts += ["## Protocol", "", *report.header, ""]
    for s in report.sections:
        parts += [f"## {s.title}", "", s.note, "",
                  render.markdown(s.table, people=True) if len(s.table) else "(nothing yet)", ""]
    parts += ["## Figures", ""]
    for title, png in report.figures.values():
        parts += [f"### {title}", "", f"![{title}](figures/{png.name})", ""]
    parts.append("Tables as CSV, Markdown and LaTeX are in `tables/`; figures as PNG and SVG in `figures/`.")
    return "\n".join(parts) + "\n"


_STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
h1{margin-bottom:.2em} h2{margin-top:1.8em;border-bottom:1px solid #ddd;padding-bottom:.2em}
p.note{color:#555;font-size:.92em} .warn{background:#fff4e5;border-left:4px solid #f0a020;padding:.6em 1em}
table{border-collapse:collapse;font-size:.88em;margin:.5em 0} th,td{padding:.25em .7em;border-bottom:1px solid #eee}
th{background:#f5f5f5;text-align:left} td.num{text-align:right;font-variant-numeric:tabular-nums}
.scroll{overflow-x:auto;max-width:100%} #summary p{font-size:1.05em} figure{margin:1.2em 0} figure img{max-width:100%;border:1px solid #eee} figcaption{color:#555;font-size:.9em}
"""


def _html(report: Report) -> str:
    head = []
    for line in report.header:
        if not line:
            continue
        text = _inline(line.lstrip("-> ").strip())
        head.append(f'<p class="warn">{text}</p>' if line.startswith(">") else
                    f"<li>{text}</li>" if line.startswith("-") else f"<p>{text}</p>")
    body = ["<!doctype html><html><head><meta charset='utf-8'><title>bench report</title>",
            f"<style>{_STYLE}</style></head><body><h1>bench report</h1>", "<section id='summary'>"]
    for block in report.summary:
        for line in block["lines"]:
            if line:
                text = _inline(line.lstrip("> ").strip())
                body.append(f'<p class="warn">{text}</p>' if line.startswith(">") else f"<p>{text}</p>")
        if len(block["ranking"]):
            body.append(render.html_table(block["ranking"]))
    body += ["</section>", "<h2 id='protocol'>Protocol</h2>", _group_items(head)]
    for s in report.sections:
        body += [f"<h2 id='{s.key}'>{html.escape(s.title)}</h2>", f"<p class='note'>{html.escape(s.note)}</p>",
                 render.html_table(s.table) if len(s.table) else "<p>(nothing yet)</p>"]
    body.append("<h2 id='figures'>Figures</h2>")
    for key, (title, png) in report.figures.items():
        data = base64.b64encode(png.read_bytes()).decode()
        body.append(f"<figure id='fig-{key}'><img alt='{html.escape(title)}' src='data:image/png;base64,{data}'>"
                    f"<figcaption>{html.escape(title)} (<a href='figures/{png.stem}.svg'>SVG</a>)</figcaption></figure>")
    body.append("</body></html>")
    return "\n".join(body)


def _inline(text: str) -> str:
    """The header's Markdown emphasis and code, as HTML."""
    import re

    text = html.escape(text)
    text = re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", text)
    return re.sub(r"`(.+?)`", r"<code>\1</code>", text)


def _group_items(parts: list[str]) -> str:
    out, items = [], []
    for p in parts + [""]:
        if p.startswith("<li>"):
            items.append(p)
            continue
        if items:
            out.append("<ul>" + "".join(items) + "</ul>")
            items = []
        if p:
            out.append(p)
    return "\n".join(out)
