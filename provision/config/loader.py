"""Read ``cluster.toml`` once, validate it against the schema, and turn every problem into one ``ConfigError`` line
that names the file and the key path (``hosts.max_size``), with a did-you-mean for misspelt keys."""

from __future__ import annotations

import difflib
import tomllib
import types
import typing
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from provision.config.schema import ClusterConfig
from provision.config.types import FieldProblem
from provision.errors import ConfigError
from provision.textfile import MIB, UnreadableFile, read_text_file

# Far above any real configuration (the example is 8 KB), and what a ConfigMap can carry to `cluster heal`.
CONFIG_LIMIT = 1 * MIB


def load_config(path: Path, *, source: str | None = None) -> ClusterConfig:
    """Load and validate the TOML file at ``path``. ``source`` is how the file is named in messages."""
    name = source or str(path)
    return config_from_text(read_config_text(path, source=name), source=name)


def config_from_text(text: str, *, source: str) -> ClusterConfig:
    """Parse and validate the text of a configuration file named ``source``."""
    if text.startswith("\ufeff"):  # what some Windows editors put first; tomllib calls it an "invalid statement"
        raise ConfigError(
            source, "", "starts with a byte order mark, which TOML does not allow: save it as UTF-8 without BOM"
        )
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(source, "", f"TOML syntax error: {error}") from None
    except RecursionError:  # tomllib recurses once per level of nested arrays and inline tables
        raise ConfigError(source, "", "arrays or tables are nested too deeply to be a configuration") from None
    return parse_config(data, source=source)


def read_config_text(path: Path, *, source: str | None = None) -> str:
    """The configuration file's text, read as every file the user names is (``provision.textfile``)."""
    try:
        return read_text_file(path, limit=CONFIG_LIMIT)
    except UnreadableFile as error:
        hint = " (copy cluster.example.toml to start one)" if error.missing else ""
        raise ConfigError(source or str(path), "", f"{error.problem}{hint}") from None


def parse_config(data: dict[str, Any], *, source: str) -> ClusterConfig:
    """Validate already-parsed TOML data; the first problem becomes a ``ConfigError``."""
    try:
        return ClusterConfig.model_validate(data)
    except ValidationError as error:
        errors = error.errors(include_url=False)
        # A misspelt required key yields "missing" and "unknown key" together; the unknown key, with its
        # did-you-mean, is the one that tells the user what to fix.
        first = next((e for e in errors if e["type"] == "extra_forbidden"), errors[0])
        key, problem = describe(first)
        raise ConfigError(source, key, problem) from error


def describe(error: ErrorDetails) -> tuple[str, str]:
    """The key path and the problem of one pydantic error, in the words of the TOML file."""
    path, model = _walk(ClusterConfig, error["loc"])
    kind = error["type"]
    cause = (error.get("ctx") or {}).get("error")
    if isinstance(cause, FieldProblem):
        return _join(path + cause.field.split(".")), str(cause)
    if kind == "extra_forbidden" and model is not None:
        known = sorted(model.model_fields)
        hint = difflib.get_close_matches(path[-1], known, n=1)
        suggestion = f"did you mean {hint[0]!r}?" if hint else f"known keys: {', '.join(known)}"
        return _join(path), f"unknown key ({suggestion})"
    if kind == "missing":
        return _join(path), "is required"
    if kind == "union_tag_not_found" and isinstance(error["input"], dict):
        typo = difflib.get_close_matches("mode", [str(key) for key in error["input"]], n=1)
        if typo:
            return _join([*path, typo[0]]), "unknown key (did you mean 'mode'?)"
    if kind in {"union_tag_invalid", "union_tag_not_found"}:
        return _join([*path, "mode"]), "must be 'eks' or 'kubeadm'"
    message = error["msg"].removeprefix("Value error, ")
    if kind.endswith("_type") or kind.startswith("literal"):
        message = f"{message} (got {_toml_kind(error['input'])} {_short(error['input'])})"
    return _join(path), message


def _walk(model: type[BaseModel], loc: tuple[int | str, ...]) -> tuple[list[str], type[BaseModel] | None]:
    """Follow ``loc`` through the schema. Returns the key path as the user wrote it (without the tag pydantic adds for
    a discriminated union) and the model that holds the last key, for the did-you-mean."""
    path: list[str] = []
    current: type[BaseModel] | None = model
    parent: type[BaseModel] | None = model
    index = 0
    while index < len(loc):
        part = loc[index]
        index += 1
        if part == "[key]":
            continue  # pydantic's marker for a problem with a table's key (not its value): the key is named already
        path.append(str(part) if isinstance(part, str) else f"[{part}]")
        parent = current
        field = current.model_fields.get(str(part)) if current is not None else None
        current = None
        if field is None:
            continue
        table = table_of(field.annotation)
        if table is not None and index < len(loc):
            # A table of named tables ([groups.<name>]): the next part is a name the user chose, then its keys.
            path.append(str(loc[index]))
            index += 1
            current = table
            continue
        members = models_in(field.annotation)
        if len(members) == 1:
            current = members[0]
        elif members and index < len(loc):
            # A discriminated union puts the tag ("eks", "kubeadm") into the location; it is not a key in the file.
            tag = loc[index]
            current = next((m for m in members if _tag_of(m) == tag), None)
            if current is not None:
                index += 1
    return path, parent if current is None else current


def models_in(annotation: Any) -> list[type[BaseModel]]:
    """The section models an annotation holds: itself, an Optional's member, or each member of a union."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return models_in(typing.get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType):
        return [m for arg in typing.get_args(annotation) for m in models_in(arg)]
    return []


def table_of(annotation: Any) -> type[BaseModel] | None:
    """The section model of a table of named tables (``dict[Name, Model]``), else None."""
    if typing.get_origin(annotation) is not dict:
        return None
    members = models_in(typing.get_args(annotation)[1])
    return members[0] if len(members) == 1 else None


def _tag_of(model: type[BaseModel]) -> object:
    mode = model.model_fields.get("mode")
    args = typing.get_args(mode.annotation) if mode is not None else ()
    return args[0] if args else None


def _join(path: list[str]) -> str:
    # Keys come from the file: escape anything unprintable so that the error stays one honest line.
    shown = [part if part.isprintable() else repr(part) for part in path]
    return ".".join(shown).replace(".[", "[") or "(top level)"


def _toml_kind(value: object) -> str:
    names = {bool: "boolean", int: "integer", float: "float", str: "string", list: "array", dict: "table"}
    return next((label for kind, label in names.items() if isinstance(value, kind)), type(value).__name__)


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."
