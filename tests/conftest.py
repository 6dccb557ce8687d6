import os

import pytest

# Settings that would point a test at a real model server, or a real key.
_MODEL_ENV = ("TASKLOOM_BASE_URL", "TASKLOOM_MODEL", "TASKLOOM_API_KEY")


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(autouse=True)
def _no_model_server(monkeypatch: pytest.MonkeyPatch) -> None:
    """No test reaches a model server by accident: model settings come only from the test."""
    for name in [*_MODEL_ENV, *(n for n in os.environ if n.startswith("OPENAI_"))]:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(autouse=True)
def _private_store(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Runs recorded by tests go to a temporary store, never the user's; model states too."""
    monkeypatch.setenv("TASKLOOM_STORE", str(tmp_path_factory.mktemp("store") / "store.sqlite3"))
    monkeypatch.setenv("TASKLOOM_CHECKPOINTS", str(tmp_path_factory.mktemp("checkpoints")))


@pytest.fixture(autouse=True)
def _no_traces(monkeypatch: pytest.MonkeyPatch) -> None:
    """No test sends OpenTelemetry traces because of the environment it runs in."""
    for name in [n for n in os.environ if n.startswith("OTEL_")]:
        monkeypatch.delenv(name, raising=False)
