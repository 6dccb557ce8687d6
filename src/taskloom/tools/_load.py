"""Finding tools in modules and files, and where a tool came from, so a run can find it again."""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import sys
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

from taskloom._text import exception_text
from taskloom.errors import TaskloomError, UserError
from taskloom.tools._tool import Tool

__all__ = ["find_tools", "import_tools", "importable_tools", "tool_sources"]

ToolSource = dict[str, str | None]
"""Where a tool is defined: {"module": its module's name, "file": its file, or None}."""


def import_tools(source: str) -> dict[str, Tool]:
    """Every Tool a module defines, by name: `source` is a module name or a .py file.

    Returns:
        The tools found in the module's globals (also inside lists and tuples).

    Raises:
        UserError: if the module cannot be imported or defines no tools.

    """
    if not source.strip() or source.startswith(".") and not source.endswith(".py"):
        # importlib's own words for these ("the 'package' argument is required") mislead.
        raise UserError(f"--tools {source!r}: give a .py file or a module name like my.tools")
    if Path(source).is_dir() and not (Path(source) / "__init__.py").is_file():
        # A package folder imports by its name; any other folder holds no tools.
        raise UserError(f"--tools {source}: it is a folder; give a .py file or a module name")
    try:
        if source.endswith(".py") or Path(source).is_file():
            module = _import_file(Path(source))
        else:
            module = importlib.import_module(source)
    except TaskloomError:
        raise
    except SystemExit as exc:  # a script's `sys.exit()` at import would end taskloom silently
        raise UserError(
            f"cannot load tools from {source}: it called sys.exit({exc.code!r}) while imported"
        ) from exc
    except Exception as exc:  # the user's module failed to import: say so plainly
        raise UserError(
            f"cannot load tools from {source}: {type(exc).__name__}: {exception_text(exc)}"
        ) from exc
    found = _tools_in(module)
    if not found:
        raise UserError(f"{source} defines no @taskloom.tool functions")
    return found


def tool_sources(tools: Iterable[Tool]) -> list[ToolSource]:
    """The distinct places `tools` are defined in, in order of first use.

    A tool has a source only where its module defines it among its globals,
    where `find_tools` can find it again; a tool built at run time (an MCP
    server's, the python tool) has none, and must be given again.
    """
    sources: list[ToolSource] = []
    for tool in tools:
        module = getattr(tool.fn, "__module__", None)
        if not isinstance(module, str):
            continue
        try:
            file: str | None = str(Path(inspect.getfile(tool.fn)).resolve())
        except (TypeError, OSError):
            file = None
        if not _defines(module, file, tool.name):
            continue
        source: ToolSource = {"module": module, "file": file}
        if source not in sources:
            sources.append(source)
    return sources


def _defines(module: str, file: str | None, name: str) -> bool:
    """Whether the module `file` holds a Tool called `name` where `_tools_in` looks.

    True when that cannot be told here (the module is not imported under its
    name, which a file's may not be): importing it again will tell.
    """
    loaded = sys.modules.get(module)
    origin = getattr(loaded, "__file__", None)
    if loaded is None or file is None or origin is None or Path(origin).resolve() != Path(file):
        return True
    for value in vars(loaded).values():
        found = value if isinstance(value, list | tuple) else (value,)
        if any(isinstance(item, Tool) and item.name == name for item in found):
            return True
    return False


def find_tools(sources: Sequence[Mapping[str, Any]], names: Sequence[str]) -> list[Tool]:
    """The tools called `names`, looked up in the modules `sources` name (see `tool_sources`).

    Returns:
        One Tool per name, in the order of `names`.

    Raises:
        UserError: if a source cannot be imported again, or a name is in none of them.

    """
    found = importable_tools(sources, names)
    missing = [n for n in names if n not in found]
    if missing:
        where = ", ".join(str(s.get("file") or s.get("module")) for s in sources) or "no module"
        raise UserError(
            f"cannot find the tools {', '.join(missing)} in {where}; "
            "give the tools again (--tools, or tools=)"
        )
    return [found[n] for n in names]


def importable_tools(sources: Sequence[Mapping[str, Any]], names: Sequence[str]) -> dict[str, Tool]:
    """Those of the tools called `names` that the modules `sources` name define.

    Tools built at run time are not among them: whoever resumes supplies them.

    Returns:
        The tools found, by name, in the order of `names`.

    Raises:
        UserError: if a source cannot be imported again.

    """
    found: dict[str, Tool] = {}
    for source in sources:
        found |= _tools_in(_import_source(source))
    return {n: found[n] for n in names if n in found}


def _import_source(source: Mapping[str, Any]) -> ModuleType:
    """The module a recorded source names: by module name when that still leads to its file."""
    module, file = source.get("module"), source.get("file")
    if module == "__main__":
        # Importing a script again would run it again.
        raise UserError(
            f"the tools were defined in the script {file or 'that was run'}, which cannot be "
            "imported again; give the tools again (--tools, or tools=)"
        )
    try:
        if isinstance(module, str) and _leads_to(module, file):
            return importlib.import_module(module)
        if isinstance(file, str) and Path(file).is_file():
            return _import_file(Path(file))
    except TaskloomError:
        raise
    except Exception as exc:
        raise UserError(
            f"cannot load tools from {file or module}: {type(exc).__name__}: {exc}"
        ) from exc
    raise UserError(
        f"cannot find the tool module {module} ({file or 'no file'}) any more; "
        "give the tools again (--tools, or tools=)"
    )


def _leads_to(module: str, file: object) -> bool:
    """Whether importing `module` by name gives the module defined in `file`."""
    loaded = sys.modules.get(module)
    if loaded is not None:
        origin = getattr(loaded, "__file__", None)
    else:
        try:
            spec = importlib.util.find_spec(module)
        except (ImportError, ValueError):
            return False
        if spec is None:
            return False
        origin = spec.origin
    if not isinstance(file, str) or origin is None:
        return file is None
    return Path(origin).resolve() == Path(file).resolve()


def _import_file(path: Path) -> ModuleType:
    """Import a .py file as a module named after it (also if the name is taken).

    Raises:
        UserError: if the file cannot be read as a module.

    """
    spec = importlib.util.spec_from_file_location(path.stem, path)
    if spec is None or spec.loader is None:
        raise UserError(f"cannot load tools from {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault(path.stem, module)
    spec.loader.exec_module(module)
    return module


def _tools_in(module: ModuleType) -> dict[str, Tool]:
    """The Tools among a module's globals, and inside its lists and tuples of them.

    Raises:
        UserError: if two different tools in the module share a name.

    """
    from taskloom.plan._plan import tool_map  # the plan package imports this one

    found: list[Tool] = []
    for value in vars(module).values():
        if isinstance(value, Tool):
            found.append(value)
        elif isinstance(value, list | tuple):
            found.extend(item for item in value if isinstance(item, Tool))
    return tool_map(found)
