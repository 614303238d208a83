import pytest


@pytest.fixture(scope="session")
def session_cache(tmp_path_factory):
    """One cache per test session: the converted Inception weights are written once, never to ~/.cache."""
    return tmp_path_factory.mktemp("bench-cache")


@pytest.fixture(autouse=True)
def bench_cache(session_cache, monkeypatch):
    monkeypatch.setenv("BENCH_CACHE", str(session_cache))
    monkeypatch.delenv("BENCH_INCEPTION_WEIGHTS", raising=False)
    return session_cache
