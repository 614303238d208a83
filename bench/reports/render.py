"""Tables as text: numbers formatted for reading, then Markdown, LaTeX (booktabs) or HTML.

Formatting happens only here; the tables themselves stay numeric (CSV keeps every digit).
"""

from __future__ import annotations

import html
import math

import numpy as np
import pandas as pd

PERCENT = ("diverged_share", "no_score", "strict_no_score")
INTEGER = ("rank", "trials", "done", "diverged", "failed", "pending", "best_trial", "trial", "step", "k", "seeds",
           "steps", "g_steps", "images_seen")


def cell(column: str, value) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA:
        return ""
    if isinstance(value, (bool, np.bool_)):
        return "yes" if value else "no"
    integer = column in INTEGER or column.endswith(("_k", "_rank"))
    if isinstance(value, (int, np.integer)) or (integer and isinstance(value, float) and value.is_integer()):
        return f"{int(value):,}" if column in ("images_seen", "steps", "g_steps") else str(int(value))
    if isinstance(value, (float, np.floating)):
        if math.isinf(value):
            return "∞" if value > 0 else "−∞"
        if column in PERCENT:
            return f"{100 * value:.0f}%"
        if column.startswith("flops"):
            return f"{value:.3g}"
        if abs(value) >= 100:
            return f"{value:.1f}"
        return f"{value:.3g}" if abs(value) < 1 else f"{value:.2f}"
    return str(value)


def formatted(frame: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame({c: [cell(c, v) for v in frame[c]] for c in frame.columns}, index=frame.index)


# How the report's pages name columns; tables/*.csv, .md and .tex keep the machine names, which
# are the results table's and what pandas users select by.
LABELS = {
    "model": "model", "role": "role", "trial": "trial", "step": "step", "k": "budget k", "n": "images",
    "trials": "trials", "done": "finished", "diverged": "diverged", "diverged_share": "share diverged",
    "failed": "failed", "pending": "pending", "best_trial": "best trial", "rank": "rank",
    "best_score": "best score", "median_score": "median score", "score_rank": "rank by score",
    "best_fid": "best FID", "fid_rank": "rank by FID",
    "mean": "mean of the best among k", "std": "std", "lo": "95% low", "hi": "95% high",
    "no_score": "draws without a score", "seeds": "seeds",
    "fid": "FID", "kid_mean": "KID", "kid_std": "KID std", "precision": "precision", "recall": "recall",
    "density": "density", "coverage": "coverage", "is_mean": "Inception Score", "is_std": "IS std",
    "tri_precision": "triangle precision", "tri_recall": "triangle recall", "tri_f1": "triangle F1",
    "nll_bpd": "NLL (bits/dim)", "nll_nats_binarized": "NLL (nats, binarised)",
    "ais_nll_nats": "AIS NLL (nats)", "ais_acceptance": "AIS acceptance", "ais_sigma": "AIS σ",
    "ais_steps": "AIS steps", "ais_chains": "AIS chains", "method": "method",
    "steps": "steps", "g_steps": "G steps", "images_seen": "images seen", "flops_per_trial": "GFLOP per trial",
    "train_hours": "training (h)", "eval_hours": "evaluation (h)", "sample_hours": "of it sampling (h)",
    "seconds_per_trial": "seconds per trial",
    "device": "device",
}
# Columns shown in another unit on the pages than the one stored: (factor).
SCALED = {"flops_per_trial": 1e-9}


def label(column: str) -> str:
    """A person's name for a results column (with its unit); unknown columns keep their own."""
    column = str(column)
    if column in LABELS:
        return LABELS[column]
    if column.startswith("strict_"):
        return f"{label(column[len('strict_'):])}, diverged = no score"
    for suffix, words in (("_se", "s.e."), ("_k", "k of the bound"), ("_rank", "rank")):
        if column.endswith(suffix) and column[: -len(suffix)] in LABELS:
            base = LABELS[column[: -len(suffix)]]
            if words == "rank":
                return f"rank by {base}"
            name, _, unit = base.partition(" (")
            return f"{name} {words}" + (f" ({unit}" if unit and words == "s.e." else "")
    if column.startswith("score_q") and column[7:].isdigit():
        return f"score, {_ordinal(int(column[7:]))} percentile"
    return column


def _ordinal(n: int) -> str:
    return f"{n}{'th' if 10 <= n % 100 <= 20 else {1: 'st', 2: 'nd', 3: 'rd'}.get(n % 10, 'th')}"


def for_people(frame: pd.DataFrame) -> pd.DataFrame:
    """The cells formatted, the columns labelled and in the units the labels say."""
    frame = frame.assign(**{c: frame[c] * f for c, f in SCALED.items() if c in frame})
    text = formatted(frame)
    text.columns = [label(c) for c in frame.columns]
    return text


def markdown(frame: pd.DataFrame, people: bool = False) -> str:
    text = for_people(frame) if people else formatted(frame)
    header = "| " + " | ".join(str(c) for c in text.columns) + " |"
    rule = "|" + "|".join("---" for _ in text.columns) + "|"
    body = ["| " + " | ".join(v.replace("|", "\\|") for v in row) + " |" for row in text.itertuples(index=False)]
    return "\n".join([header, rule, *body]) if len(text.columns) else "(empty)"


_LATEX = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{",
          "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "±": r"$\pm$", "∞": r"$\infty$",
          "−": "-"}


def _tex(text: str) -> str:
    return "".join(_LATEX.get(ch, ch) for ch in str(text))


def latex(frame: pd.DataFrame, caption: str = "") -> str:
    text = formatted(frame)
    align = "".join("r" if _numeric(frame[c]) else "l" for c in frame.columns)
    lines = [r"\begin{table}[t]", r"\centering", rf"\begin{{tabular}}{{{align}}}", r"\toprule",
             " & ".join(_tex(c) for c in text.columns) + r" \\", r"\midrule"]
    lines += [" & ".join(_tex(v) for v in row) + r" \\" for row in text.itertuples(index=False)]
    lines += [r"\bottomrule", r"\end{tabular}"]
    if caption:
        lines.append(rf"\caption{{{_tex(caption)}}}")
    lines.append(r"\end{table}")
    return "\n".join(lines) + "\n"


def html_table(frame: pd.DataFrame) -> str:
    """For the report's page: labelled for people, scrolled inside its box where it is wide."""
    text = for_people(frame)
    numeric = [_numeric(frame[c]) for c in frame.columns]
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in text.columns)
    body = "".join("<tr>" + "".join(f'<td class="{"num" if n else "txt"}">{html.escape(v)}</td>'
                                    for v, n in zip(row, numeric)) + "</tr>"
                   for row in text.itertuples(index=False))
    return f"<div class='scroll'><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>"


def _numeric(column: pd.Series) -> bool:
    return pd.api.types.is_numeric_dtype(column) and not pd.api.types.is_bool_dtype(column)
