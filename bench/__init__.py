"""bench: generative image models compared under matched budgets (Lucic et al. 2018, extended)."""

__version__ = "0.1.0"
