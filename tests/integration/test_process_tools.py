"""Isolated tools in real worker processes: crashes, limits, timeouts and cancellation."""

from __future__ import annotations

import os
import time
from pathlib import Path

import anyio
import anyio.to_thread
import pytest

import isolated_tools as iso
import taskloom
from taskloom import (
    CallTimedOut,
    CommandFailed,
    LimitExceeded,
    OutputTooLarge,
    Plan,
    ToolDefinitionError,
    WorkerCrashed,
)
from taskloom.tools import _cgroup
from taskloom.tools._tool import CallTimes

pytestmark = [pytest.mark.integration, pytest.mark.anyio]

GONE_S = 20.0
"""Far past how long a killed process takes to be reaped: only a leak reaches it."""


class Times:
    """Where `Tool.call` records when a call ran."""

    def __init__(self) -> None:
        self.started_at: float | None = None
        self.finished_at: float | None = None


def alive(pid: int) -> bool:
    """Whether a process with this pid exists (a zombie counts: it was not reaped)."""
    return Path(f"/proc/{pid}").exists()


def in_group(pgid: int) -> list[int]:
    """Every process (zombies included) whose process group is `pgid`, read from /proc."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        if int(stat.rpartition(")")[2].split()[2]) == pgid:
            found.append(int(entry.name))
    return found


def wait_until(condition: object, what: str) -> None:
    """Poll `condition()` until it holds; fail after GONE_S."""
    deadline = time.monotonic() + GONE_S
    while not condition():  # type: ignore[operator]
        if time.monotonic() > deadline:
            pytest.fail(f"still true after {GONE_S:g}s: {what}")
        time.sleep(0.02)


def pids_in(path: Path) -> list[int]:
    """The pids a tool wrote to `path`; none yet if it has not."""
    return [int(pid) for pid in path.read_text().split()] if path.exists() else []


async def wait_for_pids(path: Path, count: int) -> list[int]:
    """The pids a tool in another process writes to `path`, once it has."""
    with anyio.fail_after(GONE_S):
        while len(pids := await anyio.to_thread.run_sync(pids_in, path)) < count:  # noqa: ASYNC110
            await anyio.sleep(0.01)  # another process writes the file: no event can say so
    return pids


async def test_a_call_runs_in_another_process_and_its_worker_stays_warm() -> None:
    first = await iso.worker_pid.call({})
    second = await iso.worker_pid.call({})
    assert first != os.getpid()
    assert second == first  # the same warm worker took the next call
    assert await iso.square.call({"x": 7}) == 49
    assert await iso.async_square.call({"x": 8}) == 64


async def test_a_call_records_when_it_ran_in_the_worker() -> None:
    times = Times()
    before = time.monotonic()
    await iso.square.call({"x": 2}, times=times)
    assert times.started_at is not None and times.finished_at is not None
    assert before <= times.started_at <= times.finished_at <= time.monotonic()


async def test_a_segfault_fails_the_call_and_the_pool_replaces_the_worker() -> None:
    before = await iso.worker_pid.call({})
    with pytest.raises(WorkerCrashed, match="SIGSEGV") as caught:
        await iso.segfault.call({})
    assert caught.value.signal_name is not None and caught.value.signal_name.startswith("SIGSEGV")
    after = await iso.worker_pid.call({})
    assert after != before or not alive(before)
    assert await iso.square.call({"x": 3}) == 9


async def test_os_exit_fails_the_call_with_its_status() -> None:
    with pytest.raises(WorkerCrashed, match="exited with status 7") as caught:
        await iso.hard_exit.call({"code": 7})
    assert caught.value.exit_code == 7
    assert await iso.square.call({"x": 4}) == 16


async def test_the_memory_limit_fails_the_call_and_names_the_limit() -> None:
    assert await iso.hog.call({"mb": 8}) == 8 * 1024 * 1024  # under the limit: fine
    with pytest.raises(LimitExceeded, match="max_memory_mb=64") as caught:
        await iso.hog.call({"mb": 512})
    assert caught.value.limit == "max_memory_mb"


async def test_the_cpu_limit_kills_the_call_with_sigxcpu() -> None:
    with pytest.raises(LimitExceeded, match="max_cpu_s=1.*SIGXCPU") as caught:
        await iso.spin.call({})
    assert caught.value.limit == "max_cpu_s"


async def test_a_timeout_kills_the_whole_process_group(tmp_path: Path) -> None:
    pid_file = tmp_path / "pids"
    with pytest.raises(CallTimedOut):
        await iso.sleep_with_child.call({"pid_file": str(pid_file), "seconds": 600}, timeout=1.5)
    worker, child = [int(p) for p in pid_file.read_text().split()]
    wait_until(lambda: not alive(worker) and not alive(child), "the worker or its child")
    assert in_group(worker) == []


async def test_a_callers_cancellation_kills_the_worker(tmp_path: Path) -> None:
    pid_file = tmp_path / "pids"
    async with anyio.create_task_group() as group:
        group.start_soon(iso.sleep_with_child.call, {"pid_file": str(pid_file), "seconds": 600})
        worker, child = await wait_for_pids(pid_file, 2)
        group.cancel_scope.cancel()
    wait_until(lambda: not alive(worker) and not alive(child), "the worker or its child")
    assert await iso.square.call({"x": 5}) == 25


async def test_a_fork_bomb_is_contained_and_leaves_no_process(tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"
    before = set(_cgroups())
    with pytest.raises(LimitExceeded, match="max_processes=4") as caught:
        await iso.fork_bomb.call({"pid_file": str(pid_file)}, timeout=2)
    assert caught.value.limit == "max_processes"
    worker = int(pid_file.read_text())
    wait_until(lambda: in_group(worker) == [], f"processes of group {worker}")
    wait_until(lambda: set(_cgroups()) <= before | set(_live_cgroups()), "the bomb's cgroup")


def _cgroups() -> list[str]:
    base = _cgroup.ROOT / "taskloom"
    return [p.name for p in base.iterdir()] if base.is_dir() else []


def _live_cgroups() -> list[str]:
    """Cgroups of the pool's live workers (idle ones stay)."""
    from taskloom.tools._pool import POOL

    return [w.cgroup.path.name for w in list(POOL._all) if w.cgroup is not None]


async def test_an_output_over_the_limit_fails_without_being_read() -> None:
    assert len(await iso.big_text.call({"size": 1000})) == 1000
    with pytest.raises(OutputTooLarge, match="output too large"):
        await iso.big_text.call({"size": 10_000_000})
    assert len(await iso.big_text.call({"size": 10})) == 10


async def test_the_tools_exception_comes_back_as_itself() -> None:
    with pytest.raises(ValueError, match="a bad value"):
        await iso.fails.call({"kind": "value"})
    with pytest.raises(Exception, match="lock object") as caught:
        await iso.fails.call({"kind": "unpicklable"})
    assert type(caught.value).__name__ == "Unpicklable"


async def test_a_run_where_one_isolated_tool_crashes_and_its_siblings_finish() -> None:
    plan = Plan.parse(
        "1. square(2)\n2. segfault()\n3. square(3)\n4. square(4)\n5. square($2)\n6. square($1)\n"
    )
    tools = [iso.square, iso.segfault]
    result = await taskloom.execute(plan, tools=tools)
    statuses = {tid: str(t.status) for tid, t in result.tasks.items()}
    assert statuses == {
        "1": "done",
        "2": "failed",
        "3": "done",
        "4": "done",
        "5": "skipped",
        "6": "done",
    }
    assert "SIGSEGV" in str(result.tasks["2"].error)
    assert [result.tasks[t].output for t in ("1", "3", "4", "6")] == [4, 9, 16, 16]


async def test_a_timed_out_isolated_task_is_recorded_without_an_abandoned_thread(
    tmp_path: Path,
) -> None:
    slow = taskloom.tool(timeout=1.0, isolated=True)(iso.sleep_with_child.fn)
    plan = Plan.parse(f"1. sleep_with_child({str(tmp_path / 'p')!r}, 600)\n")
    result = await taskloom.execute(plan, tools=[slow])
    error = str(result.tasks["1"].error)
    killed = "(its worker process group was killed)"
    assert error == f"sleep_with_child did not finish within 1s {killed}"


async def test_tools_loaded_from_a_file_path_run_from_that_file(tmp_path: Path) -> None:
    path = tmp_path / "file_tools.py"
    path.write_text(
        "import os, taskloom\n\n"
        "@taskloom.tool(isolated=True)\n"
        "def where() -> str:\n"
        "    return __file__ + ' ' + str(os.getpid())\n"
    )
    from taskloom.tools._load import import_tools

    where = import_tools(str(path))["where"]
    file, pid = (await where.call({})).split()
    assert file == str(path.resolve()) and int(pid) != os.getpid()


async def test_a_command_tool_returns_stdout(tmp_path: Path) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_text("a\nb\nc\n")
    lines = taskloom.command_tool("lines", ["wc", "-l", "{path}"])
    assert lines.parameters == ("path",)
    assert (await lines.call({"path": str(notes)})).split()[0] == "3"


async def test_a_command_tool_passes_a_value_as_one_argument(tmp_path: Path) -> None:
    echo = taskloom.command_tool("echo", ["printf", "%s|", "{text}"])
    assert await echo.call({"text": "a b; rm -rf $HOME `x`"}) == "a b; rm -rf $HOME `x`|"


async def test_a_failing_command_reports_its_status_and_stderr(tmp_path: Path) -> None:
    listing = taskloom.command_tool("listing", ["ls", "{path}"])
    with pytest.raises(CommandFailed, match="exited with status 2.*No such file") as caught:
        await listing.call({"path": str(tmp_path / "missing")})
    assert caught.value.status == 2


async def test_a_command_over_its_output_limit_fails() -> None:
    flood = taskloom.command_tool("flood", ["yes"], max_output_bytes=10_000, timeout=30)
    with pytest.raises(OutputTooLarge, match="10,000"):
        await flood.call({})


async def test_a_command_that_is_not_there_fails_clearly() -> None:
    missing = taskloom.command_tool("missing", ["no-such-program-taskloom"])
    with pytest.raises(FileNotFoundError, match="no-such-program-taskloom"):
        await missing.call({})


async def test_the_python_tool_runs_code_in_a_fresh_worker() -> None:
    python = taskloom.python_tool()
    assert await python.call({"code": "x = 6\nx * 7"}) == 42
    assert await python.call({"code": "print('hi')"}) == "hi\n"
    first = await python.call({"code": "import os\nos.getpid()"})
    second = await python.call({"code": "import os\nos.getpid()"})
    assert first != second != os.getpid()  # a python call's worker is never reused
    with pytest.raises(ZeroDivisionError):
        await python.call({"code": "1 / 0"})


async def test_a_module_attribute_that_is_gone_is_a_clear_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def renamed() -> int:
        return 1

    renamed.__qualname__ = "no_such_function"
    renamed.__module__ = "isolated_tools"
    ghost = taskloom.tool(isolated=True)(renamed)
    with pytest.raises(ToolDefinitionError, match="no attribute no_such_function"):
        await ghost.call({})


def test_times_protocol_is_the_tools() -> None:
    times: CallTimes = Times()
    assert times.started_at is None


def worker_keepers() -> set[int]:
    """This process's children that are worker keepers, read from /proc."""
    found = set()
    for entry in Path("/proc").iterdir():
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if int(stat.rpartition(")")[2].split()[1]) == os.getpid() and b"taskloom_worker" in cmdline:
            found.add(int(entry.name))
    return found


async def test_a_call_cancelled_while_its_worker_starts_leaves_no_worker() -> None:
    from taskloom.tools._pool import WorkerPool, call_isolated

    pool = WorkerPool(max_workers=1)
    before = worker_keepers()
    assert iso.square.policy.isolation is not None
    with anyio.move_on_after(0.001):
        await call_isolated(
            iso.square, iso.square.policy.isolation, {"x": 1}, times=None, timeout=None, pool=pool
        )
    wait_until(lambda: not pool._all and worker_keepers() <= before, "a worker of the pool")
    pool.close()


async def test_a_worker_killed_while_idle_is_replaced_for_the_next_call() -> None:
    from taskloom.tools._pool import WorkerPool, call_isolated

    pool = WorkerPool(max_workers=1)
    limits = iso.worker_pid.policy.isolation
    assert limits is not None
    first = await call_isolated(iso.worker_pid, limits, {}, times=None, timeout=None, pool=pool)
    os.kill(first, 9)
    wait_until(lambda: not alive(first), "the killed worker")
    second = await call_isolated(iso.worker_pid, limits, {}, times=None, timeout=None, pool=pool)
    assert second != first
    pool.close()
    wait_until(lambda: not alive(second), "the closed pool's worker")


async def test_a_command_that_outlives_its_timeout_is_killed(tmp_path: Path) -> None:
    script = tmp_path / "wait.sh"
    script.write_text(f"echo $$ > {tmp_path / 'pid'}\nexec sleep 600\n")
    wait = taskloom.command_tool("wait", ["sh", str(script)], timeout=1.5)
    with pytest.raises(CallTimedOut):
        await wait.call({}, timeout=wait.policy.timeout)
    pid = int((tmp_path / "pid").read_text())
    wait_until(lambda: not alive(pid), "the timed-out command")


async def test_an_isolated_tool_with_latency_still_runs_in_a_worker() -> None:
    delayed = iso.worker_pid.with_latency(0.01)
    assert await delayed.call({}) != os.getpid()


async def test_arguments_that_cannot_be_pickled_fail_before_a_worker_is_taken() -> None:
    import threading

    from taskloom import ProcessToolError

    with pytest.raises(ProcessToolError, match="cannot be sent to a worker process"):
        await iso.square.call({"x": threading.Lock()})


async def test_a_result_this_process_cannot_read_is_a_clear_error(tmp_path: Path) -> None:
    from taskloom import ProcessToolError

    python = taskloom.python_tool()
    code = "class Local:\n    pass\n\nLocal()"
    with pytest.raises(ProcessToolError, match="cannot read what python returned"):
        await python.call({"code": code})


def running(pid: int) -> bool:
    """Whether a process exists and has not exited (a zombie has exited)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


def test_workers_die_when_the_taskloom_process_is_killed(tmp_path: Path) -> None:
    import signal
    import subprocess
    import sys

    program = (
        "import anyio, isolated_tools as iso\n"
        "from taskloom.tools._pool import POOL\n"
        "async def main():\n"
        "    pid = await iso.worker_pid.call({})\n"
        "    keeper = next(iter(POOL._all)).keeper.pid\n"
        "    print(pid, keeper, flush=True)\n"
        "    await anyio.sleep(600)\n"
        "anyio.run(main)\n"
    )
    here = str(Path(__file__).parent)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([here, os.environ.get("PYTHONPATH", "")])}
    parent = subprocess.Popen(
        [sys.executable, "-c", program], stdout=subprocess.PIPE, text=True, env=env
    )
    try:
        assert parent.stdout is not None
        worker, keeper = (int(p) for p in parent.stdout.readline().split())
        assert running(worker) and running(keeper)
    finally:
        parent.send_signal(signal.SIGKILL)
        parent.communicate()
    # PR_SET_PDEATHSIG: the keeper dies with its parent, the worker with the keeper.
    wait_until(lambda: not running(worker) and not running(keeper), "a worker of a dead parent")
    # Nobody removed the dead parent's cgroups; the next pool to start does.
    wait_until(lambda: not alive(worker) and not alive(keeper), "init reaping them")
    if (_cgroup.ROOT / "taskloom").is_dir():
        _cgroup._remove_orphans()
    assert [name for name in _cgroups() if name.startswith(f"{parent.pid}-")] == []


async def test_closing_the_workers_fails_a_call_in_flight_and_later_calls_work(
    tmp_path: Path,
) -> None:
    from taskloom.tools.process import close_workers

    pid_file = tmp_path / "pids"
    caught: list[BaseException] = []

    async def call() -> None:
        try:
            await iso.sleep_with_child.call({"pid_file": str(pid_file), "seconds": 600})
        except WorkerCrashed as exc:
            caught.append(exc)

    async with anyio.create_task_group() as group:
        group.start_soon(call)
        worker, child = await wait_for_pids(pid_file, 2)
        close_workers()
    assert len(caught) == 1 and "SIGKILL" in str(caught[0])
    wait_until(lambda: not alive(worker) and not alive(child), "the closed worker")
    assert await iso.square.call({"x": 6}) == 36


async def test_a_crashed_worker_is_replaced_in_the_background() -> None:
    from taskloom.tools._pool import WorkerPool, call_isolated

    pool = WorkerPool(max_workers=1)
    limits = iso.worker_pid.policy.isolation
    assert limits is not None and iso.segfault.policy.isolation is not None
    first = await call_isolated(iso.worker_pid, limits, {}, times=None, timeout=None, pool=pool)
    with pytest.raises(WorkerCrashed):
        await call_isolated(
            iso.segfault, iso.segfault.policy.isolation, {}, times=None, timeout=None, pool=pool
        )
    wait_until(lambda: pool._idle and pool._idle[0].pid is not None, "a replacement worker")
    replacement = pool._idle[0]
    assert iso.worker_pid.fn.__module__ in {module for module, _ in replacement.loaded}
    second = await call_isolated(iso.worker_pid, limits, {}, times=None, timeout=None, pool=pool)
    assert second == replacement.pid != first
    pool.close()


async def test_a_worker_whose_keeper_is_killed_fails_its_call_clearly(tmp_path: Path) -> None:
    from taskloom.tools._pool import POOL

    pid_file = tmp_path / "pids"
    caught: list[BaseException] = []

    async def call() -> None:
        try:
            await iso.sleep_with_child.call({"pid_file": str(pid_file), "seconds": 600})
        except WorkerCrashed as exc:
            caught.append(exc)

    async with anyio.create_task_group() as group:
        group.start_soon(call)
        worker, child = await wait_for_pids(pid_file, 2)
        (keeper,) = [w.keeper.pid for w in list(POOL._all) if w.pid == worker]
        os.kill(keeper, 9)
    assert len(caught) == 1 and "killed from outside" in str(caught[0])
    wait_until(lambda: not alive(worker) and not alive(child), "the worker and its child")
