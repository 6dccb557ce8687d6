"""bench/agent.py's tables: accuracy and plan validity by family and by width."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parents[2] / "bench"
if str(BENCH) not in sys.path:
    sys.path.append(str(BENCH))  # last: bench/mcp.py must not hide the MCP SDK

tables = importlib.import_module("agent_tables")


def _row(family: str, kind: str, width: int, correct: bool, valid: bool = True) -> dict[str, Any]:
    return {"family": family, "kind": kind, "width": width, "correct": correct, "valid": valid}


def test_breakdown_by_family_then_width_band_then_all() -> None:
    rows = [
        _row("capital", "lookup", 1, True),
        _row("capital", "lookup", 1, False),
        _row("sum", "aggregate", 4, True),
        _row("sum", "aggregate", 7, False, valid=False),
        _row("ratio", "derived", 2, True),
    ]
    table = tables.breakdown({"world bank": rows})
    assert table == [
        ["sum (aggregate)", "2", "50%", "50.0%"],
        ["ratio (derived)", "1", "100%", "100.0%"],
        ["capital (lookup)", "2", "50%", "100.0%"],
        ["width 1", "2", "50%", "100.0%"],
        ["width 2", "1", "100%", "100.0%"],
        ["width ≥ 4", "2", "50%", "50.0%"],
        ["all", "5", "60%", "80.0%"],
    ]
    assert tables.breakdown_header(["world bank"]) == [
        "family / width",
        "questions",
        "accuracy",
        "plan validity",
    ]


def test_breakdown_puts_setups_side_by_side() -> None:
    notional = [_row("heaviest", "compare", 3, False), _row("symbol", "lookup", 1, True)]
    examples = [_row("heaviest", "compare", 3, True)]
    table = tables.breakdown({"notional": notional, "3 examples": examples})
    assert table[0] == ["heaviest (compare)", "1", "0%", "100.0%", "1", "100%", "100.0%"]
    assert table[1] == ["symbol (lookup)", "1", "100%", "100.0%", "0", "-", "-"]
    assert table[-1] == ["all", "2", "50%", "100.0%", "1", "100%", "100.0%"]
    assert len(tables.breakdown_header(["notional", "3 examples"])) == 1 + 2 * 3


def test_width_bands() -> None:
    assert [tables.width_band(w) for w in (1, 2, 3, 4, 8)] == ["1", "2", "3", "≥ 4", "≥ 4"]
