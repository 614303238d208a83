"""Pinned protocol digests: a digest names every study (and trial folder) of a stored run, so a
change to the digest rule or to a preset renames them all and must be made on purpose."""

import pytest

from bench.studies.protocol import RunProtocol, resolve_protocol

QUICK_TRIANGLES = {"dataset": "triangles", "search": "wide", "steps": 30, "eval_every": 30, "eval_samples": 32,
                   "extractor": "inception", "match": "steps", "batch_size": 64, "nll_k": 16, "nll_n": 256,
                   "numerics": "float32", "arch": "infogan", "sample_steps": 20}
PAPER_CIFAR10 = {"dataset": "cifar10", "search": "wide", "steps": 78125, "eval_every": 3906, "eval_samples": 10000,
                 "extractor": "inception", "match": "steps", "batch_size": 64, "nll_k": 1000, "nll_n": 10000,
                 "numerics": "float32", "arch": "infogan", "sample_steps": 1000}

# The digest of the run the README's CPU-preset timing was measured on (runs stored before `arch`).
CPU_TRIANGLES = {**QUICK_TRIANGLES, "steps": 3000, "eval_every": 1000, "eval_samples": 256, "sample_steps": 1000}


@pytest.mark.parametrize("dataset, preset, fields, digest", [
    # quick was 74e59c26 until it set sample_steps = 20 (issue 16, ddpm): a quick run folder of before
    # is refused by a rerun with "sample_steps: 1000 stored, 20 asked", its studies kept.
    ("triangles", "quick", QUICK_TRIANGLES, "0203df1b"),
    ("cifar10", "paper", PAPER_CIFAR10, "c62e7fc7"),
    ("triangles", "cpu", CPU_TRIANGLES, "c70c4249"),
])
def test_preset_protocols_keep_their_digests(dataset, preset, fields, digest):
    assert RunProtocol(**fields).digest == digest  # the digest rule
    protocol = resolve_protocol(dataset, preset)
    assert protocol.to_dict() == fields  # the preset
    assert protocol.digest == digest


def test_every_field_counts_in_the_digest():
    base = RunProtocol(**QUICK_TRIANGLES)
    changed = {"dataset": "mnist", "search": "narrow", "steps": 31, "eval_every": 15, "eval_samples": 64,
               "extractor": "tiny", "match": "flops", "batch_size": 32, "nll_k": 8, "nll_n": 128, "numerics": "tf32",
               "arch": "dcgan", "sample_steps": 10}
    assert changed.keys() == QUICK_TRIANGLES.keys()
    digests = {RunProtocol(**{**QUICK_TRIANGLES, key: value}).digest for key, value in changed.items()}
    assert len(digests) == len(changed) and base.digest not in digests
