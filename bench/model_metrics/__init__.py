"""Metrics that need the model, not only its samples: the triangle metric (recall by inverting the
generator), the explicit models' NLL and AIS. Each registers itself in bench/metrics/registry.py;
the evaluator computes them where they apply (triangles only, explicit models only, decoders).
"""

from bench.model_metrics.metric_nll import (NLLEstimate, bits_per_dim_dequantized, bits_per_dim_discrete,
                                            importance_weighted_nll, model_nll)

__all__ = ["NLLEstimate", "bits_per_dim_dequantized", "bits_per_dim_discrete", "importance_weighted_nll", "model_nll"]
