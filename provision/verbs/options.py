"""Options and helpers that several verbs share, so each verb states them once."""

from __future__ import annotations

from collections.abc import Callable
from importlib.resources import as_file, files
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import click

if TYPE_CHECKING:
    from provision.config.schema import ClusterConfig

DEFAULT_CONFIG = "cluster.toml"
EXAMPLE_CONFIG = "cluster.example.toml"

F = TypeVar("F", bound=Callable[..., object])


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
