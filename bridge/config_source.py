"""Configuration and register-map files as text: TOML or YAML parsed once, with an index from every
key path to its line, so each validation error names file, line and key."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from .errors import ConfigError


def _yaml_lines(text: str) -> dict[tuple[str, ...], int]:
    """Key path -> 1-based line for every mapping key and sequence item of a YAML document."""
    out: dict[tuple[str, ...], int] = {}

    def walk(node: yaml.Node, path: tuple[str, ...]) -> None:
        out.setdefault(path, node.start_mark.line + 1)
        if isinstance(node, yaml.MappingNode):
            for k, v in node.value:
                p = (*path, str(k.value))
                out[p] = k.start_mark.line + 1
                walk(v, p)
        elif isinstance(node, yaml.SequenceNode):
            for i, v in enumerate(node.value):
                walk(v, (*path, str(i)))

    try:
        root = yaml.compose(text)
    except yaml.YAMLError:
        return out
    if root is not None:
        walk(root, ())
    return out


_TOML_HEADER = re.compile(r"^\s*(\[\[?)\s*([^\]]+?)\s*\]\]?")
_TOML_KEY = re.compile(r"^\s*([A-Za-z0-9_\"'.-]+)\s*=")


def _toml_lines(text: str) -> dict[tuple[str, ...], int]:
    """Key path -> line for TOML (tables, arrays of tables and keys; inline tables by their key)."""
    out: dict[tuple[str, ...], int] = {}
    counters: dict[tuple[str, ...], int] = {}
    table: tuple[str, ...] = ()
    for n, line in enumerate(text.splitlines(), 1):
        if m := _TOML_HEADER.match(line):
            parts = tuple(p.strip().strip("\"'") for p in m.group(2).split("."))
            if m.group(1) == "[[":
                idx = counters.get(parts, -1) + 1
                counters[parts] = idx
                table = (*parts, str(idx))
            else:
                table = parts
            out.setdefault(table, n)
            out.setdefault(parts, n)
        elif m := _TOML_KEY.match(line):
            key = tuple(p.strip("\"'") for p in m.group(1).split("."))
            out.setdefault((*table, *key), n)
    return out


def _line_for(lines: dict[tuple[str, ...], int], loc: tuple[str, ...]) -> int | None:
    for cut in range(len(loc), -1, -1):
        if loc[:cut] in lines:
            return lines[loc[:cut]]
    return None


# a key path at the start of a message: dotted or indexed ("devices[2].unit_id", "metrics.listen")
_KEY_PATH = re.compile(r"^([a-z_]+(?:\[\d+\])?(?:\.[a-z_]+(?:\[\d+\])?)+|[a-z_]+\[\d+\])[ .:]")


def format_validation(exc: ValidationError, source: str, lines: dict[tuple[str, ...], int]) -> str:
    msgs = []
    for err in exc.errors():
        loc = tuple(str(p) for p in err["loc"])
        if err["type"] == "value_error":
            # our cross-field checks name the entry they are about ("devices[2].unit_id ..."): find its line
            text = str(err.get("ctx", {}).get("error", ""))
            if m := _KEY_PATH.match(text):
                loc = (*loc, *(part for part in re.split(r"[.\[\]]+", m.group(1)) if part))
        key = ".".join(loc) or "(top level)"
        line = _line_for(lines, loc)
        where = f"{source}:{line}" if line else source
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown key (check the spelling; see docs/configuration.md for the allowed keys)"
        elif err["type"] == "missing":
            msg = "required key is missing"
        elif "input" in err and err["type"] not in ("value_error",):
            msg = f"{msg} (got {err['input']!r})"
        msgs.append(f"{where}: key '{key}': {msg}")
    return "\n".join(msgs)


def read_document(path: Path) -> tuple[Any, dict[tuple[str, ...], int]]:
    """Parse a TOML or YAML file; return the data and a key-path -> line index."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
    if path.suffix == ".toml":
        try:
            return tomllib.loads(text), _toml_lines(text)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    if path.suffix in (".yaml", ".yml"):
        try:
            return yaml.safe_load(text), _yaml_lines(text)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
            raise ConfigError(f"{where}: not valid YAML: {getattr(exc, 'problem', exc)}") from None
    raise ConfigError(f"{path}: unknown file type '{path.suffix}' (use .toml, .yaml or .yml)")


def line_of(path: Path, loc: tuple[str, ...]) -> str:
    """ "FILE:LINE" of a key path in a configuration file (or just FILE)."""
    try:
        _, lines = read_document(path)
    except ConfigError:
        return str(path)
    line = _line_for(lines, loc)
    return f"{path}:{line}" if line else str(path)
