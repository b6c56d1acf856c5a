"""Options and helpers that several verbs share, so each verb states them once."""

from __future__ import annotations

import math
import os
import re
import stat
from collections.abc import Callable
from dataclasses import dataclass
from importlib.resources import as_file, files
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar
from urllib.parse import urlsplit

import click

from provision.errors import UsageError
from provision.textfile import KIB, UnreadableFile, read_text_file

if TYPE_CHECKING:
    from provision.config.schema import ClusterConfig

DEFAULT_CONFIG = "cluster.toml"
JOIN_TOKEN_VARIABLE = "CLUSTER_JOIN_TOKEN"  # noqa: S105 - the variable's name, not a secret
ENDPOINT_VARIABLE = "AWS_ENDPOINT_URL"  # and AWS_ENDPOINT_URL_<SERVICE>, which boto3 reads as well
TOKEN_FILE_LIMIT = 4 * KIB  # a bootstrap token is 23 characters
EXAMPLE_CONFIG = "cluster.example.toml"

F = TypeVar("F", bound=Callable[..., object])


@dataclass(frozen=True)
class Globals:
    """The group's options, handed to every verb as click's ``obj``."""

    debug: bool = False
    profile: str | None = None
    endpoint_url: str | None = None
    kubeconfig: str | None = None
    context: str | None = None
    sandbox: bool = False


def output_option(function: F) -> F:
    """`--output json` for the verbs that replace hosts: their plan and result as one JSON document on stdout."""
    return click.option(
        "--output",
        "output",
        type=click.Choice(["text", "json"]),
        default="text",
        show_default=True,
        help="json: the plan and the result as one JSON document on stdout, the progress on stderr.",
    )(function)


def yes_option(function: F) -> F:
    return click.option("--yes", "assume_yes", is_flag=True, help="Answer yes to confirmations.")(function)


def break_lock_option(function: F) -> F:
    return click.option("--break-lock", is_flag=True, help="Take over a roll lock that has expired.")(function)


class HostShareType(click.ParamType):  # type: ignore[type-arg]
    """A number of hosts or a percentage of the desired capacity, as rolling.max_surge takes it."""

    name = "N|N%"

    def convert(self, value: object, param: click.Parameter | None, ctx: click.Context | None) -> int | str:
        text = str(value).strip()
        # ASCII digits only: str.isdigit() also admits '²', which int() refuses.
        if re.fullmatch(r"(100|[1-9]?[0-9])", text):
            return int(text)
        if re.fullmatch(r"(100|[1-9]?[0-9])%", text):
            return text
        self.fail(f"{text!r} is neither a number of hosts from 0 to 100 nor a percentage such as '25%'", param, ctx)


class Bounded(click.ParamType):  # type: ignore[type-arg]
    """A finite number between two bounds, for every numeric option: click's ranges let 'nan' through (it compares
    false with both bounds) and have no upper bound, so 'inf' and 1e400 reach the clock."""

    def __init__(self, kind: type[int] | type[float], low: float, high: float) -> None:
        self.kind = kind
        self.low = low
        self.high = high
        self.name = "integer" if kind is int else "float"

    def convert(self, value: object, param: click.Parameter | None, ctx: click.Context | None) -> float:
        if isinstance(value, self.kind) and not isinstance(value, bool):
            number: float = value
        else:
            try:
                number = self.kind(str(value).strip())
            except ValueError:
                self.fail(f"{str(value)!r} is not {'a whole number' if self.kind is int else 'a number'}", param, ctx)
        if not math.isfinite(number):
            self.fail(f"{str(value)!r} is not a finite number", param, ctx)
        if not self.low <= number <= self.high:
            self.fail(f"{str(value)!r} is not between {_plain(self.low)} and {_plain(self.high)}", param, ctx)
        return number


def _plain(number: float) -> str:
    return str(int(number)) if number == int(number) else str(number)


def seconds(low: float, high: float) -> Bounded:
    return Bounded(float, low, high)


def whole(low: int, high: int) -> Bounded:
    return Bounded(int, low, high)


class HostName(click.ParamType):  # type: ignore[type-arg]
    """A HOST as the verbs take it: an instance id, node name, private DNS name or private IP."""

    name = "HOST"

    def convert(self, value: object, param: click.Parameter | None, ctx: click.Context | None) -> str:
        text = str(value)
        if not text:
            self.fail("is empty; give an instance id, node name, private DNS name or IP", param, ctx)
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,252}", text):
            self.fail(f"{text!r} is not an instance id, node name, private DNS name or IP", param, ctx)
        return text


class FolderPath(click.ParamType):  # type: ignore[type-arg]
    """A folder to write into, existing or not: refused when it, or the nearest part of it that exists, is not a
    folder (``--output out.yaml/x`` beside a file, ``/dev/null/x``), before anything is done."""

    name = "FOLDER"

    def convert(self, value: object, param: click.Parameter | None, ctx: click.Context | None) -> Path:
        text = os.fspath(value) if isinstance(value, os.PathLike) else str(value)
        if not text or not text.isprintable():  # a line break or an escape in a folder's name is a slip
            self.fail(f"{text!r} is not a folder path", param, ctx)
        path = Path(text)
        for part in (path, *path.parents):
            try:
                mode = part.stat().st_mode
            except (FileNotFoundError, NotADirectoryError):
                continue  # made when written to, or a part before it is not a folder: found further up
            except OSError as error:
                self.fail(f"{text!r} cannot be a folder: {part}: {error.strerror or error}", param, ctx)
            if not stat.S_ISDIR(mode):
                what = "" if part == path else f" ({part} is not a folder)"
                self.fail(f"{text!r} cannot be a folder: it is not one{what}", param, ctx)
            if not os.access(part, os.W_OK | os.X_OK):
                self.fail(f"{text!r} cannot be written: no permission to write into {part}", param, ctx)
            break
        return path


class EndpointUrl(click.ParamType):  # type: ignore[type-arg]
    name = "URL"

    def convert(self, value: object, param: click.Parameter | None, ctx: click.Context | None) -> str:
        text = str(value)
        problem = endpoint_url_problem(text)
        if problem:
            self.fail(f"{text!r} {problem}", param, ctx)
        return text


def endpoint_url_problem(text: str) -> str:
    """Why ``text`` cannot be an AWS endpoint URL, or "" when it can (boto3 itself says "Invalid endpoint" in the
    middle of a verb, or takes an ftp:// URL)."""
    if not text or not text.isprintable() or any(character.isspace() for character in text):
        return "is not a URL (it is empty, or has spaces or control characters)"
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError as error:
        return f"is not a URL ({error})"
    problems = [
        (parts.scheme not in {"http", "https"}, "is not an http:// or https:// URL"),
        (not parts.hostname, "names no host"),
        (port == 0, "has port 0"),
        (
            bool(parts.username or parts.password or parts.query or parts.fragment),
            "must be scheme://host[:port][/path], without a user, query or fragment",
        ),
    ]
    return next((problem for found, problem in problems if found), "")


def check_endpoint_variables(environ: dict[str, str] | None = None) -> None:
    """AWS_ENDPOINT_URL and AWS_ENDPOINT_URL_<SERVICE>, which boto3 reads when --endpoint-url is not given."""
    for name, value in sorted((environ if environ is not None else dict(os.environ)).items()):
        # boto3 takes an empty variable for an unset one.
        if value and (name == ENDPOINT_VARIABLE or name.startswith(f"{ENDPOINT_VARIABLE}_")):
            problem = endpoint_url_problem(value)
            if problem:
                raise UsageError(f"{name}: {value!r} {problem}")


# A container image reference as the distribution spec defines it: [registry[:port]/]path[:tag][@digest].
_REGISTRY = (
    r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*(?::[0-9]{1,5})?/)"
)
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_IMAGE = re.compile(
    rf"{_REGISTRY}?{_COMPONENT}(?:/{_COMPONENT})*(?::[A-Za-z0-9_][A-Za-z0-9_.-]{{0,127}})?"
    r"(?:@[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,})?"
)


class ImageReference(click.ParamType):  # type: ignore[type-arg]
    name = "IMAGE"

    def convert(self, value: object, param: click.Parameter | None, ctx: click.Context | None) -> str:
        text = str(value)
        if len(text) > 255 or not _IMAGE.fullmatch(text):
            self.fail(f"{text!r} is not a container image such as 'registry.example.com/cluster-heal:1.0'", param, ctx)
        return text


def budget_options(function: F) -> F:
    """The roll's budget, over the configuration's: how far above and below its desired capacity the group goes."""
    function = click.option(
        "--max-unavailable",
        type=HostShareType(),
        help="Ready hosts the roll may take out before their replacements (default: rolling.max_unavailable); "
        "with --max-surge 0 the group never grows.",
    )(function)
    return click.option(
        "--max-surge",
        type=HostShareType(),
        help="Replacements launched before their old hosts go (default: rolling.max_surge).",
    )(function)


def many_hosts_options(function: F) -> F:
    """What `patch` and `roll`, which replace many hosts, let the user choose."""
    function = budget_options(function)
    function = click.option("--include-protected", is_flag=True, help="Also replace hosts protected from scale-in.")(
        function
    )
    return break_lock_option(function)


def join_token(token_file: Path | None) -> str | None:
    """The kubeadm join token from --join-token-file or $CLUSTER_JOIN_TOKEN (never from the command line itself)."""
    if token_file is not None:
        try:
            return read_text_file(token_file, limit=TOKEN_FILE_LIMIT).strip()
        except UnreadableFile as error:
            raise UsageError(f"--join-token-file: {error}") from None
    value = os.environ.get(JOIN_TOKEN_VARIABLE, "").strip()
    return value or None


class FileArgument(click.Path):
    """A file the command reads (click's checks, and never an empty name, which pathlib would take for '.')."""

    def __init__(self) -> None:
        super().__init__(dir_okay=False, path_type=Path)

    def convert(
        self, value: object, param: click.Parameter | None, ctx: click.Context | None
    ) -> str | bytes | os.PathLike[str]:
        if value == "":
            self.fail("is empty; give a file name", param, ctx)
        return super().convert(value, param, ctx)  # type: ignore[arg-type]


def config_option(function: F) -> F:
    return click.option(
        "-c",
        "--config",
        "config_path",
        type=FileArgument(),
        default=None,
        help=f"Configuration file (default: ./{DEFAULT_CONFIG}).",
    )(function)


def load_config(path: Path | None, *, example_ok: bool) -> ClusterConfig:
    """The config named by ``-c``, else ./cluster.toml. Verbs that change nothing (``example_ok``) fall back to the
    example shipped with the package, and say so on stderr; verbs that act on AWS never guess."""
    from provision.config.loader import load_config as load

    if path is not None:
        return load(path)
    default = Path(DEFAULT_CONFIG)
    if default.exists() or not example_ok:
        return load(default)
    click.echo(f"note: no ./{DEFAULT_CONFIG} here; using the packaged {EXAMPLE_CONFIG}", err=True)
    with as_file(files("provision.templates").joinpath(EXAMPLE_CONFIG)) as example:
        return load(example, source=EXAMPLE_CONFIG)
