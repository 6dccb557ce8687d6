"""The public names: what the docs show exists, and `__all__` is what the package defines.

Nothing here lists names by hand: they come from README.md and
docs/architecture.md, and from the package's own namespace.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import re
import subprocess
import sys
from pathlib import Path

import pytest

import taskloom

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", ROOT / "docs" / "architecture.md"]
_DOTTED = re.compile(r"(?<![\w.])taskloom((?:\.[A-Za-z_]\w*)+)")
_PYTHON_BLOCK = re.compile(r"^```python\n(.*?)^```", re.MULTILINE | re.DOTALL)


def documented_names() -> list[str]:
    """Every `taskloom.a.b` the docs mention, in code or in text."""
    found = {
        "taskloom" + match.group(1) for doc in DOCS for match in _DOTTED.finditer(doc.read_text())
    }
    return sorted(found)


def resolve(dotted: str) -> object:
    """The object a dotted name leads to, importing submodules on the way."""
    parts = dotted.split(".")
    value: object = importlib.import_module(parts[0])
    for depth, part in enumerate(parts[1:], start=2):
        if not hasattr(value, part):
            importlib.import_module(".".join(parts[:depth]))  # a submodule not imported yet
        value = getattr(value, part)
    return value


def submodules() -> set[str]:
    return {m.name for m in pkgutil.iter_modules(taskloom.__path__)}


def test_the_docs_name_public_names() -> None:
    names = documented_names()
    # The README shows the core of the API; if this finds little, the pattern broke.
    assert {"taskloom.Agent", "taskloom.execute", "taskloom.tool"} <= set(names)


@pytest.mark.parametrize("dotted", documented_names())
def test_every_name_the_docs_show_exists_and_is_exported(dotted: str) -> None:
    assert resolve(dotted) is not None
    top = dotted.split(".")[1]
    assert top in taskloom.__all__ or top in submodules(), f"{top} is neither exported nor a module"


def test_all_is_sorted_unique_and_resolves() -> None:
    assert taskloom.__all__ == sorted(set(taskloom.__all__))
    for name in taskloom.__all__:
        assert getattr(taskloom, name) is not None
    assert set(taskloom.__all__) <= set(dir(taskloom))


def test_all_is_exactly_what_the_package_defines() -> None:
    defined = {
        name
        for name, value in vars(taskloom).items()
        if not name.startswith("_") and not inspect.ismodule(value)
    }
    lazy = set(taskloom._LAZY)
    assert set(taskloom.__all__) == defined | lazy


def test_lazy_names_are_the_agent_packages_own() -> None:
    from taskloom import agent

    for name in taskloom._LAZY:
        assert getattr(taskloom, name) is getattr(agent, name)
    with pytest.raises(AttributeError, match="no attribute 'Agnet'"):
        taskloom.Agnet  # noqa: B018


def test_import_taskloom_leaves_the_agent_and_model_clients_unloaded() -> None:
    code = (
        "import sys, taskloom\n"
        "print(sorted(m for m in ('taskloom.agent', 'taskloom.llm', 'httpx', 'llama_cpp', "
        "'opentelemetry', 'ray') if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.strip() == "[]", out.stdout


def test_telemetry_names_are_sorted_and_resolve() -> None:
    from taskloom import telemetry

    assert telemetry.__all__ == sorted(set(telemetry.__all__))
    for name in telemetry.__all__:
        assert getattr(telemetry, name) is not None
    with pytest.raises(AttributeError, match="no attribute 'RunTracr'"):
        telemetry.RunTracr  # noqa: B018


def readme_programs() -> list[str]:
    """The README's Python examples that are whole programs (they start with imports)."""
    blocks = _PYTHON_BLOCK.findall((ROOT / "README.md").read_text())
    return [b for b in blocks if b.lstrip().startswith(("import ", "from "))]


def test_the_readme_has_a_whole_program() -> None:
    assert readme_programs()


@pytest.mark.parametrize("program", readme_programs())
def test_the_readmes_programs_run(program: str, capsys: pytest.CaptureFixture[str]) -> None:
    exec(compile(program, "README.md", "exec"), {"__name__": "readme"})
    assert capsys.readouterr().out.strip()
