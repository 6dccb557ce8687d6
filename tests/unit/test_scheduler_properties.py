"""On random DAGs, every task runs exactly once and only after all of its dependencies."""

import random
from typing import Any

import anyio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from taskloom import Plan, Ref, Task, TaskId, execute, tool


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
