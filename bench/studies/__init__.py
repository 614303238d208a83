"""Hyperparameter studies with Optuna: one study per (model, dataset), matched budgets, workers.

Filled in by the studies issue (`bench run`, `bench worker`, `bench status`).
"""
