"""The metric registry: declarations, validation, and an evaluator that computes exactly what applies."""

import math

import pytest
import torch

from bench.errors import BenchError
from bench.metrics import SampleEvaluator, compute_metrics
from bench.metrics import registry as reg
from bench.metrics.feature_extractor_tiny import TinyExtractor
from bench.metrics.registry import MetricOutput, register_metric
from bench.numerics import METRICS
from tests.metrics.test_reference_stats import make_split

FEATURE_METRICS = ("fid", "kid", "pr", "dc", "is")


class Model:
    """What the registry reads of a model: whether it has a likelihood and a decoder."""

    def __init__(self, explicit=False, invertible_by_gradient=True):
        self.explicit, self.invertible_by_gradient = explicit, invertible_by_gradient


@pytest.fixture
def probes():
    """Probe metrics, one per scope, that record the inputs they were called with; removed afterwards."""
    calls = []

    def make(name, **kwargs):
        def compute(x):
            calls.append((name, x))
            return MetricOutput({f"{name}_v": 1.0}, protocol={"probe": name})
        register_metric(name, columns=(f"{name}_v",), **kwargs)(compute)

    names = {"probe_all": dict(needs=("features",)),
             "probe_tri": dict(needs=("model",), applies_to="triangles"),
             "probe_explicit": dict(needs=("model", "test_images"), applies_to="explicit", protocol_in="protocol")}
    reg.registered_metrics()  # the built-ins first, as in a real process
    for name, kwargs in names.items():
        make(name, in_trials=False, **kwargs)
    yield calls
    for name in names:
        reg.unregister_metric(name)


def test_every_metric_declares_columns_needs_and_scope():
    metrics = reg.registered_metrics()
    assert [m.name for m in metrics][:6] == ["fid", "kid", "pr", "dc", "prd", "is"]
    assert {"triangle_pr", "nll", "ais"} <= {m.name for m in metrics}
    columns = [c for m in metrics for c in m.columns]
    assert len(columns) == len(set(columns))  # no column written by two metrics
    for m in metrics:
        assert m.columns and set(m.needs) <= set(reg.NEEDS) and m.applies_to in reg.SCOPES, m.name
        assert set(m.table_columns) <= set(m.columns)
    rows = reg.listing()
    assert [r["name"] for r in rows] == [m.name for m in metrics]
    assert all({"name", "columns", "needs", "applies to", "in trials"} <= set(r) for r in rows)
    assert reg.get_metric("kid").columns == ("kid_mean", "kid_std")
    assert reg.get_metric("triangle_pr").columns == ("tri_precision", "tri_recall", "tri_f1")
    assert reg.get_metric("triangle_pr").applies_to == "triangles" and reg.get_metric("nll").applies_to == "explicit"


def test_trial_score_and_table_lists_come_from_the_registry():
    assert reg.trial_metrics() == FEATURE_METRICS + ("triangle_pr", "nll")  # PRD is left to `bench score`
    assert reg.score_choices() == ("fid", "kid", "pr", "dc", "prd", "is")
    assert reg.default_score_metrics() == FEATURE_METRICS
    # What reports showed before the registry: stored runs must read into the same tables.
    assert reg.table_columns() == ("fid", "kid_mean", "precision", "recall", "density", "coverage", "is_mean",
                                   "tri_precision", "tri_recall", "tri_f1", "nll_bpd", "nll_bpd_se",
                                   "nll_nats_binarized", "nll_nats_binarized_se")
    assert set(reg.record_columns(["kid", "nll"])) == {"kid_mean", "kid_std", "nll_bpd", "nll_bpd_se",
                                                       "nll_nats_binarized", "nll_nats_binarized_se"}


def test_registration_is_validated():
    def compute(x):
        return MetricOutput()

    for kwargs, fragment in [(dict(name="fid", columns=("x1",), needs=("features",)), "already registered"),
                             (dict(name="p1", columns=("fid",), needs=("features",)), "already written by 'fid'"),
                             (dict(name="p2", columns=("x2",), needs=("weights",)), "unknown 'weights'"),
                             (dict(name="p3", columns=("x3",), needs=(), applies_to="cifar"), "unknown 'cifar'"),
                             (dict(name="p4", columns=(), needs=()), "no record columns"),
                             (dict(name="p5", columns=("x5",), needs=(), table_columns=("y",)), "not among")]:
        name = kwargs.pop("name")
        with pytest.raises(BenchError, match=fragment):
            register_metric(name, **kwargs)(compute)
        assert name == "fid" or name not in {m.name for m in reg.registered_metrics()}
    with pytest.raises(BenchError, match="unknown metric 'xyz'; accepted: fid"):
        reg.get_metric("xyz")


def test_parse_metrics_refuses_unknown_names_and_model_metrics_without_a_model():
    assert reg.parse_metrics("fid, kid,fid") == ("fid", "kid")
    assert reg.parse_metrics(["nll", "fid"], model=True) == ("nll", "fid")
    for text, fragment in [("xyz", "unknown metric 'xyz'"), ("", "no metrics asked for"),
                           ("fid,nll", "metric 'nll' needs the model"), ("triangle_pr", "needs the model")]:
        with pytest.raises(BenchError, match=fragment) as info:
            reg.parse_metrics(text)
        assert "\n" not in str(info.value) and "accepted" in str(info.value) and "nll," not in str(info.value)
    with pytest.raises(BenchError, match="needs the model"):
        compute_metrics(("fid", "triangle_pr"), None, None, None)


@pytest.mark.parametrize("dataset, model, test_images, expected", [
    ("toy", None, None, ()),  # samples from files: the feature metrics only
    ("triangles", None, None, ()),  # the triangle metric needs the model
    ("toy", Model(), None, ()),
    ("triangles", Model(), None, ("triangle_pr",)),
    ("toy", Model(explicit=True), torch.zeros(2, 1, 28, 28, dtype=torch.uint8), ("nll",)),
    ("toy", Model(explicit=True), None, ()),  # nll_n = 0: no NLL images, no NLL
    ("triangles", Model(explicit=True, invertible_by_gradient=False), torch.zeros(2, 1, 28, 28, dtype=torch.uint8),
     ("triangle_pr", "nll")),
])
def test_the_evaluator_selects_what_applies(tmp_path, dataset, model, test_images, expected):
    ev = SampleEvaluator(dataset, make_split(), 20, TinyExtractor(), cache_dir=tmp_path, progress=False, model=model,
                         test_images=test_images)
    assert ev.metrics == FEATURE_METRICS + expected


@pytest.mark.parametrize("dataset, model, expected", [
    ("toy", None, ["probe_all"]),
    ("triangles", None, ["probe_all"]),
    ("triangles", Model(), ["probe_all", "probe_tri"]),
    ("toy", Model(explicit=True), ["probe_all", "probe_explicit"]),
    ("triangles", Model(explicit=True), ["probe_all", "probe_tri", "probe_explicit"]),
])
def test_the_evaluator_computes_exactly_the_applicable_metrics(tmp_path, probes, dataset, model, expected):
    images, asked = torch.zeros(3, 1, 28, 28, dtype=torch.uint8), ["fid", "probe_all", "probe_tri", "probe_explicit"]
    if model is None:  # samples from files: asking for a metric that needs the model is refused
        with pytest.raises(BenchError, match="'probe_tri' needs the model"):
            SampleEvaluator(dataset, make_split(), 20, TinyExtractor(), cache_dir=tmp_path, progress=False,
                            metrics=asked)
        asked = asked[:2]
    ev = SampleEvaluator(dataset, make_split(), 20, TinyExtractor(), cache_dir=tmp_path, progress=False,
                         metrics=asked, model=model, test_images=images)
    evaluation = ev.evaluate(torch.rand(20, 1, 28, 28, generator=torch.Generator().manual_seed(0)))
    assert [name for name, _ in probes] == expected
    assert set(evaluation.metrics) == {"fid"} | {f"{n}_v" for n in expected}
    assert all(x.model is model and x.n_fake == 20 and x.fake_features.shape[0] == 20 for _, x in probes)
    protocol = ev.protocol()
    # Metrics stored under per_metric are listed; one stored beside them (as the NLL) is not.
    assert protocol["metrics"] == ["fid"] + [n for n in expected if n != "probe_explicit"]
    assert set(protocol["per_metric"]) == {"fid"} | {n for n in expected if n != "probe_explicit"}
    assert ("probe_explicit" in protocol) == ("probe_explicit" in expected)


def test_a_non_finite_nll_means_divergence_and_model_metrics_run_in_true_float32(tmp_path):
    seen = {}

    def compute(x):
        seen["numerics"] = METRICS.current().to_dict()
        return MetricOutput({"probe_nan_v": math.nan})

    reg.registered_metrics()
    register_metric("probe_nan", columns=("probe_nan_v",), needs=("model",), in_trials=False, numerics=METRICS,
                    diverged_if_not_finite=True)(compute)
    try:
        ev = SampleEvaluator("toy", make_split(), 20, TinyExtractor(), cache_dir=tmp_path, progress=False,
                             metrics=["fid", "probe_nan"], model=Model())
        evaluation = ev.evaluate(torch.rand(20, 1, 28, 28))
    finally:
        reg.unregister_metric("probe_nan")
    assert not evaluation.finite
    assert seen["numerics"] == METRICS.to_dict()
