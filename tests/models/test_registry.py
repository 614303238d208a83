"""Registration validates names and classes; plug-ins load from FILE.py:Class."""

import textwrap

import pytest

from bench.errors import BenchError
from bench.models import GenerativeModel, get_model_class, model_names, register_model, registered, restored_registry
from bench.models.gan_variants import NonSaturatingGAN
from bench.models.search_space import SearchSpace


def test_unknown_model_lists_the_known_ones():
    with pytest.raises(BenchError, match="unknown model 'nope'; known models: mm_gan, ns_gan"):
        get_model_class("nope")


@pytest.mark.parametrize("bad", ["NS", "1gan", "a-b", "", "x" * 41])
def test_bad_names_are_refused(bad):
    with pytest.raises(ValueError):
        register_model(bad)(type("M", (NonSaturatingGAN,), {}))


def test_classes_are_validated():
    with pytest.raises(TypeError, match="not a subclass"):
        register_model("not_a_model")(object)
    no_space = type("NoSpace", (GenerativeModel,), {"family": "x", "train_step": lambda s, r, g: {}, "decode": lambda s, z: z})
    with pytest.raises(TypeError, match="search_space"):
        register_model("no_space")(no_space)
    no_step = type("NoStep", (GenerativeModel,), {"family": "x", "search_space": SearchSpace(defaults={})})
    with pytest.raises(TypeError, match="train_step"):
        register_model("no_step")(no_step)


def test_a_taken_name_is_refused():
    with pytest.raises(ValueError, match="already taken"):
        register_model("ns_gan")(type("Other", (NonSaturatingGAN,), {}))


def test_plugin_from_file(tmp_path):
    source = tmp_path / "my_gan.py"
    source.write_text(textwrap.dedent('''
        from bench.models import GAN, gan_search_space
        from bench.models.losses import WASSERSTEIN

        class HingeishGAN(GAN):
            """A plug-in for the test."""
            loss = WASSERSTEIN
            search_space = gan_search_space(dict(lr=1e-4, beta1=0.5, disc_iters=1, d_batch_norm=False))
    '''))
    with restored_registry():
        cls = get_model_class(f"{source}:HingeishGAN")
        assert cls.name == "hingeish_gan" and cls.search_space.defaults["lr"] == 1e-4
        assert "hingeish_gan" in model_names() and get_model_class("hingeish_gan") is cls
    assert "hingeish_gan" not in model_names()
    with restored_registry():  # asked again: the same class (the file is not executed twice), registered again
        assert get_model_class(f"{source}:HingeishGAN") is cls and get_model_class("hingeish_gan") is cls
    with pytest.raises(BenchError, match="has no class 'Missing'"):
        get_model_class(f"{source}:Missing")
    with pytest.raises(BenchError, match="does not exist"):
        get_model_class(f"{tmp_path / 'absent.py'}:X")
    broken = tmp_path / "broken.py"
    broken.write_text("import not_a_module_anywhere\n")
    with pytest.raises(BenchError, match="failed to import: ModuleNotFoundError"):
        get_model_class(f"{broken}:X")


class Throwaway(NonSaturatingGAN):
    """A model registered for one test only."""


def test_a_model_registered_for_a_block_is_gone_after_it():
    before = model_names()
    with registered("throwaway_gan", Throwaway) as cls:
        assert cls is Throwaway and cls.name == "throwaway_gan"
        assert model_names() == before + ["throwaway_gan"] and get_model_class("throwaway_gan") is Throwaway
    assert model_names() == before
    with pytest.raises(BenchError, match="unknown model 'throwaway_gan'"):
        get_model_class("throwaway_gan")
    with pytest.raises(RuntimeError), registered("throwaway_gan", Throwaway):
        raise RuntimeError("the block fails")
    assert model_names() == before  # removed on the way out of a failing block too


def test_a_temporary_registration_keeps_what_the_name_held():
    before = model_names()
    with pytest.raises(ValueError, match="already taken"), registered("ns_gan", Throwaway):
        pass
    assert model_names() == before and get_model_class("ns_gan") is NonSaturatingGAN
    with registered("ns_gan", NonSaturatingGAN):  # the class the name already holds: accepted, and kept
        pass
    assert get_model_class("ns_gan") is NonSaturatingGAN and model_names() == before


def test_restored_registry_removes_what_a_block_registered():
    before = model_names()
    with restored_registry():
        register_model("decorated_gan")(type("Decorated", (NonSaturatingGAN,), {}))
        assert "decorated_gan" in model_names()
    assert model_names() == before
