"""Error formatting: a pydantic ValidationError as ``file: path: message`` problems, with keys
suggested for typos and environment values hidden behind their ``${VAR}``."""

from __future__ import annotations

import difflib
import math
import re
import typing
from typing import Any, Union

from pydantic import BaseModel, ValidationError

from anomaly.config.alerts import ConsoleSinkConfig, JsonlSinkConfig, Sink, SlackSinkConfig, SlackWebhookSinkConfig
from anomaly.config.base import _key, _short
from anomaly.config.rules import RULE_TYPES, Rule
from anomaly.config.sources import CsvSourceConfig, GoogleAdsSourceConfig, MetaAdsSourceConfig, MicrosoftAdsSourceConfig, Source
from anomaly.errors import Problem


_TAGGED: dict[str, type[BaseModel]] = {
    **RULE_TYPES,
    "csv": CsvSourceConfig,
    "google_ads": GoogleAdsSourceConfig,
    "meta_ads": MetaAdsSourceConfig,
    "microsoft_ads": MicrosoftAdsSourceConfig,
    "console": ConsoleSinkConfig,
    "jsonl": JsonlSinkConfig,
    "slack": SlackSinkConfig,
    "slack_webhook": SlackWebhookSinkConfig,
}
_TAGS = set(_TAGGED)


def _union_tags(union: Any) -> list[str]:
    members = typing.get_args(union)[0]  # Annotated[Union[...], Field(discriminator="type")]
    return [typing.get_args(m.model_fields["type"].annotation)[0] for m in (typing.get_args(members) or (members,))]


#: The ``type`` values a list of tagged items accepts, by the list's key.
_TAGS_BY_LIST: dict[str, list[str]] = {"rules": _union_tags(Rule), "sources": _union_tags(Source), "sinks": _union_tags(Sink)}


#: What a number setting (``anomaly.config.base.Int``, ``Float``) expects, by the error pydantic
#: reports when it is given something else: ``true``, ``'7'``, ``7.5`` for a whole number, ``.inf``.
_NUMBER_KINDS = {"int_type": "a whole number", "float_type": "a number", "finite_number": "a finite number"}


def _given_number(value: Any) -> str:
    """What a number setting was given, as the YAML reader sees it."""
    if isinstance(value, bool):
        return f"{str(value).lower()} (true and false are not numbers)"
    if isinstance(value, float) and math.isnan(value):
        return "NaN (not a number)"
    if isinstance(value, float) and math.isinf(value):
        return f"{'' if value > 0 else 'minus '}infinity (.inf, or a number too large to hold)"
    if isinstance(value, str):
        return f"the text {_short(value)}"
    return _short(value)


def _allowed_keys(root: type[BaseModel], loc: tuple) -> list[str]:
    """The keys the model at ``loc`` (a pydantic error location, last item excluded) accepts."""
    current: Any = root
    for item in loc:
        if isinstance(item, str) and item in _TAGS:
            current = _TAGGED[item]
            continue
        while True:  # unwrap Annotated / Optional / list / dict down to the next model or container
            origin = getattr(current, "__origin__", None)
            if hasattr(current, "__metadata__"):
                current = current.__origin__
            elif origin is Union or type(current).__name__ == "UnionType":
                models = [a for a in current.__args__ if a is not type(None)]
                current = models[0] if len(models) == 1 else current
                break
            else:
                break
        if isinstance(current, type) and issubclass(current, BaseModel) and isinstance(item, str):
            field = current.model_fields.get(item)
            if field is None:
                return []
            current = field.annotation
        elif getattr(current, "__origin__", None) in (list, dict):
            current = current.__args__[-1]
        else:
            continue
    while hasattr(current, "__metadata__") or getattr(current, "__origin__", None) is Union or type(current).__name__ == "UnionType":
        if hasattr(current, "__metadata__"):
            current = current.__origin__
        else:
            models = [a for a in current.__args__ if a is not type(None)]
            if len(models) != 1:
                return []
            current = models[0]
    if isinstance(current, type) and issubclass(current, BaseModel):
        return sorted(field.alias or name for name, field in current.model_fields.items())
    return []


def _format_loc(loc: tuple) -> str:
    parts: list[str] = []
    for i, item in enumerate(loc):
        if isinstance(item, int):
            parts.append(f"[{item}]")
        elif item in _TAGS and i > 0 and isinstance(loc[i - 1], int):
            continue  # the discriminator tag pydantic puts after a union member's index
        elif item.startswith("function-after[") or item.startswith("json-or-python["):
            continue
        else:
            parts.append(f".{_key(item)}" if parts else _key(item))
    return "".join(parts)


def _hide(value: Any, hidden: dict[str, str]) -> Any:
    """``value`` with every environment value in ``hidden`` written as its ``${VAR}`` again: a
    message quotes what it was given, and that may be a secret."""
    if not hidden:
        return value
    if isinstance(value, str):
        for secret in sorted(hidden, key=len, reverse=True):
            value = value.replace(secret, hidden[secret])
        return value
    if isinstance(value, dict):
        return {k: _hide(v, hidden) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_hide(v, hidden) for v in value]
    return value


def _hidden_problems(problems: list[Problem], hidden: dict[str, str]) -> list[Problem]:
    return [Problem(p.file, p.where, _hide(p.message, hidden)) for p in problems] if hidden else problems


def _problems_from_validation(exc: ValidationError, file: str, root: type[BaseModel], hidden: dict[str, str] | None = None) -> list[Problem]:
    problems = []
    for err in exc.errors(include_url=False):
        loc = tuple(err["loc"])
        kind = err["type"]
        given = _hide(err.get("input"), hidden or {})
        msg = err["msg"]
        if kind == "extra_forbidden":
            allowed = _allowed_keys(root, loc[:-1])
            close = difflib.get_close_matches(str(loc[-1]), allowed, n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            expected = f"{hint}expected one of: {', '.join(allowed)}" if allowed else "not a setting here"
            problems.append(Problem(file, _format_loc(loc), f"unknown key; {expected}"))
            continue
        if kind == "missing":
            problems.append(Problem(file, _format_loc(loc), "required key is missing"))
            continue
        if kind == "invalid_key":  # a key that is not text where setting names go; ``loc`` ends with it
            problems.append(Problem(file, _format_loc(loc[:-1]), f"keys should be text, got the key {_short(given)}"))
            continue
        if loc and loc[-1] == "[key]":  # a key of a mapping that fails its check: ``loc`` ends with it and "[key]"
            text = msg[0].lower() + msg[1:]
            problems.append(Problem(file, _format_loc(loc[:-2]), f"key {_short(given)}: {text}"))
            continue
        if kind == "union_tag_invalid":
            expected = err.get("ctx", {}).get("expected_tags", "")
            problems.append(Problem(file, _format_loc(loc) + ".type", f"expected one of {expected}, got {_short(err.get('ctx', {}).get('tag'))}"))
            continue
        if kind == "union_tag_not_found":  # pydantic does not say which tags it accepts here
            tags = _TAGS_BY_LIST.get(next((str(i) for i in reversed(loc) if isinstance(i, str)), ""), [])
            expected = f"; expected one of {', '.join(repr(t) for t in tags)}" if tags else ""
            problems.append(Problem(file, _format_loc(loc) + ".type", f"required key is missing{expected}"))
            continue
        if kind == "value_error":
            text = msg.removeprefix("Value error, ")
            for piece in text.split("; "):
                sub = re.match(r"^([a-z_]+(?:\[\d+\])?(?:\.[a-z_]+(?:\[\d+\])?)*): (.*)$", piece)
                if sub and re.split(r"[.\[]", sub.group(1))[0] in _allowed_keys(root, loc):
                    where = ".".join(filter(None, [_format_loc(loc), sub.group(1)]))
                    problems.append(Problem(file, where, sub.group(2)))
                else:
                    problems.append(Problem(file, _format_loc(loc), piece))
            continue
        if kind in _NUMBER_KINDS:
            problems.append(Problem(file, _format_loc(loc), f"expected {_NUMBER_KINDS[kind]}, got {_given_number(given)}"))
            continue
        if kind == "too_short" and isinstance(given, list):
            n = err.get("ctx", {}).get("min_length", 1)
            problems.append(Problem(file, _format_loc(loc), f"expected a list of at least {n} item{'s' if n != 1 else ''}, got {_short(given)}"))
            continue
        text = msg[0].lower() + msg[1:]
        problems.append(Problem(file, _format_loc(loc), f"{text}, got {_short(given)}"))
    return problems


_RULE_PATH = re.compile(r"^rules\[(\d+)\](.*)$")
_PATH_STEP = re.compile(r"\.?([^.\[\]]+)|\[(\d+)\]")


def rule_label(raw: Any, index: int) -> str:
    """How a problem names the rule at ``index`` of a rules file: ``rule cpl-spike-7d`` by its name
    as written, ``rule #6`` (its position, from 1) when it has none."""
    rules = raw.get("rules") if isinstance(raw, dict) else None
    item = rules[index] if isinstance(rules, list) and index < len(rules) else None
    name = item.get("name") if isinstance(item, dict) else None
    if isinstance(name, str) and name.strip():
        return f"rule {name}" if re.fullmatch(r"[A-Za-z0-9_.-]+", name) else f"rule {_short(name)}"
    return f"rule #{index + 1}"


def at_rules(problems: list[Problem], file: str, raw: Any, lines: dict[tuple, int]) -> list[Problem]:
    """Problems of one rules file located as a partner manager finds them: ``rules[5].critical``
    becomes ``line 42, rule cpl-spike-7d: critical``, the line of the key at fault (or of the
    nearest thing written above it: a missing key's rule or block)."""
    located = []
    for problem in problems:
        match = _RULE_PATH.match(problem.where) if problem.file == file else None
        if match is None:
            located.append(problem)
            continue
        index, rest = int(match.group(1)), match.group(2).lstrip(".")
        path: tuple = ("rules", index)
        line = lines.get(path)
        for step in _PATH_STEP.finditer(rest):
            path = (*path, step.group(1) if step.group(1) is not None else int(step.group(2)))
            line = lines.get(path, line)
        where = ", ".join(filter(None, [f"line {line}" if line else "", rule_label(raw, index)]))
        located.append(Problem(problem.file, where, f"{rest}: {problem.message}" if rest else problem.message))
    return located
