"""Options and helpers that several verbs share, so each verb states them once."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from importlib.resources import as_file, files
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import click

from provision.errors import UsageError

if TYPE_CHECKING:
    from provision.config.schema import ClusterConfig

DEFAULT_CONFIG = "cluster.toml"
JOIN_TOKEN_VARIABLE = "CLUSTER_JOIN_TOKEN"  # noqa: S105 - the variable's name, not a secret
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


def yes_option(function: F) -> F:
    return click.option("--yes", "assume_yes", is_flag=True, help="Answer yes to confirmations.")(function)


def break_lock_option(function: F) -> F:
    return click.option("--break-lock", is_flag=True, help="Take over a roll lock that has expired.")(function)


class HostShareType(click.ParamType):  # type: ignore[type-arg]
    """A number of hosts or a percentage of the desired capacity, as rolling.max_surge takes it."""

    name = "N|N%"

    def convert(self, value: object, param: click.Parameter | None, ctx: click.Context | None) -> int | str:
        text = str(value).strip()
        if text.isdigit() and int(text) <= 100:
            return int(text)
        if text.endswith("%") and text[:-1].isdigit() and int(text[:-1]) <= 100:
            return text
        self.fail(f"{text!r} is neither a number of hosts from 0 to 100 nor a percentage such as '25%'", param, ctx)


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
            return token_file.read_text().strip()
        except OSError as error:
            raise UsageError(f"{token_file}: cannot read the join token: {error.strerror or error}") from None
    value = os.environ.get(JOIN_TOKEN_VARIABLE, "").strip()
    return value or None


def config_option(function: F) -> F:
    return click.option(
        "-c",
        "--config",
        "config_path",
        type=click.Path(dir_okay=False, path_type=Path),
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
