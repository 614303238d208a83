"""Options and defaults stated once: one declaration per shared option, one validator of protocol
values behind `bench train` and `bench run`, and unknown keys refused in presets and stored records."""

import json
import re

import pytest

from bench import cli
from bench.config import TrialConfig, make_trial_config
from bench.defaults import CHOICES, DEFAULTS, load_preset, preset_names, preset_seeds
from bench.errors import BenchError
from bench.studies.protocol import RunProtocol, resolve_protocol
from bench.records.trial_folder import TrialFolder
from tests.test_cli import TRAIN, assert_one_line_error, run_cli

RUN = ["run", "--dataset", "triangles", "--extractor", "tiny", "--device", "cpu", "--no-progress", "--budget", "1"]
# The fewest arguments each command parses with.
MINIMAL = {
    "train": ["train", "--model", "ns_gan", "--dataset", "triangles"],
    "score": ["score"],
    "run": ["run", "--model", "all", "--dataset", "triangles", "--budget", "1"],
    "worker": ["worker", "--storage", "s", "--study", "x"],
    "report": ["report", "d"],
    "rank": ["rank", "--model", "m", "--dataset", "d", "--budget", "1", "--against", "a"],
    "list": ["list", "models"],
}


def subparsers():
    parser = cli.build_parser()
    (action,) = [a for a in parser._actions if a.dest == "command"]
    return action.choices


def shared_actions():
    """flag -> {command: argparse action} for every option of cli.OPTIONS."""
    found = {}
    for name, sub in subparsers().items():
        for action in sub._actions:
            for flag in action.option_strings:
                if flag in cli.OPTIONS:
                    found.setdefault(flag, {})[name] = action
    return found


def test_every_shared_option_is_declared_and_helped_alike_on_every_command():
    found = shared_actions()
    assert set(found) == set(cli.OPTIONS)
    for flag in cli.PROTOCOL_OPTIONS + cli.MACHINE_OPTIONS:
        assert {"train", "run"} <= set(found[flag]), flag
    for flag in cli.MACHINE_OPTIONS:
        assert set(found[flag]) >= {"train", "score", "run", "worker", "rank"}, flag
    for flag, actions in found.items():
        helps = {re.sub(r" \(default[^()]*\)$", "", a.help.replace(cli.PRESET_SAYS, "")) for a in actions.values()}
        assert len(helps) == 1, (flag, helps)
        key = flag[2:].replace("-", "_")
        common = {(a.default, a.type, a.choices) for command, a in actions.items()
                  if key not in cli.COMMAND_DEFAULTS.get(command, {})}
        assert len(common) == 1, flag
        for command, a in actions.items():  # a command's own default is the one its help states
            if key in cli.COMMAND_DEFAULTS.get(command, {}):
                assert a.default == cli.COMMAND_DEFAULTS[command][key] and a.help.endswith(f"(default {a.default})")


def test_help_of_train_and_run_shows_the_defaults_table():
    found = shared_actions()
    for flag in cli.PROTOCOL_OPTIONS:
        key = flag[2:].replace("-", "_")
        for command in ("train", "run"):
            assert f"default {DEFAULTS[key]}" in found[flag][command].help.replace(": ", " "), (flag, command)
    assert "default 0" in subparsers()["train"]._option_string_actions["--seed"].help
    assert "50 for paper, 0 for quick" in subparsers()["run"]._option_string_actions["--seeds"].help


def sample_value(action):
    if action.nargs == 0:
        return []
    if action.choices:
        return [action.option_strings[0], list(action.choices)[-1]]
    if action.type in (cli._positive_int, cli._pack, cli._non_negative_int, cli._checkpoint_every):
        return [action.option_strings[0], "7"]
    return [action.option_strings[0], "cpu" if action.default else "/x"]


def test_a_shared_option_parses_to_the_same_value_on_every_command():
    parser = cli.build_parser()
    for flag, actions in shared_actions().items():
        given, absent = set(), set()
        for command, action in actions.items():
            given.add(repr(getattr(parser.parse_args(MINIMAL[command] + [flag] + sample_value(action)[1:]),
                                   action.dest)))
            value = getattr(parser.parse_args(MINIMAL[command]), action.dest)
            own = cli.COMMAND_DEFAULTS.get(command, {})
            if action.dest in own:  # a command's own default (COMMAND_DEFAULTS), given when absent
                assert value == own[action.dest], (flag, command)
            else:
                absent.add(repr(value))
        assert len(given) == 1 and len(absent) == 1, (flag, given, absent)
    for flag in cli.PROTOCOL_OPTIONS:  # not given is told from given: the library fills it (table, preset)
        assert parser.parse_args(MINIMAL["run"]).__dict__[flag[2:].replace("-", "_")] is None


@pytest.mark.parametrize("flag, model", [("--eval-samples", "ns_gan"), ("--nll-n", "vae")])
def test_an_explicit_value_beyond_the_reference_split_is_refused_by_train_and_run_alike(flag, model, tmp_path, capsys):
    expected = f"{flag} 20000 exceeds the 10000 reference images of triangles"
    errors = []
    for args in (TRAIN + ["--model", model, "--dataset", "triangles"], RUN + ["--model", model]):
        code, _, err = run_cli(args + [flag, "20000", "--out", str(tmp_path / "o")], capsys)
        assert_one_line_error(code, err, expected)
        errors.append(err.split("error: ", 1)[1])
    assert errors[0] == errors[1]
    assert not (tmp_path / "o").exists()
    key = flag[2:].replace("-", "_")
    for build in (lambda: make_trial_config(model, "triangles", **{key: 20000}),
                  lambda: resolve_protocol("triangles", "quick", **{key: 20000})):
        with pytest.raises(BenchError, match=expected):
            build()


def test_values_from_a_preset_or_the_table_are_capped_to_the_reference_split(blob_folder):
    dataset = f"folder:{blob_folder}"
    paper = resolve_protocol(dataset, "paper", extractor="tiny")
    assert paper.eval_samples == paper.nll_n == 96  # the folder's test images, not the preset's 10000
    config = make_trial_config("vae", dataset, extractor="tiny")
    assert config.eval_samples == config.nll_n == 96 and config.nll_k == DEFAULTS["nll_k"]
    assert resolve_protocol(dataset, "paper", extractor="tiny", eval_samples=96).eval_samples == 96
    with pytest.raises(BenchError, match="--eval-samples 97 exceeds the 96 reference images"):
        resolve_protocol(dataset, "paper", eval_samples=97)


def test_a_flag_given_wins_over_the_preset_and_a_flag_not_given_takes_it():
    quick = resolve_protocol("triangles", "quick")
    assert (quick.steps, quick.nll_k, quick.nll_n, quick.search) == (30, 16, 256, DEFAULTS["search"])
    given = resolve_protocol("triangles", "quick", steps=8, nll_k=3, numerics="tf32", search="narrow")
    assert (given.steps, given.nll_k, given.numerics, given.search) == (8, 3, "tf32", "narrow")
    # The CPU preset: the smallest protocol under which the GANs' defaults draw triangles (README).
    cpu = resolve_protocol("triangles", "cpu")
    assert (cpu.steps, cpu.eval_every, cpu.eval_samples, cpu.extractor, cpu.nll_k) == (3000, 1000, 256, "inception", 16)
    assert preset_seeds("cpu") == 0 and cpu.arch == "infogan"


def test_train_and_run_build_the_same_trial_from_the_same_values(blob_folder):
    dataset = f"folder:{blob_folder}"
    values = dict(steps=6, eval_every=3, eval_samples=16, extractor="tiny", nll_k=4, nll_n=32)
    for model in ("ns_gan", "vae"):
        trained = make_trial_config(model, dataset, seed=5, **({} if model == "ns_gan" else
                                                                {"nll_k": 4, "nll_n": 32}),
                                    **{k: v for k, v in values.items() if not k.startswith("nll")})
        studied = resolve_protocol(dataset, "quick", **values).trial_config(model, trained.hparams, 5)
        assert studied == trained


def test_the_presets_only_set_what_a_preset_may_set(monkeypatch, tmp_path, capsys):
    assert preset_names() == ["cpu", "paper", "quick"]
    for name in preset_names():
        load_preset(name)
    (tmp_path / "typo.toml").write_text('description = "x"\neval_sample = 10\n')
    monkeypatch.setattr("bench.defaults._presets", lambda: tmp_path)
    with pytest.raises(BenchError, match="preset 'typo' has an unknown key 'eval_sample'; a preset may set: "):
        load_preset("typo")
    code, _, err = run_cli(RUN + ["--model", "ns_gan", "--preset", "typo", "--out", str(tmp_path / "r")], capsys)
    assert_one_line_error(code, err, "unknown key 'eval_sample'")


def test_a_stored_record_with_an_unknown_key_is_refused_naming_it(tmp_path, capsys):
    config = make_trial_config("ns_gan", "triangles", steps=4, eval_every=2, eval_samples=16, extractor="tiny")
    assert TrialConfig.from_dict(config.to_dict()) == config
    state = {"format": "bench-trial/1", "status": "running", "config": {**config.to_dict(), "ema": 0.999}}
    (tmp_path / "t").mkdir()
    (tmp_path / "t" / "trial.json").write_text(json.dumps(state))
    with pytest.raises(BenchError, match=r"trial.json has an unknown key 'ema'"):
        TrialFolder(tmp_path / "t").claim(config)
    code, _, err = run_cli(["score", "--checkpoint", str(tmp_path / "t"), "--nll", "ais"], capsys)
    assert_one_line_error(code, err, "unknown key 'ema'")
    stored = resolve_protocol("triangles", "quick").to_dict()
    with pytest.raises(BenchError, match="unknown key 'schedule'"):
        RunProtocol.from_dict({**stored, "schedule": "cosine"})
    # An older record has fewer keys, never unknown ones: it loads, the missing ones as they were then.
    old = {k: v for k, v in stored.items() if k != "numerics"}
    assert RunProtocol.from_dict(old).numerics == "float32"
    assert TrialConfig.from_dict({k: v for k, v in config.to_dict().items() if k != "numerics"}) == config


def test_the_numerics_names_of_the_help_are_those_of_bench_numerics():
    from bench.numerics import NUMERICS

    assert tuple(NUMERICS) == CHOICES["numerics"]
