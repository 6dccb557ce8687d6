r"""GBNF grammars under which even a tiny model writes plans and decisions that parse.

llama.cpp (and servers built on it) can constrain sampling with a GBNF
grammar. `plan_grammar` describes the plan language of `taskloom.plan.text`
for one set of tools: every line is a thought or a call of a known tool with
arguments of the right kinds, and the plan ends with `N. join()<END_OF_PLAN>`.

GBNF cannot count, so the task numbers are enumerated instead: one rule per
step, each writing its own number and allowing references only to the tasks
before it (and to `known_ids` from earlier plans):

    step-2 ::= thought? "2. " call-2 "\n" step-3 | thought? "2. join()" end
    ref-2  ::= "$" ("1") path each?

A plan from this grammar therefore never refers forward, to itself, or to a
task that does not exist, and its ids run consecutively from `first_id`.
Inside strings a literal dollar is written `\$`; a raw `$` always starts a
reference. `joiner_grammar` describes LLMCompiler's joiner reply:
`Thought: ...` then `Action: Finish(answer)` or `Action: Replan(reason)`;
`react_grammar` one ReAct step: a thought, then one call or `Finish(answer)`.

Everything here builds strings; nothing imports llama.cpp.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from taskloom.agent._limits import GrammarLimits
from taskloom.errors import UserError
from taskloom.plan.text import END_OF_PLAN, JOIN
from taskloom.tools import Tool

__all__ = ["joiner_grammar", "plan_grammar", "react_grammar"]

_Schema = Mapping[str, Any]
_SEP = '", "'
_MAX_INDEX_DIGITS = 6
"""Longest list index after a reference (`$1.items[12]`): no result shown has a million items."""

# Text characters: no control characters (so no newline) and no `<E`, so no
# line can contain `<END_OF_PLAN>` and be cut short by the parser.
_TEXT_CHAR = '[^\\x00-\\x1f<] | "<" [^\\x00-\\x1f<E]'
# String characters exclude the quote, the backslash and a raw `$`; `nchar`
# is one that is not a digit either (but may follow a `<`). Digits come in
# runs of at most `GrammarLimits.max_digits`, and a string holds at most
# `max_parts` runs and references: the 270M model can loop inside a number
# ("1000000000...") and each digit is one token, so an unbounded run used up
# the plan's token budget inside one string.
_STRING_CHAR_NO_DIGIT = (
    '[^"\\\\\\x00-\\x1f$<0-9] | "<" [^"\\\\\\x00-\\x1f$<E] | "\\\\" ["\\\\ntr0\'$]'
)
# After a reference inside a string: ASCII punctuation or space only. A digit
# would extend the number (`$1` + `2` reads as `$12`; Python's `\d` also takes
# other scripts' digits), `[` would start an index, and a letter would make
# the end of a field name ambiguous.
_AFTER_REF_CHAR = (
    '[ !#%&\'()*+,./:;=>?@\\]^`{|}~-] | "<" [^"\\\\\\x00-\\x1f$<E] | "\\\\" ["\\\\ntr0\'$]'
)

# An answer on one line whose parentheses, one level deep, balance: so the
# parenthesis that closes `Finish(` is never in doubt.
_ANSWER_RULES = {
    "achar": 'plain | "(" plain{0,100} ")"',
    "plain": '[^()\\x00-\\x1f<] | "<" [^()\\x00-\\x1f<E]',
}

_NOT_TYPES = frozenset({"title", "description", "default", "examples"})
"""Schema keys that do not change which values fit."""


def _shared_rules(limits: GrammarLimits) -> dict[str, str]:
    """The rules every plan and ReAct grammar has, sized by `limits`."""
    rules = {
        "end": f"{json.dumps(END_OF_PLAN)}",
        "tchar": _TEXT_CHAR,
        "thought": f'"Thought: " tchar{{1,{limits.max_thought}}} "\\n"',
        "ident": f"[A-Za-z_] [A-Za-z0-9_]{{0,{limits.max_field - 1}}}",
        "path": (f'("." ident | "[" [0-9]{{1,{_MAX_INDEX_DIGITS}}} "]"){{0,{limits.max_path}}}'),
        # `$2.names[*]` (and `$2.hits[*].url`): one call per item of a list not seen yet.
        "each": '"[*]" path',
        "digits": f"[0-9]{{1,{limits.max_digits}}}",
        "int": '"-"? digits',
        "num": 'int ("." digits)?',
        "bool": '"True" | "False"',
        "nchar": _STRING_CHAR_NO_DIGIT,
        "rchar": _AFTER_REF_CHAR,
        # One rule for every run of text, so llama.cpp expands its bound once.
        "words": f"nchar{{1,{limits.max_text}}}",
    }
    # A string without references: runs of text and of digits, taking turns
    # (two runs of one kind side by side would be one run read two ways), at
    # most max_parts runs of digits. `lit-k`: after text, k numbers may follow;
    # `lit-d-k`: after digits.
    parts = limits.max_parts
    rules["str"] = f'"\\"" words?{f" lit-{parts}" if parts else ""} "\\""'
    for k in range(parts, 0, -1):
        after_digits = f"lit-d-{k - 1}"
        rules[f"lit-{k}"] = f"(digits {after_digits})?"
        rules[after_digits] = f"(words lit-{k - 1})?" if k > 1 else "words?"
    return rules


def plan_grammar(
    tools: Sequence[Tool],
    *,
    first_id: int = 1,
    max_tasks: int = 12,
    min_tasks: int = 1,
    known_ids: Iterable[int | str] = (),
    limits: GrammarLimits | None = None,
    guards: bool = True,
) -> str:
    """Build a GBNF grammar for plans that call `tools`.

    A plan is up to `max_tasks` numbered calls, each optionally preceded by a
    `Thought: ...` line, then a numbered `join()` and `<END_OF_PLAN>`. Each
    call names one of the tools and passes its required parameters in order
    (positionally, or all by keyword), then any optional ones by keyword.
    Values follow the parameter's JSON Schema: strings, numbers, booleans,
    `None` where the type is nullable, enum members, lists and dicts; a bare
    reference `$N` or `$N.field` fits any parameter.

    Args:
        tools: the tools a plan may call.
        first_id: the number of the plan's first task.
        max_tasks: at most this many calls before `join()`.
        min_tasks: at least this many calls before `join()`.
        known_ids: ids of tasks from earlier plans that references may use.
        limits: how long thoughts, strings, numbers and references may be;
            by default `GrammarLimits()`.
        guards: whether a call may carry a condition on earlier results:
            `city($2.capital) if $2.population > $1.population`, one or two
            comparisons of a reference with a reference or a number. The
            scheduler compares; a small model only copies the form.

    Returns:
        The grammar, whose start rule is `root`.

    Raises:
        UserError: if there are no tools, a tool is named `join`, the numbers
            are out of range, or a known id collides with a new one.

    """
    if not tools:
        raise UserError("a plan grammar needs at least one tool")
    if any(t.name == JOIN for t in tools):
        raise UserError(f"no tool may be named {JOIN!r}: it ends the plan")
    if first_id < 0 or not 0 <= min_tasks <= max_tasks or max_tasks < 1:
        raise UserError(
            "need first_id >= 0 and 0 <= min_tasks <= max_tasks >= 1, got "
            f"first_id={first_id}, min_tasks={min_tasks}, max_tasks={max_tasks}"
        )
    known = sorted({_task_number(k) for k in known_ids})
    last = first_id + max_tasks  # the number of the join line
    if any(first_id <= k <= last for k in known):
        raise UserError(f"known ids {known} collide with the new ids {first_id}..{last}")
    builder = _PlanRules(tools, limits or GrammarLimits())
    builder.rules["root"] = f"step-{first_id}"
    for number in range(first_id, last):
        earlier = [*known, *range(first_id, number)]
        call = builder.call_rule(number, earlier)
        if guards and earlier:
            call += f" {builder.guard_rule(number, earlier)}?"
        go_on = f'thought? "{number}. " {call} "\\n" step-{number + 1}'
        stop = f'thought? "{number}. {JOIN}()" end'
        may_stop = number - first_id >= min_tasks
        builder.rules[f"step-{number}"] = f"{go_on} | {stop}" if may_stop else go_on
    builder.rules[f"step-{last}"] = f'thought? "{last}. {JOIN}()" end'
    return builder.render()


def joiner_grammar(
    *,
    answers: Sequence[str] = (),
    references: Sequence[str] = (),
    max_thought: int = 200,
    max_answer: int = 300,
) -> str:
    """Build a GBNF grammar for the joiner's decision, LLMCompiler style.

    The reply is two lines: `Thought: <text>` and then either
    `Action: Finish(<answer>)` or `Action: Replan(<reason>)`. The answer may
    contain parentheses one level deep, as long as they are balanced, so the
    parenthesis that closes the action is unambiguous.

    Args:
        answers: when given (or `references` are), the answer is grounded:
            one to four items separated by ", ", each one of these texts
            (values read from the results) or one of `references`, so a
            small model cannot finish with a number it made up or copied
            from an example. Texts that could not be told apart from the
            action's own syntax (a newline, unbalanced parentheses) or from
            a reference (`$1`) are left out; if nothing is left, the answer
            is free text.
        references: the references (`$1`, `$1.capital`, `$2.items[0].name`)
            that name real results, which the agent renders into the answer.
            Free text may hold references too; only here are they checked.
        max_thought: the longest thought, in characters.
        max_answer: the most characters or parenthesised groups in the answer.

    Returns:
        The grammar, whose start rule is `root`.

    Raises:
        UserError: if a bound is below 1.

    """
    if max_thought < 1 or max_answer < 1:
        raise UserError("max_thought and max_answer must be at least 1")
    rules = {"root": f'"Thought: " tchar{{1,{max_thought}}} "\\nAction: " action'}
    plain = [a for a in answers if not _NAMES_A_RESULT.search(a)]
    refs = sorted({r for r in references if _REFERENCE.fullmatch(r)})
    if refs:
        rules["ref"] = " | ".join(_gbnf_literal(r) for r in refs)
    finish = _finish(plain, max_answer, rules, with_refs=bool(refs))
    rules["action"] = f'{finish} | "Replan(" achar{{1,{max_answer}}} ")"'
    rules.update(_ANSWER_RULES)
    rules["tchar"] = _TEXT_CHAR
    return _render(rules)


_NAMES_A_RESULT = re.compile(r"\$\{?[0-9]")
"""Text that the agent would read as a reference if an answer quoted it."""
_REFERENCE = re.compile(r"\$[0-9]+(?:\.[A-Za-z_][A-Za-z0-9_]*|\[[0-9]+\])*")


def _finish(
    answers: Sequence[str], max_answer: int, rules: dict[str, str], *, with_refs: bool = False
) -> str:
    """The Finish action: grounded in `answers` (and `ref`) if any fit, adding their rules."""
    grounded = sorted({a for a in answers if _fits_an_answer(a)})
    if not grounded and not with_refs:
        return f'"Finish(" achar{{1,{max_answer}}} ")"'
    items = ([] if not grounded else ["value"]) + (["ref"] if with_refs else [])
    if grounded:
        rules["value"] = " | ".join(_gbnf_literal(a) for a in grounded)
    item = items[0] if len(items) == 1 else "item"
    if len(items) > 1:
        rules["item"] = " | ".join(items)
    return f'"Finish(" {item} (", " {item}){{0,3}} ")"'


def _fits_an_answer(text: str) -> bool:
    """One line, not blank, parentheses balanced and at most one level deep."""
    if not text.strip() or any(ord(c) < 0x20 for c in text) or "<E" in text:
        return False
    depth = 0
    for char in text:
        depth += {"(": 1, ")": -1}.get(char, 0)
        if depth not in (0, 1):
            return False
    return depth == 0


def react_grammar(
    tools: Sequence[Tool],
    *,
    answers: Sequence[str] = (),
    max_answer: int = 300,
    limits: GrammarLimits | None = None,
) -> str:
    """Build a GBNF grammar for one ReAct step.

    The reply is `Thought: <text>` and then `Action: ` with either one call of
    a tool (arguments as in `plan_grammar`, but literal: a ReAct step has no
    task results to refer to) or `Finish(<answer>)`, balanced as in
    `joiner_grammar`.

    Args:
        tools: the tools a step may call.
        answers: values from the observations so far; when any fit, Finish
            quotes them, as in `joiner_grammar`.
        max_answer: the most characters or parenthesised groups in the answer.
        limits: how long the thought and the call's arguments may be; by
            default `GrammarLimits()`.

    Returns:
        The grammar, whose start rule is `root`.

    Raises:
        UserError: if there are no tools or a bound is below 1.

    """
    if not tools:
        raise UserError("a ReAct grammar needs at least one tool")
    if max_answer < 1:
        raise UserError("max_answer must be at least 1")
    limits = limits or GrammarLimits()
    builder = _PlanRules(tools, limits)
    call = builder.call_rule(1, ())
    builder.rules.update(_ANSWER_RULES)
    finish = _finish(answers, max_answer, builder.rules)
    builder.rules["root"] = (
        f'"Thought: " tchar{{1,{limits.max_thought}}} "\\nAction: " ({call} | {finish})'
    )
    return builder.render()


def _task_number(task_id: int | str) -> int:
    text = str(task_id)
    if not text.isdigit():
        raise UserError(f"known ids must be task numbers, got {task_id!r}")
    return int(text)


def _render(rules: Mapping[str, str]) -> str:
    return "".join(f"{name} ::= {body}\n" for name, body in rules.items())


_PLAN_ESCAPES = {"\\": "\\\\", '"': '\\"', "$": "\\$", "\n": "\\n", "\t": "\\t", "\r": "\\r"}


def _plan_literal(value: Any) -> str:
    """Write a JSON value the way the plan language does."""
    if (
        value is None
        or isinstance(value, bool | int)
        or (isinstance(value, float) and math.isfinite(value))
    ):
        return repr(value)
    if isinstance(value, str):
        escaped = (_PLAN_ESCAPES.get(c) or _control(c) for c in value)
        return '"' + "".join(escaped) + '"'
    if isinstance(value, list):
        return "[" + ", ".join(_plan_literal(v) for v in value) + "]"
    if isinstance(value, dict):
        items = (f"{_plan_literal(str(k))}: {_plan_literal(v)}" for k, v in value.items())
        return "{" + ", ".join(items) + "}"
    raise UserError(f"a schema constant {value!r} cannot be written in a plan")


def _control(char: str) -> str:
    return f"\\x{ord(char):02x}" if ord(char) < 0x20 else char


def _gbnf_literal(text: str) -> str:
    """Quote text as a GBNF string literal."""
    return '"' + "".join("\\" + c if c in '"\\' else _control(c) for c in text) + '"'


def _listing(required: Sequence[str], optional: Sequence[str]) -> str:
    """Items separated by `", "`: all of `required`, then any of `optional`, in order."""
    if required:
        parts = [required[0], *(f"{_SEP} {r}" for r in required[1:])]
        return " ".join([*parts, *(f"({_SEP} {o})?" for o in optional)])
    if not optional:
        return ""
    alternatives = [
        " ".join([item, *(f"({_SEP} {o})?" for o in optional[i + 1 :])])
        for i, item in enumerate(optional)
    ]
    return "(" + " | ".join(alternatives) + ")?"


def _rule_names(tools: Sequence[Tool]) -> dict[str, str]:
    """A GBNF rule name part for each tool: letters, digits and `-` only, one per tool.

    Tool names may hold `_` and `.`, which rule names may not; `get_time`
    and `get-time` would both read `get-time`, so a repeat gets a number.
    """
    names: dict[str, str] = {}
    used: set[str] = set()
    for tool in tools:
        base = tool.name.replace("_", "-").replace(".", "-")
        name, count = base, 1
        while name in used:
            count += 1
            name = f"{base}-{count}"
        used.add(name)
        names[tool.name] = name
    return names


class _PlanRules:
    """The rules of one plan grammar, built step by step."""

    def __init__(self, tools: Sequence[Tool], limits: GrammarLimits) -> None:
        self.tools = tools
        self.limits = limits
        self._rule_names = _rule_names(tools)
        self.rules: dict[str, str] = _shared_rules(limits)
        self._memo: dict[tuple[str, str, int], str] = {}
        self._refs: dict[int, str | None] = {}
        self._defs: dict[str, Any] = {}
        self._defs_key = ""

    def render(self) -> str:
        return _render(self.rules)

    def call_rule(self, number: int, earlier: Sequence[int]) -> str:
        """Define the calls task `number` may make; returns the rule's name."""
        if earlier:
            ids = " | ".join(f'"{i}"' for i in earlier)
            self.rules[f"ref-{number}"] = f'"$" ({ids}) path each?'
            self._string_with_refs(number)
        self._refs[number] = f"ref-{number}" if earlier else None
        names = []
        for tool in self.tools:
            name = f"tool-{self._rule_names[tool.name]}-{number}"
            self.rules[name] = self._call(tool, number)
            names.append(name)
        self.rules[f"call-{number}"] = " | ".join(names)
        return f"call-{number}"

    def guard_rule(self, number: int, earlier: Sequence[int]) -> str:
        """Define the condition task `number` may carry; returns the rule's name."""
        ids = " | ".join(f'"{i}"' for i in earlier)
        self.rules[f"gref-{number}"] = f'"$" ({ids}) path'
        side = f"gref-{number} | num"
        self.rules[f"cmp-{number}"] = f'gref-{number} " " cmpop " " ({side})'
        self.rules["cmpop"] = '">" | "<" | ">=" | "<=" | "==" | "!="'
        self.rules[f"guard-{number}"] = f'" if " cmp-{number} (" and " cmp-{number})?'
        return f"guard-{number}"

    def _string_with_refs(self, number: int) -> None:
        """Define `str-N`: a string of task `number`, with references to earlier tasks.

        Runs of text, runs of digits and references, at most `max_parts`
        digit runs and references in all, so a small model caught in a loop
        ("$1 + $2 + $1 + ...", or the same without the dollars) is made to
        close the string. Two runs of one kind never touch (they would be one
        run, read two ways), and after a reference comes punctuation or a
        space (see `rchar`). The rules count down what is left: `sw-N-k`
        follows text (or opens the string), `sd-N-k` digits, `sr-N-k` a
        reference; llama.cpp keeps a few parse stacks alive, not one per split.
        """
        ref, parts = f"ref-{number}", self.limits.max_parts
        opening = f" sw-{number}-{parts}" if parts else ""
        self.rules[f"str-{number}"] = f'"\\"" words?{opening} "\\""'
        for k in range(parts, 0, -1):
            after_text, after_digits, after_ref = (
                f"{kind}-{number}-{k - 1}" for kind in ("sw", "sd", "sr")
            )
            self.rules[f"sw-{number}-{k}"] = f"(digits {after_digits} | {ref} {after_ref})?"
            if k == 1:  # nothing may follow but text
                self.rules[after_digits] = "words?"
                self.rules[after_ref] = "(rchar words?)?"
            else:
                self.rules[after_digits] = f"(words {after_text} | {ref} sr-{number}-{k - 2})?"
                self.rules[after_ref] = f"(rchar words? {after_text} | {ref} sr-{number}-{k - 2})?"

    def _call(self, tool: Tool, number: int) -> str:
        self._defs = dict(tool.schema.get("$defs", {}))
        # `$ref`s mean different things in different tools' schemas.
        self._defs_key = json.dumps(self._defs, sort_keys=True, default=str)
        props: Mapping[str, _Schema] = tool.schema.get("properties", {})
        required_names = set(tool.schema.get("required", ()))
        required = [p for p in tool.parameters if p in required_names]
        values = {p: self.value(props.get(p, {}), number) for p in tool.parameters}
        keywords = {p: f'"{p}=" {values[p]}' for p in tool.parameters}
        optional = [keywords[p] for p in tool.parameters if p not in required_names]
        listing = _listing([values[p] for p in required], optional)
        if required:
            by_name = _listing([keywords[p] for p in required], optional)
            listing = f"({listing} | {by_name})"
        return f'{_gbnf_literal(tool.name + "(")} {listing} ")"'

    def value(self, schema: _Schema, number: int) -> str:
        """Name the rule for a value of `schema` in task `number`, defining it once."""
        meaningful = {k: v for k, v in schema.items() if k not in _NOT_TYPES}
        key = (json.dumps(meaningful, sort_keys=True, default=str), self._defs_key, number)
        name = self._memo.get(key)
        if name is None:
            name = f"value{len(self._memo)}-{number}"
            self._memo[key] = name  # before the body: schemas may be recursive
            alternatives = self._alternatives(schema, number, depth=0) or [self._any(number)]
            ref = self._refs[number]
            # `any-N` admits references already; `None` alone is no place for one.
            plain = alternatives in (['"None"'], [f"any-{number}"])
            if ref is not None and not plain:
                alternatives.append(ref)
            self.rules[name] = " | ".join(dict.fromkeys(alternatives))
        return name

    def _resolve(self, schema: _Schema) -> _Schema:
        ref = schema.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/$defs/"):
            resolved: _Schema = self._defs.get(ref.removeprefix("#/$defs/"), {})
            return {**resolved, **{k: v for k, v in schema.items() if k != "$ref"}}
        all_of = schema.get("allOf")
        if isinstance(all_of, list) and len(all_of) == 1:
            return self._resolve({**all_of[0], **{k: v for k, v in schema.items() if k != "allOf"}})
        return schema

    def _alternatives(self, schema: _Schema, number: int, depth: int) -> list[str]:
        schema = self._resolve(schema)
        if "const" in schema:
            return [_gbnf_literal(_plan_literal(schema["const"]))]
        if isinstance(schema.get("enum"), list):
            return [_gbnf_literal(_plan_literal(v)) for v in schema["enum"]]
        for key in ("anyOf", "oneOf"):
            if isinstance(schema.get(key), list) and depth < 8:
                return [a for s in schema[key] for a in self._alternatives(s, number, depth + 1)]
        kinds = schema.get("type")
        if isinstance(kinds, list):
            return [a for k in kinds for a in self._alternatives({**schema, "type": k}, number, 0)]
        return [self._typed(schema, kinds, number)]

    def _string(self, number: int) -> str:
        return "str" if self._refs[number] is None else f"str-{number}"

    def _typed(self, schema: _Schema, kind: object, number: int) -> str:
        simple = {
            "string": self._string(number),
            "integer": "int",
            "number": "num",
            "boolean": "bool",
        }
        if kind in simple:
            return simple[str(kind)]
        if kind == "null":
            return '"None"'
        if kind == "array":
            return self._array(schema, number)
        if kind == "object":
            return self._object(schema, number)
        return self._any(number)

    def _array(self, schema: _Schema, number: int) -> str:
        prefix = schema.get("prefixItems")
        if isinstance(prefix, list) and prefix:
            items = [self.value(s, number) for s in prefix]
            return f'"[" {" ".join([items[0], *(f"{_SEP} {i}" for i in items[1:])])} "]"'
        item = self.value(schema.get("items", {}), number)
        return f'"[" ({item} ({_SEP} {item})*)? "]"'

    def _object(self, schema: _Schema, number: int) -> str:
        props: Mapping[str, _Schema] = schema.get("properties", {})
        if props:
            needed = set(schema.get("required", ()))
            fields = {
                name: f"{_gbnf_literal(_plan_literal(name) + ': ')} {self.value(s, number)}"
                for name, s in props.items()
            }
            listing = _listing(
                [f for n, f in fields.items() if n in needed],
                [f for n, f in fields.items() if n not in needed],
            )
            return f'"{{" {listing} "}}"'
        extra = schema.get("additionalProperties")
        item = self.value(extra if isinstance(extra, dict) else {}, number)
        return f'"{{" (str ": " {item} ({_SEP} str ": " {item})*)? "}}"'

    def _any(self, number: int) -> str:
        name = f"any-{number}"
        if name not in self.rules:
            ref = self._refs[number]
            self.rules[name] = " | ".join(
                [
                    *(self._string(number), "num", "bool", '"None"'),
                    f'"[" ({name} ({_SEP} {name})*)? "]"',
                    f'"{{" (str ": " {name} ({_SEP} str ": " {name})*)? "}}"',
                    *([ref] if ref else []),
                ]
            )
        return name
