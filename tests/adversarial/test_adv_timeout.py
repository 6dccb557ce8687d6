"""A sync tool's timeout through the real command line, with every worker thread busy.

anyio's default thread limiter lets 40 sync calls run at once; the rest wait
for a thread. A tool's timeout counts only the call itself, so calls queued
behind the first waves still get their whole timeout.
"""

from __future__ import annotations

import json

TOOLS = '''
import time
import taskloom

@taskloom.tool(timeout=2)
def nap(n: int) -> int:
    """Sleeps well within its timeout, once it has a thread."""
    time.sleep(0.5)
    return n
'''

WAVES = 6
"""Calls in six waves of 40: the last waits 2.5 s for a thread, past the timeout."""


def test_sync_calls_queued_for_a_thread_do_not_time_out_while_they_wait(cli) -> None:
    tools = cli.write("tools.py", TOOLS)
    plan = cli.write("p.plan", "".join(f"{n}. nap({n})\n" for n in range(1, 40 * WAVES + 1)))
    outcome = cli("exec", plan, "--tools", tools)
    assert outcome.code == 0, outcome.stderr[-2000:]
    assert "Traceback" not in outcome.stderr, outcome.stderr[-2000:]
    cli.assert_store_intact()
    assert list(cli.statuses().values()) == ["completed"]
    assert set(cli.task_statuses().values()) == {"done"}


def test_a_sync_call_that_outlives_its_timeout_still_times_out(cli) -> None:
    tools = cli.write("tools.py", TOOLS.replace("time.sleep(0.5)", "time.sleep(600)"))
    plan = cli.write("p.plan", "1. nap(1)\n")
    outcome = cli("exec", plan, "--tools", tools, "--json")
    assert outcome.code == 1, outcome.stderr[-2000:]  # the task failed; no hang on its thread
    assert "Traceback" not in outcome.stderr, outcome.stderr[-2000:]
    task = json.loads(outcome.stdout)["tasks"]["1"]
    assert task["error_type"] == "ToolTimedOut"
    assert task["error"].startswith("nap did not finish within 2s")
    cli.assert_store_intact()
    assert set(cli.task_statuses().values()) == {"failed"}
