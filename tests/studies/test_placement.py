"""`--jobs N` places workers round-robin over the GPUs `--device` names, each with its share of
the cores (tested with a fake number of visible GPUs: this machine has none)."""

import pytest

from bench.devices import device_list
from bench.errors import BenchError
from bench.studies import placement


@pytest.mark.parametrize("spec, count, expected", [
    ("auto", 0, ["cpu"]), ("auto", 3, ["cuda:0", "cuda:1", "cuda:2"]), ("cuda", 2, ["cuda:0", "cuda:1"]),
    ("cuda:1", 2, ["cuda:1"]), ("cuda:0,2", 4, ["cuda:0", "cuda:2"]), ("cuda:2, 0,2", 4, ["cuda:2", "cuda:0"]),
    ("cpu", 4, ["cpu"]),
])
def test_the_devices_a_spec_names(spec, count, expected):
    assert device_list(spec, cuda_count=count) == expected


@pytest.mark.parametrize("spec, count, message", [
    ("cuda", 0, "no CUDA device is available"), ("cuda:0,3", 2, "cuda:3 is not a visible GPU (visible: cuda:0, cuda:1)"),
    ("tpu", 1, "unknown device 'tpu'"),
])
def test_a_device_that_is_not_there_is_refused_in_one_line(spec, count, message):
    with pytest.raises(BenchError, match=message.replace("(", r"\(").replace(")", r"\)")):
        device_list(spec, cuda_count=count)


def test_workers_go_round_robin_with_a_share_of_the_cores():
    placed = placement.place_workers(5, ["cuda:0", "cuda:1"], cpu_count=16)
    assert [p.device for p in placed] == ["cuda:0", "cuda:1", "cuda:0", "cuda:1", "cuda:0"]
    assert {p.threads for p in placed} == {3}
    assert {p.threads for p in placement.place_workers(4, ["cpu"], cpu_count=2)} == {1}  # never zero


def test_each_worker_process_is_started_on_its_device_with_capped_threads(monkeypatch, tmp_path):
    started = []

    class FakeProcess:
        returncode = 0

        def __init__(self, command, env):
            started.append((command, env))

        def poll(self):
            return 0

    monkeypatch.setattr(placement.subprocess, "Popen", FakeProcess)
    monkeypatch.setattr(placement.os, "cpu_count", lambda: 16)
    polls = []
    placement.start_workers("journal:/x", ["triangles/ns_gan/abcd1234"], tmp_path, jobs=4, device="cuda",
                            poll=lambda: polls.append(1), cuda_count=3)
    devices = [command[command.index("--device") + 1] for command, _ in started]
    assert devices == ["cuda:0", "cuda:1", "cuda:2", "cuda:0"]
    for command, env in started:
        assert command[command.index("--study") + 1] == "triangles/ns_gan/abcd1234" and "--quiet" in command
        assert all(env[name] == "4" for name in placement.THREAD_VARIABLES)  # torch's pool and the BLAS pools
    assert polls  # the coordinator is asked to report at least once


def test_a_worker_that_fails_is_reported(monkeypatch, tmp_path):
    class Failing:
        returncode = 3

        def __init__(self, command, env):
            pass

        def poll(self):
            return 3

    monkeypatch.setattr(placement.subprocess, "Popen", Failing)
    with pytest.raises(BenchError, match="2 of 2 worker processes exited with an error"):
        placement.start_workers("journal:/x", ["s"], tmp_path, jobs=2, device="cpu")
