"""Hyperparameter studies with Optuna: one study per (model, dataset, protocol), matched budgets,
resumable, with workers on one machine or many (`bench run`, `bench worker`, `bench status`)."""

import optuna

optuna.logging.set_verbosity(optuna.logging.WARNING)  # our own lines say what happened
