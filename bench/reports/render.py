"""Tables as text: numbers formatted for reading, then Markdown, LaTeX (booktabs) or HTML.

Formatting happens only here; the tables themselves stay numeric (CSV keeps every digit).
"""

from __future__ import annotations

import html
import math

import numpy as np
import pandas as pd

PERCENT = ("diverged_share", "no_score", "strict_no_score")
INTEGER = ("trials", "done", "diverged", "failed", "pending", "best_trial", "trial", "step", "k", "seeds",
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


def markdown(frame: pd.DataFrame) -> str:
    text = formatted(frame)
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
    text = formatted(frame)
    numeric = [_numeric(frame[c]) for c in frame.columns]
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in text.columns)
    body = "".join("<tr>" + "".join(f'<td class="{"num" if n else "txt"}">{html.escape(v)}</td>'
                                    for v, n in zip(row, numeric)) + "</tr>"
                   for row in text.itertuples(index=False))
    return f"<div class='scroll'><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>"


def _numeric(column: pd.Series) -> bool:
    return pd.api.types.is_numeric_dtype(column) and not pd.api.types.is_bool_dtype(column)
