"""Tidy results, summary tables, budget curves, plots, the HTML/Markdown report and rankings.

Everything here starts from `load_results(DIR)`: one row per evaluation point.
"""

from bench.reports.results import load_results

__all__ = ["load_results"]
