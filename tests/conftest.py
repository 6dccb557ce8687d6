import pytest


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(autouse=True)
def _private_store(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Runs recorded by tests go to a temporary store, never the user's; model states too."""
    monkeypatch.setenv("TASKLOOM_STORE", str(tmp_path_factory.mktemp("store") / "store.sqlite3"))
    monkeypatch.setenv("TASKLOOM_CHECKPOINTS", str(tmp_path_factory.mktemp("checkpoints")))
