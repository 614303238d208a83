"""bench: generative image models compared under matched budgets (Lucic et al. 2018, extended)."""

__version__ = "0.1.0"


def __getattr__(name):
    # `bench.load_results` without importing pandas and Optuna on every `import bench`.
    if name == "load_results":
        from bench.reports.results import load_results

        return load_results
    raise AttributeError(f"module 'bench' has no attribute {name!r}")
