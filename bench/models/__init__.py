"""Models on the study's fixed architecture, and the registry that names them."""

from bench.models.base import GenerativeModel
from bench.models.gan_base import GAN, gan_search_space
from bench.models.losses import AdversarialLoss
from bench.models.registry import (build_model, check_model_output, get_model_class, model_names, register_model,
                                   registered, restored_registry)
from bench.models.search_space import Choice, Fixed, LogUniform, SearchSpace, Uniform

__all__ = [
    "GenerativeModel",
    "GAN",
    "gan_search_space",
    "AdversarialLoss",
    "build_model",
    "check_model_output",
    "get_model_class",
    "model_names",
    "register_model",
    "registered",
    "restored_registry",
    "SearchSpace",
    "LogUniform",
    "Uniform",
    "Choice",
    "Fixed",
]
