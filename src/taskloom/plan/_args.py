r"""The argument list of one plan line: literals, references and strings with references.

The plan language is a small subset of Python call syntax plus references:

    args     := [arg ("," arg)* [","]]
    arg      := NAME "=" value | value
    value    := string | number | ref | list | tuple | dict | constant
    ref      := "$" ID ["?"] refpath | "${" ID ["?"] refpath "}"
    ID       := DIGITS | NAME      (a NAME is an input of a sub-plan: `$city`)
    refpath  := path ["[*]" path]
    path     := ("." NAME | "." DIGITS | "[" DIGITS "]" | "[" string "]")*

`[*]` makes a map reference: the task runs once per item of the list before
it, and the path after it is followed in each item. `?` makes a reference
optional: a task skipped by a false condition stands for None (outside
strings only; in a string, `?` after a reference is text). After the call, a
line may hold a condition, `if` and a Python expression over references
(`parse_guard`), evaluated later by simpleeval.

Inside a string, `$3` and `${3}` are references too, except where they are
plainly money: `$1,000` and `$2.50` stay text. `\$` writes a literal dollar.
A reference outside quotes (`$3`) passes the output itself; one inside a
string is replaced by the output as text. A string that is exactly one
reference (`"$3"`) is text where the parameter's type is text (`str`, a
`Literal` of strings, or those inside `Optional`, lists and dict values) and
the output itself everywhere else (see `bind_task`). Task numbers and
indexes have at most nine digits, and values nest at most 64 deep.
It is parsed by hand rather than by `ast` because `$` is not Python, and so
that every error can point at its column.
"""

from __future__ import annotations

import ast
import re
from typing import Any, NoReturn

from taskloom._ids import TaskId
from taskloom._text import QUOTE_LIMIT, SURROGATE, quoted
from taskloom.errors import PlanError, Position
from taskloom.plan._model import Guard, Ref, Template

__all__ = [
    "GUARD_FUNCTIONS",
    "MAX_DEPTH",
    "MAX_ID_DIGITS",
    "ParsedArgs",
    "parse_args",
    "parse_bare_ref",
    "parse_guard",
    "task_number",
]

GUARD_FUNCTIONS: dict[str, Any] = {
    "len": len,
    "abs": abs,
    "min": min,
    "max": max,
    "round": round,
    "str": str,
    "int": int,
    "float": float,
    "bool": bool,
}
"""The functions a condition may call (`if len($2.hits) > 0`); nothing else is in scope."""

MAX_DEPTH = 64
"""How deeply lists, tuples and dicts may nest in an argument."""
MAX_ID_DIGITS = 9
"""Digits a task number, or an index in a reference, may have."""
# ASCII only: Python's `\d` also matches "١" or "１", which no plan means as a number.
_NUMBER = re.compile(r"[-+]?(?:\d[\d_]*\.?[\d_]*|\.\d[\d_]*)(?:[eE][-+]?\d+)?", re.ASCII)
_NAME = re.compile(r"[A-Za-z_]\w*")
_DIGITS = re.compile(r"\d+", re.ASCII)
_SPACE = re.compile(r"\s*")
_NONZERO_DIGIT = re.compile("[1-9]")
_MONEY_AFTER = re.compile(r",\d{3}(?!\d)|\.\d", re.ASCII)
_CONSTANTS: dict[str, Any] = {
    "True": True,
    "False": False,
    "None": None,
    "true": True,
    "false": False,
    "null": None,
}
_HIGH_SURROGATE, _LOW_SURROGATE, _LAST_SURROGATE = "\ud800", "\udc00", "\udfff"
_HALF_PAIR = "the string holds half of a surrogate pair (U+D800-U+DFFF), which is no character"
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "0": "\0", "\\": "\\", '"': '"', "'": "'", "$": "$"}


def task_number(digits: str) -> TaskId | None:
    """The id a written task number stands for (`007` is task 7).

    Returns:
        The id, or None when the number has more than `MAX_ID_DIGITS` digits.

    """
    significant = digits.lstrip("0") or "0"
    if len(significant) > MAX_ID_DIGITS:
        return None
    return TaskId(str(int(significant)))


class ParsedArgs:
    """The arguments of one call, and where each reference was written."""

    __slots__ = ("args", "end", "kwargs", "refs")

    def __init__(self) -> None:
        self.args: list[Any] = []
        self.kwargs: dict[str, Any] = {}
        self.refs: list[tuple[TaskId, int]] = []
        """Each referenced task id with the column (0-based) where it was written."""
        self.end = 0
        """Index just past the closing parenthesis."""


def parse_args(text: str, start: int, *, line: int, task_id: str) -> ParsedArgs:
    """Parse the arguments that follow the `(` at `text[start - 1]`.

    Returns:
        The positional and keyword arguments, and the index past the `)`.

    Raises:
        PlanError: for anything that is not a well-formed argument list.

    """
    return _Scanner(text, line, task_id).call_args(start)


def parse_guard(text: str, start: int = 0, *, line: int = 1, task_id: str) -> Guard:
    """Parse the condition at `text[start:]`, up to the end of the line or a `#` comment.

    The condition is a Python expression over references (`$3.status != "ok"`,
    `len($2.hits) > 0 and $4?`) and the functions of `GUARD_FUNCTIONS`.

    Returns:
        The guard, its references in the order they were written.

    Raises:
        PlanError: for an empty or malformed expression, a name that is no
            reference or allowed function, or a map reference (`[*]`).

    """
    return guard_with_refs(text, start, line=line, task_id=task_id)[0]


def guard_with_refs(
    text: str, start: int, *, line: int, task_id: str
) -> tuple[Guard, list[tuple[TaskId, int]]]:
    """`parse_guard`, and each referenced task id with the column where it was written."""
    scanner = _Scanner(text, line, task_id)
    return scanner.guard(start), scanner.out.refs


class _Scanner:
    def __init__(self, text: str, line: int, task_id: str) -> None:
        self.text = text
        self.line = line
        self.task_id = task_id
        self.pos = 0
        self.out = ParsedArgs()

    def fail(self, reason: str, at: int | None = None) -> NoReturn:
        column = (self.pos if at is None else at) + 1
        raise PlanError(
            reason,
            task_id=self.task_id,
            position=Position(self.line, column),
            line_text=self.text,
        )

    def skip_space(self) -> None:
        match = _SPACE.match(self.text, self.pos)
        assert match is not None  # \s* always matches
        self.pos = match.end()

    def peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def call_args(self, start: int) -> ParsedArgs:
        self.pos = start
        seen_keyword = False
        while True:
            self.skip_space()
            if self.peek() == ")":
                self.pos += 1
                self.out.end = self.pos
                return self.out
            if not self.peek():
                self.fail("the line ends before the call's closing parenthesis")
            name = _NAME.match(self.text, self.pos)
            after = name.end() if name else self.pos
            after_space = _SPACE.match(self.text, after)
            assert after_space is not None
            eq = after_space.end()
            if name and self.text.startswith("=", eq) and not self.text.startswith("==", eq):
                key = name.group()
                if key in self.out.kwargs:
                    self.fail(f"argument {quoted(key)} is given twice")
                self.pos = eq + 1
                self.out.kwargs[key] = self.value(0)
                seen_keyword = True
            else:
                if seen_keyword:
                    self.fail("a positional argument may not follow a keyword argument")
                self.out.args.append(self.value(0))
            self.skip_space()
            if self.peek() == ",":
                self.pos += 1
            elif self.peek() != ")":
                self.unexpected("',' or ')'")

    def unexpected(self, wanted: str) -> NoReturn:
        char = self.peek()
        if not char:
            self.fail(f"the line ends where {wanted} was expected")
        self.fail(f"expected {wanted}, found {char!r}")

    def value(self, depth: int) -> Any:
        if depth > MAX_DEPTH:
            self.fail(f"values are nested more than {MAX_DEPTH} deep")
        self.skip_space()
        char = self.peek()
        if char in ('"', "'"):
            return self.string(char)
        if char == "$":
            return self.ref()
        if char == "[":
            return self.sequence("]", depth)
        if char == "(":
            return tuple(self.sequence(")", depth))
        if char == "{":
            return self.mapping(depth)
        number = _NUMBER.match(self.text, self.pos)
        if number and number.group() not in ("+", "-"):
            return self.number(number)
        name = _NAME.match(self.text, self.pos)
        if name:
            word = name.group()
            if word in _CONSTANTS:
                self.pos = name.end()
                return _CONSTANTS[word]
            example = word if len(word) <= QUOTE_LIMIT else "..."
            self.fail(f'unquoted text {quoted(word)}; write strings in quotes, like "{example}"')
        self.unexpected("a value")

    def number(self, match: re.Match[str]) -> int | float:
        token = match.group()
        self.pos = match.end()
        try:
            value: int | float = float(token) if any(c in token for c in ".eE") else int(token)
        except ValueError:
            self.fail(f"{quoted(token)} is not a usable number", at=match.start())
        if value in (float("inf"), float("-inf")):
            self.fail(f"{quoted(token)} is too large for a number", at=match.start())
        if value == 0 and _NONZERO_DIGIT.search(token.lower().partition("e")[0]):
            # 1e-400 reads as 0.0: the plan would run with a value it never wrote.
            self.fail(f"{quoted(token)} is too small for a number", at=match.start())
        return value

    def sequence(self, close: str, depth: int) -> list[Any]:
        items: list[Any] = []
        self.pos += 1
        while True:
            self.skip_space()
            if self.peek() == close:
                self.pos += 1
                return items
            items.append(self.value(depth + 1))
            self.skip_space()
            if self.peek() == ",":
                self.pos += 1
            elif self.peek() != close:
                self.unexpected(f"',' or {close!r}")

    def mapping(self, depth: int) -> dict[Any, Any]:
        items: dict[Any, Any] = {}
        self.pos += 1
        while True:
            self.skip_space()
            if self.peek() == "}":
                self.pos += 1
                return items
            key_at = self.pos
            key = self.value(depth + 1)
            if not isinstance(key, str | int | float | bool) and key is not None:
                self.fail("a dictionary key must be a plain string or number", at=key_at)
            self.skip_space()
            if self.peek() != ":":
                self.unexpected("':'")
            self.pos += 1
            items[key] = self.value(depth + 1)
            self.skip_space()
            if self.peek() == ",":
                self.pos += 1
            elif self.peek() != "}":
                self.unexpected("',' or '}'")

    def ref(self, *, in_string: bool = False) -> Ref:
        at = self.pos
        braced = self.text.startswith("${", at)
        self.pos += 2 if braced else 1
        digits = _DIGITS.match(self.text, self.pos)
        name = None if digits else _NAME.match(self.text, self.pos)
        if name:  # `$city`: an input of a plan that is called as a tool (a sub-plan)
            task = TaskId(name.group())
            self.pos = name.end()
        elif not digits:
            self.fail(
                "'$' must be followed by a task number, like $1 or ${1} "
                "(or, in a sub-plan, by an input's name: $city)",
                at=at,
            )
        else:
            number = task_number(digits.group())
            if number is None:
                self.fail(f"the task number after '$' has more than {MAX_ID_DIGITS} digits", at=at)
            task = number
            self.pos = digits.end()
        # `?` after a reference in a string is a question mark ("how big is $1?").
        optional = not in_string and self.peek() == "?"
        if optional:
            self.pos += 1
        path, each = self.path()
        if braced:
            if self.peek() != "}":
                self.unexpected("'}' closing the reference")
            self.pos += 1
        if each is not None and optional:
            self.fail("a map reference ([*]) cannot be optional (?)", at=at)
        ref = Ref(task, tuple(path), None if each is None else tuple(each), optional)
        self.out.refs.append((ref.task, at))
        return ref

    def path(self) -> tuple[list[str | int], list[str | int] | None]:
        """The steps after a task number; those after `[*]` apart (None if none)."""
        path: list[str | int] = []
        before: list[str | int] | None = None
        while True:
            char = self.peek()
            if char == ".":
                name = _NAME.match(self.text, self.pos + 1)
                index = _DIGITS.match(self.text, self.pos + 1)
                if name:
                    path.append(name.group())
                    self.pos = name.end()
                elif index:
                    path.append(self.index(index))
                    self.pos = index.end()
                else:
                    break
            elif char == "[":
                star = self.pos
                self.pos += 1
                self.skip_space()
                quote = self.peek()
                if quote == "*":
                    if before is not None:
                        self.fail("a reference may hold [*] only once", at=star)
                    self.pos += 1
                    before, path = path, []
                elif quote in ('"', "'"):
                    key = self.string(quote)
                    if not isinstance(key, str):
                        self.fail("a field name may not contain a reference")
                    path.append(key)
                else:
                    index = _DIGITS.match(self.text, self.pos)
                    if not index:
                        self.unexpected("an index, a quoted key or *")
                    path.append(self.index(index))
                    self.pos = index.end()
                self.skip_space()
                if self.peek() != "]":
                    self.unexpected("']'")
                self.pos += 1
            else:
                break
        return (path, None) if before is None else (before, path)

    def index(self, digits: re.Match[str]) -> int:
        if len(digits.group().lstrip("0")) > MAX_ID_DIGITS:
            self.fail(f"an index has more than {MAX_ID_DIGITS} digits", at=digits.start())
        return int(digits.group())

    def string(self, quote: str) -> str | Template:
        start = self.pos
        self.pos += 1
        stop = re.compile(r"[\\$" + quote + "]")
        parts: list[str | Ref] = []
        chunk: list[str] = []
        text = self.text
        while True:
            hit = stop.search(text, self.pos)
            if hit is None:
                self.fail(f"string opened here is never closed (missing {quote})", at=start)
            chunk.append(text[self.pos : hit.start()])
            half = SURROGATE.search(text, self.pos, hit.start())
            if half is not None:  # from the JSON form or the Python API; text plans check lines
                self.fail(_HALF_PAIR, at=half.start())
            self.pos = hit.start()
            char = hit.group()
            if char == quote:
                self.pos += 1
                break
            if char == "\\":
                chunk.append(self.escape())
                continue
            ref = self.string_ref()
            if ref is None:
                chunk.append("$")
                self.pos += 1
                continue
            if "".join(chunk):
                parts.append("".join(chunk))
            chunk = []
            parts.append(ref)
        if "".join(chunk):
            parts.append("".join(chunk))
        if not parts:
            return ""
        if len(parts) == 1 and isinstance(parts[0], str):
            return parts[0]
        # A string that is only a reference ("$1") stays a Template: it was
        # written as text, and `bind_task` decides by the parameter's type.
        return Template(tuple(parts))

    def guard(self, start: int) -> Guard:
        text = self.text
        self.pos = start
        self.skip_space()
        begin = self.pos
        source: list[str] = []
        where: list[int] = []
        """For each character of `source`, where in `text` it comes from."""
        refs: list[Ref] = []
        names: list[str] = []
        while self.pos < len(text):
            char = text[self.pos]
            if char == "#":
                break
            if char in ('"', "'"):
                close = self.python_string_end(char)
                source.append(text[self.pos : close])
                where.extend(range(self.pos, close))
                self.pos = close
            elif char == "$":
                at = self.pos
                ref = self.ref()
                if ref.each is not None:
                    self.fail("a condition cannot map ([*]); map in the call's arguments", at=at)
                name = f"_ref{len(refs)}"
                refs.append(ref)
                names.append(name)
                source.append(f" {name} ")  # `$1and` must not read as one name
                where.extend([at] * (len(name) + 2))
            else:
                source.append(char)
                where.append(self.pos)
                self.pos += 1
        written = text[begin : self.pos].rstrip()
        if not written:
            self.fail("the condition after 'if' is empty; write one like `if $1.ok`", at=begin)
        code = "".join(source)
        try:
            tree = ast.parse(code.strip(), mode="eval")
        except SyntaxError as exc:
            # Python puts an error at the end at offset 0 (or past the end).
            offset = len(code) - len(code.lstrip()) + (exc.offset or 0) - 1
            at = where[offset] if exc.offset and offset < len(where) else self.pos
            self.fail(f"the condition is not a valid expression: {exc.msg}", at=at)
        except (RecursionError, MemoryError, ValueError):
            self.fail("the condition is too deeply nested", at=begin)
        lead = len(code) - len(code.lstrip())
        for node in ast.walk(tree):
            if isinstance(node, ast.Name) and node.id not in names:
                if node.id not in GUARD_FUNCTIONS:
                    at = where[min(lead + node.col_offset, len(where) - 1)]
                    self.fail(
                        f"unknown name {quoted(node.id)} in the condition; refer to results "
                        'as $N and write text in quotes, like $1.status == "ok"',
                        at=at,
                    )
        return Guard(text=written, source=code.strip(), names=tuple(names), refs=tuple(refs))

    def python_string_end(self, quote: str) -> int:
        """The index just past the Python string literal that opens at `pos`."""
        index = self.pos + 1
        while index < len(self.text):
            char = self.text[index]
            if char == "\\":
                index += 2
                continue
            if char == quote:
                return index + 1
            index += 1
        self.fail(f"string opened here is never closed (missing {quote})")

    def escape(self) -> str:
        code = self.text[self.pos + 1 : self.pos + 2]
        if code in _ESCAPES:
            self.pos += 2
            return _ESCAPES[code]
        if code in ("u", "x"):
            at = self.pos
            char = self.hex_escape(code)
            if _HIGH_SURROGATE <= char < _LOW_SURROGATE and self.text.startswith("\\u", self.pos):
                # A pair of \u escapes, as JSON writes a character beyond U+FFFF.
                low = self.hex_escape("u")
                if _LOW_SURROGATE <= low <= _LAST_SURROGATE:
                    return chr(0x10000 + ((ord(char) - 0xD800) << 10) + ord(low) - 0xDC00)
            if _HIGH_SURROGATE <= char <= _LAST_SURROGATE:
                self.fail(_HALF_PAIR, at=at)
            return char
        if not code:
            self.fail("the line ends inside a string escape")
        self.pos += 2
        return "\\" + code

    def hex_escape(self, code: str) -> str:
        r"""The character of the `\u` or `\x` escape at `pos`; moves past it."""
        width = 4 if code == "u" else 2
        digits = self.text[self.pos + 2 : self.pos + 2 + width]
        if len(digits) == width and all(c in "0123456789abcdefABCDEF" for c in digits):
            self.pos += 2 + width
            return chr(int(digits, 16))
        self.fail(f"bad \\{code} escape", at=self.pos)

    def string_ref(self) -> Ref | None:
        """A reference at `$` inside a string, or None where the `$` is plain text."""
        at = self.pos
        if self.text.startswith("${", at):
            if _DIGITS.match(self.text, at + 2) or _NAME.match(self.text, at + 2):
                return self.ref(in_string=True)
            return None
        # A name after a bare `$` in a string is text ("$USD"); an input is `${city}`.
        digits = _DIGITS.match(self.text, at + 1)
        if not digits or _MONEY_AFTER.match(self.text, digits.end()):
            return None
        return self.ref(in_string=True)


def parse_bare_ref(value: str, *, task_id: str) -> Ref | None:
    """The reference that `value` is, written as outside quotes (`$5?.status`); else None.

    The JSON form has only strings, so an optional reference is a string that
    is exactly one (`"$5?"`); elsewhere `?` after a reference is text.
    """
    scanner = _Scanner(value, 1, task_id)
    if not value.startswith("$"):
        return None
    try:
        ref = scanner.ref()
    except PlanError:
        return None
    return ref if scanner.pos == len(value) else None


def parse_string(value: str, *, task_id: str) -> str | Template:
    r"""Find the references inside an already-decoded string (from the JSON form).

    The rules are those of strings in the plan language; `\$` keeps a dollar literal.

    Raises:
        PlanError: if a reference inside the string is malformed.

    """
    escaped = re.sub(r"\\(?!\$)", r"\\\\", value).replace('"', '\\"').replace("\n", "\\n")
    return _Scanner(f'"{escaped}"', 1, task_id).string('"')
