"""YAML loading: safe, duplicate keys rejected, positions kept for syntax errors, size bounded; and
``${VAR}`` interpolation of the parsed tree.

Named ``yamlio`` so that it cannot shadow PyYAML's ``yaml``."""

from __future__ import annotations

import codecs
import os
import re
import sys
from pathlib import Path
from typing import Any

import yaml

from anomaly.config.base import _key, _short
from anomaly.errors import ConfigError, Problem
from anomaly.files import FileReadError, read_limited


#: Bounds on what one YAML file may cost. A real config or rules file is a few kilobytes, a few
#: levels deep and a few hundred values long; these leave room for far larger ones while keeping a
#: broken or hostile file (an alias bomb, ten thousand nested brackets) to a fraction of a second.
MAX_YAML_BYTES = 1_000_000
MAX_YAML_DEPTH = 64
#: values in the document with each alias counted as the values it repeats, which is what every
#: later step (``interpolate_env``, validation) walks
MAX_YAML_VALUES = 20_000

_SCALAR_KINDS = {
    "timestamp": "a date (YYYY-MM-DD) or a date-time",
    "int": f"an integer (at most {sys.get_int_max_str_digits() or 'any number of'} digits)",
    "float": "a number",
    "bool": "true or false",
}


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that rejects a key written twice in one mapping (the second would silently win),
    keys that are lists or mappings, nesting deeper than ``MAX_YAML_DEPTH`` and documents whose
    aliases expand them beyond ``MAX_YAML_VALUES`` values; a value that PyYAML's own constructors
    cannot build (``2026-02-30``, ``!!int abc``) is a YAML error at its position."""

    def __init__(self, stream: str):
        super().__init__(stream)
        self._depth = 0
        self._values = 0
        self._anchor_values: dict[str, int] = {}  # values under each finished anchor
        self._open_anchors: set[str] = set()

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node:
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent):
            if event.anchor in self._open_anchors:
                raise yaml.composer.ComposerError(
                    None, None, f"alias *{event.anchor} is used inside its own anchor &{event.anchor}; expected an alias of a finished value", event.start_mark
                )
            self._count(self._anchor_values.get(event.anchor, 0), event.start_mark)  # an unknown alias is reported by PyYAML
            return super().compose_node(parent, index)
        if self._depth >= MAX_YAML_DEPTH:
            raise yaml.composer.ComposerError(None, None, f"expected at most {MAX_YAML_DEPTH} levels of nesting, got more", event.start_mark)
        first = self._values
        if event.anchor is not None:
            self._open_anchors.add(event.anchor)
        self._depth += 1
        node = super().compose_node(parent, index)
        self._depth -= 1
        self._count(1, event.start_mark)
        if event.anchor is not None:
            self._open_anchors.discard(event.anchor)
            self._anchor_values[event.anchor] = self._values - first
        return node

    def _count(self, values: int, mark: yaml.Mark) -> None:
        self._values += values
        if self._values > MAX_YAML_VALUES:
            raise yaml.composer.ComposerError(
                None, None, f"expected at most {MAX_YAML_VALUES:,} values, counting each alias as the values it repeats, and got more by this point", mark
            )

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        try:
            return super().construct_object(node, deep=deep)
        except (ValueError, TypeError, KeyError, AttributeError, OverflowError) as exc:
            # PyYAML's constructors fail with these on a value that its resolver or an explicit tag
            # sent them but that they cannot build
            kind = node.tag.rsplit(":", 1)[-1]
            expected = _SCALAR_KINDS.get(kind, f"a value of type !!{kind}")
            given = _short(node.value) if isinstance(node, yaml.ScalarNode) else f"a {node.id}"
            # what datetime says is wrong, when it says it briefly ("day is out of range for month")
            brief = kind == "timestamp" and isinstance(exc, (ValueError, OverflowError)) and len(str(exc)) <= 40
            detail = f" ({exc})" if brief else ""
            raise yaml.constructor.ConstructorError(None, None, f"expected {expected}, got {given}{detail}", node.start_mark) from None


def _construct_mapping(loader: _StrictLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
    if not isinstance(node, yaml.MappingNode):  # a scalar or a list tagged !!map
        raise yaml.constructor.ConstructorError(None, None, f"expected a mapping, got a {node.id}", node.start_mark)
    loader.flatten_mapping(node)
    seen: dict[Any, int] = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        line = key_node.start_mark.line + 1
        try:
            hash(key)
        except TypeError:
            kind = "list" if isinstance(key, list) else "mapping" if isinstance(key, dict) else type(key).__name__
            raise yaml.constructor.ConstructorError(None, None, f"expected a key that is text or a number, got a {kind}", key_node.start_mark) from None
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"key {key!r} appears twice in one mapping (first on line {seen[key]})", key_node.start_mark
            )
        seen[key] = line
    return loader.construct_mapping(node, deep=deep)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)
# YAML 1.2 reads 1e3 and 3e-4 as numbers; PyYAML, on YAML 1.1, only with a dot and a signed exponent
# (1.0e+3) and as text otherwise, which a number setting refuses: a number is read as it is written.
_EXPONENT_FLOAT = re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9_]+)[eE][-+]?[0-9]+$")
_StrictLoader.add_implicit_resolver("tag:yaml.org,2002:float", _EXPONENT_FLOAT, list("-+.0123456789"))


def read_yaml(path: Path) -> Any:
    """Parse one YAML file safely. Raise ConfigError naming the line of a syntax error, in words."""
    return _read(path, positions=False)[0]


def read_yaml_lines(path: Path) -> tuple[Any, dict[tuple, int]]:
    """``read_yaml``, and the line (from 1) where each key and list item of the document is written,
    by its path: ``("rules", 5, "critical")`` → 42. A problem found later, by path, can then say
    where it is in the file."""
    return _read(path, positions=True)


def _read(path: Path, *, positions: bool) -> tuple[Any, dict[tuple, int]]:
    try:
        data = read_limited(path, expected="a YAML file", limit=MAX_YAML_BYTES)
    except FileReadError as exc:
        raise ConfigError(exc.problems) from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
            message = "not valid UTF-8 (the file is UTF-16); save the file as UTF-8"
        else:
            message = f"not valid UTF-8 (byte {exc.object[exc.start]:#04x} at offset {exc.start})"
        raise ConfigError([Problem(str(path), "", message)]) from None
    loader = None
    try:
        loader = _StrictLoader(text)  # checks the text for characters YAML does not allow
        node = loader.get_single_node()
        document = loader.construct_document(node) if node is not None else None
    except yaml.MarkedYAMLError as exc:
        plain = _in_words(exc, text)
        if plain is not None:
            raise ConfigError([Problem(str(path), *plain)]) from None
        mark = exc.problem_mark or exc.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        message = exc.problem or str(exc)
        if exc.context and exc.context not in message:
            message = f"{exc.context}: {message}"
        raise ConfigError([Problem(str(path), where, f"invalid YAML: {message}")]) from None
    except yaml.reader.ReaderError as exc:  # a control character; PyYAML gives only its offset
        before = text[: exc.position]
        line, column = before.count("\n") + 1, exc.position - before.rfind("\n")
        where = f"line {line}, column {column}"
        hint = "; is the file UTF-16? save it as UTF-8" if exc.character == 0 else ""
        raise ConfigError([Problem(str(path), where, f"invalid YAML: expected printable text, got the character {chr(exc.character)!r}{hint}")]) from None
    except yaml.YAMLError as exc:
        raise ConfigError([Problem(str(path), "", f"invalid YAML: {exc}")]) from None
    finally:
        if loader is not None:
            loader.dispose()
    return document, (_lines(node) if positions and node is not None else {})


def _lines(root: yaml.Node) -> dict[tuple, int]:
    """The line of each key and list item under ``root``, by path (see ``read_yaml_lines``)."""
    lines: dict[tuple, int] = {}
    stack: list[tuple[tuple, yaml.Node]] = [((), root)]
    while stack:  # the loader bounded the values, aliases included, so this walk is bounded too
        path, node = stack.pop()
        if isinstance(node, yaml.MappingNode):
            for key_node, value_node in node.value:
                if isinstance(key_node, yaml.ScalarNode):
                    lines.setdefault((*path, key_node.value), key_node.start_mark.line + 1)
                    stack.append(((*path, key_node.value), value_node))
        elif isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                lines.setdefault((*path, i), item.start_mark.line + 1)
                stack.append(((*path, i), item))
    return lines


#: what PyYAML's parser means by an indentation that does not line up, in words
INDENTATION = "the indentation does not line up with the lines above (a key or list item is indented differently)"
_TOKEN_NAMES = {"<block mapping start>", "<block sequence start>", "?", "-"}
_BRACKETS = {"[": "]", "{": "}"}


def _in_words(exc: yaml.MarkedYAMLError, text: str) -> tuple[str, str] | None:
    """The common PyYAML scanner and parser errors as ``("line N", a sentence)``, at the line a
    person has to fix (which is not always where PyYAML stopped reading); None for the others."""
    problem, context = exc.problem or "", exc.context or ""
    at, opened = exc.problem_mark, exc.context_mark
    if at is None:
        return None

    def line(mark: yaml.Mark) -> str:
        return f"line {mark.line + 1}"

    found = re.fullmatch(r"expected <block end>, but found '(.*)'", problem)
    if found:
        token = found.group(1)
        lines = text.splitlines()
        before = lines[at.line][: at.column] if at.line < len(lines) else ""
        if token in _TOKEN_NAMES or (token == "<scalar>" and not before.strip()):
            return line(at), INDENTATION
        if token in ("]", "}"):
            opening = "[" if token == "]" else "{"
            return line(at), f"a '{token}' that closes nothing: no '{opening}' before it is still open"
        if token == "<scalar>":
            return line(at), "more text after a value in quotes or brackets: put the whole value in quotes"
        return None
    if problem == "mapping values are not allowed here":
        return line(at), (
            "a ':' where no key can begin: this line is indented deeper than the key above it, "
            "or a value holds ': ' (put that value in quotes)"
        )
    if problem == "could not find expected ':'" and opened is not None:
        return line(opened), "a line without ':' among keys: write each as `key: value`, with a space after the ':'"
    character = re.fullmatch(r"found character '(.*)' that cannot start any token", problem)
    if character:
        if character.group(1) == "\\t":
            return line(at), "a tab character: YAML indents with spaces only"
        return line(at), f"a value cannot begin with {character.group(1)!r}: put the value in quotes"
    if context == "while scanning a quoted scalar" and opened is not None:
        quote = text[opened.index] if opened.index < len(text) else "'"
        return line(opened), f"a quote ({quote}) opens on this line and is never closed"
    if "while scanning a double-quoted scalar" in context and problem.startswith("found unknown escape character"):
        return line(at), (
            "in double quotes a backslash starts an escape (\\n, \\t, \\\\) and this one is none: "
            "use single quotes, or write the backslash twice"
        )
    flow = re.fullmatch(r"expected ',' or '([\]}])', but got '(.*)'", problem)
    if flow and opened is not None:
        opening = "[" if flow.group(1) == "]" else "{"
        return line(opened), f"the '{opening}' on this line is missing its closing '{flow.group(1)}', or a ',' between two of its items"
    if problem == "expected the node content, but found '<stream end>'":
        unclosed = _unclosed_bracket(text)
        if unclosed is not None:
            bracket, mark = unclosed
            return line(mark), f"the file ends before the '{bracket}' on this line is closed with '{_BRACKETS[bracket]}'"
        return None
    alias = re.fullmatch(r"found undefined alias '(.*)'", problem)
    if alias:
        return line(at), f"*{alias.group(1)} refers to an anchor &{alias.group(1)} that is not defined above: put a value that begins with '*' in quotes"
    if context in ("while scanning an anchor", "while scanning an alias") and opened is not None:
        sign = "&" if "anchor" in context else "*"
        return line(opened), f"a value cannot begin with '{sign}': put the value in quotes"
    if context == "expected a single document in the stream":
        return line(at), "a second document begins on this line ('---'): a file holds one"
    return None


def _unclosed_bracket(text: str) -> tuple[str, yaml.Mark] | None:
    """The innermost '[' or '{' still open where the text ends, with where it is."""
    open_: list[tuple[str, yaml.Mark]] = []
    try:
        for token in yaml.scan(text, Loader=yaml.SafeLoader):
            if isinstance(token, (yaml.FlowSequenceStartToken, yaml.FlowMappingStartToken)):
                open_.append(("[" if isinstance(token, yaml.FlowSequenceStartToken) else "{", token.start_mark))
            elif isinstance(token, (yaml.FlowSequenceEndToken, yaml.FlowMappingEndToken)) and open_:
                open_.pop()
    except yaml.YAMLError:
        pass
    return open_[-1] if open_ else None


_ENV_REF = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def interpolate_env(
    data: Any, file: str, environ: dict[str, str] | None = None, substituted: dict[str, str] | None = None
) -> tuple[Any, list[Problem]]:
    """Replace ``${VAR}`` / ``${VAR:-default}`` in every string of a parsed YAML tree. When given,
    ``substituted`` receives each value read from the environment with the reference that read it
    (``{"xoxb-…": "${SLACK_BOT_TOKEN}"}``), so that messages can show the reference instead."""
    env = os.environ if environ is None else environ
    problems: list[Problem] = []

    def sub(value: str, path: str) -> str:
        def one(match: re.Match) -> str:
            if match.group(0) == "$$":
                return "$"
            name, default = match.group(1), match.group(2)
            if name in env:
                if substituted is not None and env[name]:
                    substituted[env[name]] = match.group(0)
                return env[name]
            if default is not None:
                return default
            problems.append(Problem(file, path, f"environment variable {name} is not set"))
            return ""

        return _ENV_REF.sub(one, value)

    def walk(node: Any, path: str) -> Any:
        if isinstance(node, dict):
            return {k: walk(v, f"{path}.{_key(k)}" if path else _key(k)) for k, v in node.items()}
        if isinstance(node, list):
            return [walk(v, f"{path}[{i}]") for i, v in enumerate(node)]
        if isinstance(node, str):
            return sub(node, path)
        return node

    return walk(data, ""), problems
