"""The LLMCompiler plan language, parsed incrementally.

A plan is a list of numbered tool calls, optionally with thoughts:

    Thought: Look both countries up at once, then add.
    1. country("France")
    2. country("Germany")
    3. math("$1.population + $2.population")
    4. join()<END_OF_PLAN>

`PlanParser.feed()` takes chunks of any size (a token, a line, a whole plan)
and returns each task the moment its line is complete, so a scheduler can
start it while the planner is still writing. Lines that are neither tasks
nor thoughts (prose, code fences) are ignored; a line that starts like a task
(`3.`, `-1.`) must be one, and its number a whole number from 1 of at most
nine digits. `join` ends the plan, so no tool may take that name.
"""

from __future__ import annotations

import codecs
import re
from collections.abc import AsyncIterable, AsyncIterator, Collection, Iterable, Mapping

from taskloom._ids import TaskId
from taskloom._text import SURROGATE, quoted
from taskloom.errors import PlanError, Position, UserError
from taskloom.plan._args import MAX_ID_DIGITS, guard_with_refs, parse_args, task_number
from taskloom.plan._check import bind_task
from taskloom.plan._model import Task
from taskloom.tools import Tool

__all__ = ["END_OF_PLAN", "JOIN", "PlanParser", "parse_stream"]

END_OF_PLAN = "<END_OF_PLAN>"
"""Marker a planner writes after the last line; anything after it is ignored."""
JOIN = "join"
"""The pseudo-tool that ends a plan: `4. join()`."""

# A task number is written 0-9 (Python's `\d` also matches "١" or "１"); a line
# numbered with other digits is caught by _NUMBERED and refused.
# A tool name is any that MCP allows (`get-time`, `db.query`), ASCII only.
_TASK_HEAD = re.compile(r"\s*([0-9]+)\s*[.)]\s*([A-Za-z0-9_.\-]+)\s*\(")
_NUMBERED = re.compile(r"\s*([-+]?\d+)\s*[.)](?:\s|$)")
_BOM = "\ufeff"
_THOUGHT = re.compile(r"\s*Thought\s*:\s*(.*)", re.IGNORECASE)
_TRAILER = re.compile(r"\s*(?:#.*)?$")
_IF = re.compile(r"\s+if(?=[\s$(]|$)")


class PlanParser:
    """Turns streamed plan text into validated tasks, one line at a time."""

    def __init__(
        self,
        *,
        tools: Iterable[Tool] | Mapping[str, Tool] | None = None,
        known: Collection[TaskId] = (),
        forward_refs: bool = False,
        first_line: int = 1,
        rewritable: Collection[TaskId] = (),
    ) -> None:
        """Start a parser.

        Args:
            tools: when given, each task is checked against its tool as it arrives.
            known: ids of tasks from earlier plans that references may point to.
            forward_refs: accept references to tasks not seen yet; the caller
                checks the whole plan at the end (`Plan.parse` does).
            first_line: the line number of the first line fed, for messages.
            rewritable: ids among `known` that a line may write once more (a
                plan written again after an error): such a task is returned
                like any other, and the caller compares it with the one it holds.

        """
        from taskloom.plan._plan import tool_map

        self._tools = tool_map(tools)
        self._seen: set[TaskId] = set(known)
        self._rewritable = set(rewritable)
        self._forward_refs = forward_refs
        self._line_no = first_line - 1
        self._buffer = ""
        self._scanned = 0
        self._decoder = codecs.getincrementaldecoder("utf-8")("strict")
        self._thought: str | None = None
        self._pending: PlanError | None = None
        self.done = False
        """True once `join()` or `<END_OF_PLAN>` was read; later text is ignored."""
        self.joined = False
        """True once the plan's `join()` line was read."""
        self.text = ""
        """All text fed so far, decoded."""

    def feed(self, chunk: str | bytes) -> list[Task]:
        """Take the next piece of plan text.

        Returns:
            The tasks whose lines this chunk completed, in order.

        Raises:
            PlanError: for the first malformed line, invalid bytes, or a
                task that fails validation. When good lines came before the
                bad one in the same chunk, their tasks are returned first and
                the error is raised by the next `feed()` or `close()`. Tasks
                already returned stay valid.

        """
        self._raise_pending()
        if isinstance(chunk, bytes):
            chunk = self._decode(chunk, final=False)
        elif not isinstance(chunk, str):
            raise UserError(f"plan text must be str or bytes, not {type(chunk).__name__}")
        if not self.text and chunk.startswith(_BOM):
            chunk = chunk[1:]  # editors on Windows begin UTF-8 files with one; it is no text
            if not chunk:
                return []  # the next chunk is still the start of the text
        self.text += chunk
        if self.done:
            return []
        self._buffer += chunk
        tasks: list[Task] = []
        while not self.done:
            newline = self._buffer.find("\n", self._scanned)
            if newline < 0:
                # Remember how far we looked, so a 1 MB line costs one scan.
                self._scanned = len(self._buffer)
                break
            line = self._buffer[:newline]
            self._buffer = self._buffer[newline + 1 :]
            self._scanned = 0
            try:
                task = self._line(line.rstrip("\r"))
            except PlanError as exc:
                if not tasks:
                    raise
                # Hand out the good tasks of this chunk now; the error comes next call.
                self._pending = exc
                self.done = True
                return tasks
            if task is not None:
                tasks.append(task)
        return tasks

    def _raise_pending(self) -> None:
        if self._pending is not None:
            error, self._pending = self._pending, None
            raise error

    def close(self) -> list[Task]:
        """Say that no more text will come and parse the last, unterminated line.

        Returns:
            The task on the last line, if there was one.

        Raises:
            PlanError: if the last line is malformed (a truncated call, say).

        """
        self._raise_pending()
        tail = self._decode(b"", final=True)
        if tail:
            self.feed(tail)
        if self.done or not self._buffer.strip():
            self.done = True
            return []
        line, self._buffer = self._buffer, ""
        task = self._line(line)
        self.done = True
        return [task] if task is not None else []

    def _decode(self, data: bytes, *, final: bool) -> str:
        try:
            return self._decoder.decode(data, final=final)
        except UnicodeDecodeError as exc:
            before = self._buffer + exc.object[: exc.start].decode("utf-8", errors="replace")
            line = self._line_no + 1 + before.count("\n")
            column = len(before) - (before.rfind("\n") + 1) + 1
            bad = exc.object[exc.start : exc.start + 1]
            raise PlanError(
                f"the plan is not valid UTF-8: byte {bad!r} cannot be decoded ({exc.reason})",
                position=Position(line, column),
            ) from None

    def _line(self, line: str) -> Task | None:
        self._line_no += 1
        half = SURROGATE.search(line)
        if half is not None:  # a str from Python or a model's JSON may hold one; no file can
            raise PlanError(
                "the line holds half of a surrogate pair (U+D800-U+DFFF), which is no character",
                position=Position(self._line_no, half.start() + 1),
            )
        if END_OF_PLAN in line:
            line = line[: line.index(END_OF_PLAN)]
            self.done = True
        head = _TASK_HEAD.match(line)
        if head is None:
            self._prose(line)
            return None
        position = Position(self._line_no, head.start(1) + 1)
        task_id, tool = self._task_id(head.group(1), position, line), head.group(2)
        parsed = parse_args(line, head.end(), line=self._line_no, task_id=task_id)
        condition = _IF.match(line, parsed.end)
        guard, refs = None, parsed.refs
        if condition is not None and tool != JOIN:
            guard, guard_refs = guard_with_refs(
                line, condition.end(), line=self._line_no, task_id=task_id
            )
            refs = parsed.refs + guard_refs
        elif not _TRAILER.match(line, parsed.end):
            junk = len(line) - len(line[parsed.end :].lstrip())
            raise PlanError(
                "unexpected text after the call's closing parenthesis",
                task_id=task_id,
                position=Position(self._line_no, junk + 1),
                line_text=line,
            )
        if tool == JOIN:
            self.joined = self.done = True
            return None
        for dep, column in refs:
            if dep == task_id:
                raise PlanError(
                    f"task {task_id} refers to its own result (${dep})",
                    task_id=task_id,
                    position=Position(self._line_no, column + 1),
                    line_text=line,
                )
            if dep not in self._seen and not self._forward_refs:
                raise PlanError(
                    f"${dep} refers to task {dep}, which does not exist yet; "
                    "a task may only use the results of tasks written before it",
                    task_id=task_id,
                    position=Position(self._line_no, column + 1),
                    line_text=line,
                )
        if task_id in self._rewritable:
            self._rewritable.discard(task_id)  # written again once; a second time is a repeat
        elif task_id in self._seen:
            raise PlanError(
                f"task id {task_id} is used twice; every task needs its own number",
                task_id=task_id,
                position=position,
                line_text=line,
            )
        task = Task(
            id=task_id,
            tool=tool,
            args=tuple(parsed.args),
            kwargs=parsed.kwargs,
            thought=self._thought,
            position=position,
            guard=guard,
        )
        if self._tools:
            bind_task(task, self._tools)
        self._thought = None
        self._seen.add(task_id)
        return task

    def _task_id(self, number: str, position: Position, line: str) -> TaskId:
        """The id of a task line's number; only whole numbers from 1 are task numbers."""
        digits = number.isascii() and number.isdigit()  # a sign is not a digit
        task_id = task_number(number) if digits else None
        if task_id is not None and task_id != "0":
            return task_id
        if digits and task_id is None:
            why = f"a task number has at most {MAX_ID_DIGITS} digits"
        elif not digits and number.isdigit():
            why = "task numbers are written with the digits 0-9"
        else:
            why = "task numbers are whole numbers from 1"
        raise PlanError(
            f"{quoted(number)} is not a task number; {why}", position=position, line_text=line
        )

    def _prose(self, line: str) -> None:
        thought = _THOUGHT.match(line)
        if thought:
            self._thought = thought.group(1).strip() or None
            return
        numbered = _NUMBERED.match(line)
        if numbered:
            position = Position(self._line_no, numbered.start(1) + 1)
            raise PlanError(
                "expected a tool call like `3. tool(arguments)`",
                task_id=self._task_id(numbered.group(1), position, line),
                position=position,
                line_text=line,
            )


async def parse_stream(
    chunks: AsyncIterable[str | bytes],
    *,
    tools: Iterable[Tool] | Mapping[str, Tool] | None = None,
    known: Collection[TaskId] = (),
) -> AsyncIterator[Task]:
    """Parse a stream of plan text, yielding each task as soon as its line ends.

    Raises:
        PlanError: at the first malformed line, after yielding every task before it.

    """
    parser = PlanParser(tools=tools, known=known)
    async for chunk in chunks:
        for task in parser.feed(chunk):
            yield task
        if parser.done:
            break
    for task in parser.close():
        yield task
