"""Tidy results tables, summary tables, budget curves, plots and the HTML/Markdown report.

Filled in by the reports issue (`bench report`, `bench export`, `bench rank`).
"""
