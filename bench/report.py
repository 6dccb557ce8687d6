"""Writing benchmark tables into docs/benchmarks.md, one section per benchmark."""

from __future__ import annotations

import platform
import re
import subprocess
from datetime import UTC, datetime
from pathlib import Path

DOC = Path(__file__).parents[1] / "docs" / "benchmarks.md"
INTRO = """# Benchmarks

Each section below is written by the benchmark named in it; re-run the
command to refresh it. Figures are from the machine named in each section.
"""


def _machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        cores = subprocess.run(["nproc"], capture_output=True, text=True).stdout.strip()
    except OSError:
        cores = "?"
    return f"{cores} cores ({cpu}), Python {platform.python_version()}"


def write_section(
    key: str,
    *,
    title: str,
    command: str,
    header: list[str],
    rows: list[list[str]],
    notes: list[str] = (),  # type: ignore[assignment]
) -> None:
    """Replace (or add) the section `key` of docs/benchmarks.md with a table."""
    stamp = datetime.now(UTC).strftime("%Y-%m-%d")
    lines = [
        f"<!-- {key}:start -->",
        f"## {title}",
        "",
        f"Command: `{command}` — {stamp}, {_machine()}.",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "|".join("---" for _ in header) + "|",
        *("| " + " | ".join(row) + " |" for row in rows),
        "",
        *(f"- {note}" for note in notes),
        f"<!-- {key}:end -->",
    ]
    section = "\n".join(lines)
    text = DOC.read_text() if DOC.exists() else INTRO
    pattern = re.compile(rf"<!-- {key}:start -->.*?<!-- {key}:end -->", re.S)
    text = pattern.sub(section, text) if pattern.search(text) else text.rstrip() + "\n\n" + section
    DOC.parent.mkdir(exist_ok=True)
    DOC.write_text(text.rstrip() + "\n")
