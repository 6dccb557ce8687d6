"""On random DAGs, every task runs exactly once and only after all of its dependencies.

With maps and conditions: every task runs at most once, only after its inputs,
and a false condition never runs its task.
"""

import random
from typing import Any

import anyio
import anyio.lowlevel
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from taskloom import ConditionFalse, Plan, Ref, Task, TaskId, execute, tool
from taskloom.engine import events as ev
from taskloom.plan import parse_guard


@st.composite
def dags(draw: st.DrawFn) -> tuple[list[Task], int | None, int]:
    size = draw(st.integers(min_value=1, max_value=40))
    tasks = []
    for i in range(1, size + 1):
        deps = (
            draw(st.sets(st.integers(min_value=1, max_value=i - 1), max_size=4)) if i > 1 else set()
        )
        args = [Ref(TaskId(str(d))) for d in sorted(deps)]
        tasks.append(Task(id=TaskId(str(i)), tool="node", args=(str(i), args)))
    limit = draw(st.one_of(st.none(), st.integers(min_value=1, max_value=5)))
    seed = draw(st.integers(min_value=0, max_value=1000))
    return draw(st.permutations(tasks)), limit, seed


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(dags())
def test_every_task_runs_once_after_its_dependencies(
    case: tuple[list[Task], int | None, int],
) -> None:
    tasks, limit, seed = case
    rng = random.Random(seed)
    delays = {t.id: rng.choice([0, 0, 0.0005, 0.001]) for t in tasks}
    finished: set[str] = set()
    runs: list[str] = []

    @tool
    async def node(name: str, inputs: list[Any]) -> str:
        """Checks that its inputs finished before it started."""
        runs.append(name)
        deps = {d.task for d in next(t for t in tasks if t.id == name).args[1]}
        assert deps <= finished, (name, deps - finished)
        assert inputs == sorted(deps, key=int)
        await anyio.sleep(delays[TaskId(name)])
        finished.add(name)
        return name

    result = anyio.run(lambda: execute(Plan(tasks), tools=[node], max_concurrency=limit))
    assert sorted(runs, key=int) == sorted((t.id for t in tasks), key=int)
    assert all(t.status == "done" for t in result.tasks.values())


# -- maps and conditions ------------------------------------------------------


@st.composite
def branching_plans(draw: st.DrawFn) -> tuple[list[Task], dict[str, int], int | None]:
    """Random plans whose tasks may map over an earlier output, carry a condition
    (`if len($d) > k`) and refer to earlier tasks optionally (`$d?`).

    Every call returns a list (of `sizes[name]` items), so anything can be mapped over.
    """
    size = draw(st.integers(min_value=1, max_value=25))
    tasks: list[Task] = []
    sizes: dict[str, int] = {}
    for i in range(1, size + 1):
        name = str(i)
        sizes[name] = draw(st.integers(min_value=0, max_value=3))
        earlier = list(range(1, i))
        deps = sorted(draw(st.sets(st.sampled_from(earlier), max_size=3))) if earlier else []
        inputs: list[Any] = [Ref(TaskId(str(d)), optional=draw(st.booleans())) for d in deps]
        if earlier and draw(st.booleans()):
            over = draw(st.sampled_from(earlier))
            inputs.insert(0, Ref(TaskId(str(over)), each=()))
        guard = None
        if earlier and draw(st.booleans()):
            on = draw(st.sampled_from(earlier))
            limit = draw(st.integers(min_value=0, max_value=2))
            guard = parse_guard(f"len(${on}) > {limit}", task_id=name)
        tasks.append(Task(id=TaskId(name), tool="node", args=(name, inputs), guard=guard))
    limit = draw(st.one_of(st.none(), st.integers(min_value=1, max_value=4)))
    return tasks, sizes, limit


def expected_outcome(
    tasks: list[Task], sizes: dict[str, int]
) -> tuple[dict[str, str], dict[str, Any]]:
    """What a run must end with, worked out one task at a time in plan order."""
    status: dict[str, str] = {}
    output: dict[str, Any] = {}

    def call(name: str) -> list[str]:
        return [f"{name}:{j}" for j in range(sizes[name])]

    for task in tasks:
        name = task.id
        blocked = [
            d for d in task.dependencies if status[d] != "done" and not task.accepts_skipped(d)
        ]
        if blocked:
            status[name] = "skipped"
            continue
        guard = task.guard
        if guard is not None and not len(output[guard.refs[0].task]) > int(guard.text[-1]):
            status[name] = "skipped"
            continue
        status[name] = "done"
        maps = [r for r in task.args[1] if r.each is not None]
        if not maps:
            output[name] = call(name)
            continue
        items = output[maps[0].task]
        output[name] = [call(name) for _ in items]
        for j in range(len(items)):
            status[f"{name}.{j}"], output[f"{name}.{j}"] = "done", call(name)
    return status, output


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(branching_plans())
def test_maps_and_conditions_run_each_task_at_most_once_after_its_inputs(
    case: tuple[list[Task], dict[str, int], int | None],
) -> None:
    tasks, sizes, limit = case
    by_id = {t.id: t for t in tasks}
    settled: dict[str, ev.Event] = {}
    started: list[str] = []
    calls: list[str] = []

    @tool
    async def node(name: str, inputs: list[Any]) -> list[str]:
        """Returns `sizes[name]` items."""
        calls.append(name)
        await anyio.lowlevel.checkpoint()
        return [f"{name}:{j}" for j in range(sizes[name])]

    def on_event(event: ev.Event) -> None:
        if isinstance(event, ev.TaskStarted):
            task_id = event.task_id
            assert task_id not in started, f"{task_id} started twice"
            started.append(task_id)
            task = by_id.get(task_id) or by_id[TaskId(task_id.partition(".")[0])]
            own = task.dependencies if task_id in by_id else element_inputs(task)
            for dep in own:  # every input settled before the call, each as the reference allows
                assert dep in settled, (task_id, dep)
                done = isinstance(settled[dep], ev.TaskFinished)
                assert done or task.accepts_skipped(dep), (task_id, dep)
        elif isinstance(event, ev.TaskFinished | ev.TaskSkipped | ev.TaskFailed):
            assert event.task_id not in settled
            settled[event.task_id] = event
        elif isinstance(event, ev.TaskMapped):
            assert event.task_id not in settled

    result = anyio.run(
        lambda: execute(Plan(tasks), tools=[node], max_concurrency=limit, on_event=on_event)
    )
    status, output = expected_outcome(tasks, sizes)
    assert {i: str(t.status) for i, t in result.tasks.items()} == status
    assert result.outputs == output
    assert sorted(calls) == sorted(i.partition(".")[0] for i in started)
    for task in tasks:  # a false condition never runs its task (nor fans it out)
        error = result.tasks[task.id].error
        if isinstance(error, ConditionFalse) and error.guarded == task.id:
            assert task.id not in started
            assert not any(e.startswith(f"{task.id}.") for e in result.tasks)


def element_inputs(task: Task) -> set[TaskId]:
    """The tasks an element of map `task` reads: its arguments' references, not its guard's."""
    return {ref.task for ref in task.args[1]}


# -- sub-plans ------------------------------------------------------------------


@st.composite
def plans_with_calls(draw: st.DrawFn) -> tuple[list[Task], dict[str, int], int | None]:
    """Random plans of `node` calls and calls of the sub-plan `sub` (two `node`s, the
    second under a condition), which may map over an earlier output or carry a condition."""
    size = draw(st.integers(min_value=1, max_value=15))
    tasks: list[Task] = []
    sizes: dict[str, int] = {}
    for i in range(1, size + 1):
        name = str(i)
        sizes[name] = draw(st.integers(min_value=0, max_value=3))
        earlier = list(range(1, i))
        deps = sorted(draw(st.sets(st.sampled_from(earlier), max_size=2))) if earlier else []
        inputs: list[Any] = [Ref(TaskId(str(d))) for d in deps]
        if earlier and draw(st.booleans()):
            inputs.insert(0, Ref(TaskId(str(draw(st.sampled_from(earlier)))), each=()))
        guard = None
        if earlier and draw(st.booleans()):
            on, limit = draw(st.sampled_from(earlier)), draw(st.integers(0, 2))
            guard = parse_guard(f"len(${on}) > {limit}", task_id=name)
        tool_name = draw(st.sampled_from(["node", "sub"]))
        tasks.append(Task(id=TaskId(name), tool=tool_name, args=(name, inputs), guard=guard))
    limit = draw(st.one_of(st.none(), st.integers(min_value=1, max_value=4)))
    return tasks, sizes, limit


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(plans_with_calls())
def test_sub_plan_tasks_run_at_most_once_after_their_inputs(
    case: tuple[list[Task], dict[str, int], int | None],
) -> None:
    tasks, sizes, limit = case
    dependencies: dict[str, tuple[str, ...]] = {}
    accepts: dict[str, Task] = {}
    settled: dict[str, ev.Event] = {}
    started: list[str] = []

    @tool
    async def node(name: str, inputs: list[Any]) -> list[str]:
        """Returns `sizes[name]` items (two for a sub-plan's own tasks)."""
        await anyio.lowlevel.checkpoint()
        return [f"{name}:{j}" for j in range(sizes.get(name, 2))]

    sub = Plan.parse(
        '1. node("a", [$name, $inputs])\n2. node("b", [$1]) if len($inputs) > 1\n'
    ).as_tool("sub", output="1", tools=[node])

    def on_event(event: ev.Event) -> None:
        if isinstance(event, ev.TaskAdded):
            dependencies[event.task_id] = event.dependencies
            accepts[event.task_id] = event.task
        elif isinstance(event, ev.TaskStarted):
            assert event.task_id not in started, f"{event.task_id} started twice"
            started.append(event.task_id)
            for dep in dependencies[event.task_id]:
                assert dep in settled, (event.task_id, dep)
                done = isinstance(settled[dep], ev.TaskFinished)
                assert done or accepts[event.task_id].accepts_skipped(dep), (event.task_id, dep)
        elif isinstance(event, ev.TaskFinished | ev.TaskSkipped | ev.TaskFailed):
            assert event.task_id not in settled, f"{event.task_id} settled twice"
            settled[event.task_id] = event

    result = anyio.run(
        lambda: execute(Plan(tasks), tools=[node, sub], max_concurrency=limit, on_event=on_event)
    )
    assert all(t.status in ("done", "skipped") for t in result.tasks.values()), result.tasks
    for task_id, task in result.tasks.items():
        error = task.error
        if isinstance(error, ConditionFalse) and error.guarded == task_id:
            # A false condition never runs its task, nor adds its elements or sub-plan.
            assert task_id not in started
            assert not any(i.startswith((f"{task_id}.", f"{task_id}/")) for i in result.tasks)
        if task.tool == "sub" and task.status == "done" and f"{task_id}/1" in result.tasks:
            # A call's output is its task 1's (not a map's; `/in` holds a call's arguments).
            assert task.output == result.tasks[TaskId(f"{task_id}/1")].output
