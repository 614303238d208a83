"""Model registry: built-ins and plug-ins come through the same door and are checked on the way in.

Ways in: the `@register_model("name")` decorator, the Python entry-point group `bench.models`,
and `FILE.py:Class` wherever a model name is accepted. `registered(name, cls)` registers a model
for the length of a `with` block only (tests; a script's throwaway model), and `restored_registry()`
puts back whatever a block registered by the other ways.
"""

from __future__ import annotations

import contextlib
import importlib.util
import inspect
import re
import sys
from pathlib import Path
from typing import Dict, Optional, Type

from bench.errors import BenchError

_MODELS: Dict[str, type] = {}
_NAME = re.compile(r"^[a-z][a-z0-9_]{0,39}$")
_builtins_loaded = False


def register_model(name: str):
    """Class decorator: validate the class and make it available as `name`."""

    def wrap(cls):
        _validate(name, cls)
        if name in _MODELS and _MODELS[name] is not cls:
            raise ValueError(f"model name {name!r} is already taken by {_MODELS[name].__qualname__}")
        cls.name = name
        _MODELS[name] = cls
        return cls

    return wrap


@contextlib.contextmanager
def restored_registry():
    """On leaving the block, the registry is as it was on entering it (the built-ins and entry-point
    plug-ins are loaded first, so they stay). A `FILE.py:Class` plug-in loaded inside the block is
    unregistered too; asking for it again returns the same class (its file is not executed again)."""
    _load_builtins()
    saved = dict(_MODELS)
    try:
        yield
    finally:
        _MODELS.clear()
        _MODELS.update(saved)


@contextlib.contextmanager
def registered(name: str, cls):
    """Register `cls` as `name` inside the block (validated like `@register_model`; a name already
    taken by another class is refused) and, on leaving, put back what the name held before (nothing,
    or `cls` itself when it was registered already), whatever else the block registered staying."""
    _load_builtins()
    previous = _MODELS.get(name)
    register_model(name)(cls)
    try:
        yield cls
    finally:
        if previous is not None:
            _MODELS[name] = previous
        else:
            _MODELS.pop(name, None)


def _validate(name: str, cls) -> None:
    from bench.models.base import GenerativeModel
    from bench.models.search_space import SearchSpace

    if not isinstance(name, str) or not _NAME.match(name):
        raise ValueError(f"model name {name!r} must be lower-case letters, digits and '_', starting with a letter")
    if not (inspect.isclass(cls) and issubclass(cls, GenerativeModel)):
        raise TypeError(f"{cls!r} is not a subclass of bench.models.GenerativeModel")
    if not isinstance(getattr(cls, "search_space", None), SearchSpace):
        raise TypeError(f"{cls.__qualname__} must define `search_space = SearchSpace(...)`")
    if cls.train_step is GenerativeModel.train_step or cls.decode is GenerativeModel.decode:
        raise TypeError(f"{cls.__qualname__} must implement train_step() and decode()")
    if cls.noise not in ("uniform", "normal"):
        raise TypeError(f"{cls.__qualname__}.noise must be 'uniform' or 'normal', not {cls.noise!r}")
    if not cls.family:
        raise TypeError(f"{cls.__qualname__} must set `family` (e.g. 'gan', 'vae')")
    if cls.explicit:
        from bench.model_metrics.metric_nll import LIKELIHOODS

        if cls.likelihood not in LIKELIHOODS:
            raise TypeError(f"{cls.__qualname__} is explicit: set `likelihood` to one of {', '.join(LIKELIHOODS)}")
        if cls.log_weights is GenerativeModel.log_weights:
            raise TypeError(f"{cls.__qualname__} is explicit: implement log_weights()")


def _load_builtins() -> None:
    global _builtins_loaded
    if _builtins_loaded:
        return
    _builtins_loaded = True
    # Imported for their registration; the order is the study's table order.
    import bench.models.gan_variants  # noqa: F401
    import bench.models.began  # noqa: F401
    import bench.models.vae  # noqa: F401
    import bench.models.vae_variants  # noqa: F401
    import bench.models.pixelcnn  # noqa: F401
    import bench.models.realnvp  # noqa: F401
    import bench.models.unrolled  # noqa: F401
    import bench.models.pixelrnn  # noqa: F401
    import bench.models.draw  # noqa: F401
    import bench.models.ddpm  # noqa: F401

    try:
        from importlib.metadata import entry_points

        for ep in entry_points(group="bench.models"):
            try:
                cls = ep.load()
                if inspect.isclass(cls) and cls not in _MODELS.values():
                    register_model(ep.name)(cls)  # the entry point's name is the model's name
            except Exception as exc:  # a broken plug-in must not take the built-ins down
                print(f"bench: warning: plug-in model entry point {ep.name!r} failed to load: {exc}", file=sys.stderr)
    except Exception:
        pass


# The study's eight in its table order, then the other built-ins in the order they were added (a
# model's place fixes its colour in every report: bench/reports/style.py), then plug-ins as
# registered (a test or a plug-in may import a built-in module directly, which registers it early).
BUILTIN_ORDER = ("mm_gan", "ns_gan", "lsgan", "wgan", "wgan_gp", "dragan", "began", "vae",
                 "beta_vae", "vae_dl", "aae", "pixelcnn", "realnvp", "unrolled_gan", "pixelrnn", "draw", "ddpm")


def model_names() -> list[str]:
    _load_builtins()
    rank = {name: i for i, name in enumerate(BUILTIN_ORDER)}
    return sorted(_MODELS, key=lambda name: rank.get(name, len(rank)))


def get_model_class(spec: str) -> Type:
    """A registered model by name, or `FILE.py:Class` loaded from a file."""
    _load_builtins()
    if ":" in spec and spec.split(":", 1)[0].endswith(".py"):
        return _load_from_file(spec)
    if spec not in _MODELS:
        raise BenchError(f"unknown model {spec!r}; known models: {', '.join(model_names())} (or FILE.py:Class)")
    return _MODELS[spec]


def _load_from_file(spec: str) -> Type:
    path_text, class_name = spec.rsplit(":", 1)
    path = Path(path_text).expanduser()
    if not path.is_file():
        raise BenchError(f"model file {path} does not exist (expected FILE.py:Class)")
    module_name = f"bench_plugin_{re.sub(r'[^0-9a-zA-Z_]', '_', str(path.resolve()))}"
    # A file is executed once per process, whichever of its classes is asked for first: executing
    # it again would make new classes under names its first classes already registered.
    module = sys.modules.get(module_name)
    if module is None:
        module_spec = importlib.util.spec_from_file_location(module_name, path)
        module = importlib.util.module_from_spec(module_spec)
        sys.modules[module_name] = module
        try:
            module_spec.loader.exec_module(module)
        except Exception as exc:
            del sys.modules[module_name]
            raise BenchError(f"model file {path} failed to import: {type(exc).__name__}: {exc}") from None
    cls = getattr(module, class_name, None)
    if cls is not None and cls.__dict__.get("source"):
        _MODELS.setdefault(cls.name, cls)  # loaded before, and unregistered since (`restored_registry`)
        return cls
    if cls is None:
        found = [n for n, v in vars(module).items() if inspect.isclass(v) and v.__module__ == module_name]
        raise BenchError(f"model file {path} has no class {class_name!r}"
                         + (f"; it defines: {', '.join(found)}" if found else ""))
    try:
        if not cls.__dict__.get("name"):  # an inherited name belongs to the parent class
            register_model(re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", class_name).lower())(cls)
        else:
            _validate(cls.name, cls)
        cls.source = f"{path.resolve()}:{class_name}"
    except (TypeError, ValueError) as exc:
        raise BenchError(f"{path}:{class_name} is not a usable model: {exc}") from None
    return cls


def check_model_output(cls, image_shape: tuple[int, int, int]) -> None:
    """Build `cls` on the CPU and decode two codes: a plug-in whose output does not fit the
    dataset fails here with one line, not minutes later inside a trial."""
    import torch

    from bench.models.base import evaluating

    where = cls.__dict__.get("source") or cls.name
    try:
        model = cls(tuple(image_shape))
        with torch.no_grad(), evaluating(model):
            out = model.decode(model.sample_noise(2, torch.Generator().manual_seed(0), "cpu"))
    except Exception as exc:
        raise BenchError(f"model {where} fails on a first forward pass for images {tuple(image_shape)}: "
                         f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}") from None
    expected = (2, *image_shape)
    if not isinstance(out, torch.Tensor) or tuple(out.shape) != expected:
        got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise BenchError(f"model {where} decodes 2 codes to {got}; the dataset needs {expected} "
                         "(images in [0,1], channels first)")


def build_model(spec: str, image_shape: tuple[int, int, int], hparams: Optional[dict] = None, device="cpu",
                arch: str = "infogan", sample_steps: int = 0):
    """Instantiate a model on `device`, built on `arch`; its optimisers are created there on first use.
    An iterative sampler takes `sample_steps` (a trial's recorded number; 0: its own default)."""
    from bench.models.architectures import check_model_architecture, takes_arch

    cls = get_model_class(spec)
    check_model_architecture(cls, arch)
    model = cls(image_shape, hparams, **({"arch": arch} if takes_arch(cls) else {}))
    if sample_steps and cls.iterative_sampler:
        model.sample_steps = int(sample_steps)
    return model.to(device)
