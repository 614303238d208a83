"""One colour and marker per model, the same on every figure of a report and from report to report.

A model's style is fixed by its place in the registry (BUILTIN_ORDER, then plug-ins), not by the
order a figure meets it, so ns_gan is the same blue in the budget curve and in precision/recall even
when a figure draws only some models. Twenty colours that stay apart on a white page: tab10, then
ten darker or more saturated hues; the markers cycle with a period (7) prime to the palette's
halves, so the two models whose colours are nearest (i and i + 10) never share a marker either.
"""

from __future__ import annotations

from typing import Iterable, NamedTuple

PALETTE = (
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf",
    "#2f4f4f", "#000080", "#800000", "#e6ab02", "#008080", "#4b0082", "#ff1493", "#556b2f", "#00bfff", "#a0522d",
)
MARKERS = ("o", "s", "^", "D", "v", "P", "X")


class Style(NamedTuple):
    color: str
    marker: str


def model_styles(models: Iterable[str]) -> dict[str, Style]:
    """model -> Style for `models` (every model a report draws): registered models by registry
    order, others (a plug-in this process has not loaded) after them by name."""
    from bench.models import model_names

    order = {name: i for i, name in enumerate(model_names())}
    wanted = set(models)
    # Registered models keep their registry place even when the run holds only some of them.
    places = {m: order[m] for m in wanted if m in order}
    places.update({m: len(order) + i for i, m in enumerate(sorted(wanted - set(order)))})
    return {m: Style(PALETTE[i % len(PALETTE)], MARKERS[i % len(MARKERS)])
            for m, i in sorted(places.items(), key=lambda item: item[1])}
