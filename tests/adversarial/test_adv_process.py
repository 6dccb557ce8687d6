"""Isolated tools through the real command line: crashes, limits, bad definitions, Ctrl-C.

Every case also checks that no worker process outlives the command: workers
inherit the case's environment, so any process whose environment names the
case's private store is one of them (or a process one of them started).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

TOOLS = """
import ctypes, os, time
import taskloom

@taskloom.tool(isolated=True)
def square(x: int) -> int:
    return x * x

@taskloom.tool(isolated=True)
def crash() -> int:
    return len(ctypes.string_at(0))

@taskloom.tool(isolated=True)
def leave() -> int:
    os._exit(4)

@taskloom.tool(isolated=True, max_memory_mb=64)
def hog() -> int:
    return len(bytearray(1024 * 1024 * 1024))

@taskloom.tool(isolated=True, max_output_bytes=1000)
def flood() -> str:
    return "x" * 100_000

@taskloom.tool(isolated=True, timeout=3, max_processes=4)
def bomb() -> int:
    while True:
        try:
            os.fork()
        except OSError:
            time.sleep(0.01)

@taskloom.tool(isolated=True)
def nap(path: str) -> int:
    open(path, "w").write(str(os.getpid()))
    time.sleep(600)
    return 0
"""


def workers_of(cli) -> list[int]:
    """Processes whose environment names this case's store: the case's workers."""
    marker = f"TASKLOOM_STORE={cli.store}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            environ = (entry / "environ").read_bytes()
        except OSError:
            continue
        if marker in environ.split(b"\0"):
            found.append(int(entry.name))
    return found


def test_crashes_and_limits_fail_their_tasks_and_the_siblings_finish(cli) -> None:
    tools = cli.write("tools.py", TOOLS)
    plan = cli.write(
        "p.plan",
        "1. square(2)\n2. crash()\n3. leave()\n4. hog()\n5. flood()\n6. square(3)\n7. square($2)\n",
    )
    outcome = cli("exec", plan, "--tools", tools, "--json")
    assert outcome.code == 1, outcome.stderr[-2000:]
    assert "Traceback" not in outcome.stderr + outcome.stdout, outcome.stderr[-2000:]
    tasks = json.loads(outcome.stdout)["tasks"]
    assert [tasks[t]["output"] for t in ("1", "6")] == [4, 9]
    assert "SIGSEGV" in tasks["2"]["error"]
    assert "exited with status 4" in tasks["3"]["error"]
    assert "max_memory_mb=64" in tasks["4"]["error"]
    assert "output too large" in tasks["5"]["error"]
    assert tasks["7"]["status"] == "skipped"
    cli.assert_store_intact()
    assert workers_of(cli) == []


def test_a_fork_bomb_fails_its_task_and_leaves_no_process(cli) -> None:
    tools = cli.write("tools.py", TOOLS)
    plan = cli.write("p.plan", "1. bomb()\n2. square(5)\n")
    outcome = cli("exec", plan, "--tools", tools, "--json")
    assert outcome.code == 1, outcome.stderr[-2000:]
    tasks = json.loads(outcome.stdout)["tasks"]
    assert "max_processes=4" in tasks["1"]["error"]
    assert tasks["2"]["output"] == 25
    cli.assert_store_intact()
    assert workers_of(cli) == []


def test_ctrl_c_during_an_isolated_call_kills_its_worker(cli) -> None:
    tools = cli.write("tools.py", TOOLS)
    pid_file = cli.root / "pid"
    plan = cli.write("p.plan", f"1. nap({str(pid_file)!r})\n")
    process = cli.start("exec", plan, "--tools", tools)
    cli.wait_for(lambda: pid_file.exists() and pid_file.read_text() != "", "the call to start")
    outcome = cli.interrupt(process)
    assert outcome.code == 130, outcome.stderr[-2000:]
    assert "Traceback" not in outcome.stderr, outcome.stderr[-2000:]
    cli.assert_store_intact()
    assert list(cli.statuses().values()) == ["cancelled"]
    cli.wait_for(lambda: workers_of(cli) == [], "the workers to end", timeout=20)
    cgroups = Path("/sys/fs/cgroup/pids/taskloom")
    if cgroups.is_dir():  # the pids cgroups its workers had are removed as it exits
        assert [p.name for p in cgroups.iterdir() if p.name.startswith(f"{process.pid}-")] == []


def test_an_isolated_closure_in_a_tools_file_is_a_clear_error(cli) -> None:
    tools = cli.write(
        "tools.py",
        "import taskloom\n\n"
        "def make():\n"
        "    @taskloom.tool(isolated=True)\n"
        "    def inner(x: int) -> int:\n"
        "        return x\n"
        "    return inner\n\n"
        "inner = make()\n",
    )
    plan = cli.write("p.plan", "1. inner(1)\n")
    outcome = cli("exec", plan, "--tools", tools)
    cli.assert_clear_error(outcome, 2, mentions=["isolated tool inner", "inside a function"])
    cli.assert_store_intact()


def test_a_bad_limit_in_a_tools_file_is_a_clear_error(cli) -> None:
    tools = cli.write(
        "tools.py",
        "import taskloom\n\n"
        "@taskloom.tool(isolated=True, max_memory_mb=-5)\n"
        "def f(x: int) -> int:\n"
        "    return x\n",
    )
    plan = cli.write("p.plan", "1. f(1)\n")
    outcome = cli("exec", plan, "--tools", tools)
    cli.assert_clear_error(outcome, 2, mentions=["max_memory_mb", "> 0"])


def test_a_limit_on_a_tool_that_is_not_isolated_is_a_clear_error(cli) -> None:
    tools = cli.write(
        "tools.py",
        "import taskloom\n\n@taskloom.tool(max_cpu_s=5)\ndef f(x: int) -> int:\n    return x\n",
    )
    plan = cli.write("p.plan", "1. f(1)\n")
    outcome = cli("exec", plan, "--tools", tools)
    cli.assert_clear_error(outcome, 2, mentions=["max_cpu_s needs isolated=True"])


def test_the_python_tool_is_off_unless_enabled(cli) -> None:
    plan = cli.write("p.plan", '1. python("6 * 7")\n')
    outcome = cli("exec", plan)
    cli.assert_clear_error(outcome, 2, mentions=["unknown tool 'python'"])
    cli.assert_store_intact()
    enabled = cli("exec", plan, "--enable-python-tool", "--json")
    assert enabled.code == 0, enabled.stderr[-2000:]
    assert json.loads(enabled.stdout)["tasks"]["1"]["output"] == 42
    assert workers_of(cli) == []


def test_python_code_that_kills_its_worker_fails_only_its_task(cli) -> None:
    plan = cli.write("p.plan", '1. python("import os; os._exit(9)")\n2. python("1 + 1")\n')
    outcome = cli("exec", plan, "--enable-python-tool", "--json")
    assert outcome.code == 1, outcome.stderr[-2000:]
    tasks = json.loads(outcome.stdout)["tasks"]
    assert "exited with status 9" in tasks["1"]["error"]
    assert tasks["2"]["output"] == 2
    cli.assert_store_intact()


def test_a_tools_file_python_clashes_with_the_enabled_python_tool(cli) -> None:
    tools = cli.write(
        "tools.py",
        "import taskloom\n\n@taskloom.tool\ndef python(code: str) -> str:\n    return code\n",
    )
    plan = cli.write("p.plan", '1. python("x")\n')
    outcome = cli("exec", plan, "--tools", tools, "--enable-python-tool")
    cli.assert_clear_error(outcome, 2, mentions=["'python'", "--enable-python-tool"])
