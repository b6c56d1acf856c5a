"""``cluster render``: the CloudFormation template and the host user-data, exactly as ``cluster up`` deploys them."""

from __future__ import annotations

import contextlib
import os
import tempfile
from importlib.resources import files
from pathlib import Path

import click

from provision.errors import UsageError
from provision.verbs.options import (
    DEFAULT_CONFIG,
    EXAMPLE_CONFIG,
    FolderPath,
    ImageReference,
    config_option,
    load_config,
    whole,
)


@click.command("render")
@config_option
@click.option("--format", "fmt", type=click.Choice(["yaml", "json"]), default="yaml", show_default=True)
@click.option(
    "--output",
    "output_dir",
    type=FolderPath(),
    help="Write template.<format> and the user-data into this folder instead of printing the template: userdata.sh, "
    "or userdata-<group>.sh for each of several groups.",
)
@click.option("--userdata", "userdata_only", is_flag=True, help="Print the host user-data instead of the template.")
@click.option("--group", "group", metavar="NAME", help="The group whose user-data --userdata prints (of several).")
@click.option(
    "--patch-generation",
    type=whole(0, 1_000_000),
    default=0,
    show_default=True,
    help="The patch generation to render (`cluster patch` raises the deployed one; `cluster status` shows it).",
)
@click.option(
    "--heal-manifest",
    is_flag=True,
    help="Print the Kubernetes objects that run `cluster heal --watch` in the cluster (Deployment, RBAC, config).",
)
@click.option(
    "--image", type=ImageReference(), help="The heal image for --heal-manifest (default: cluster-heal:<version>)."
)
def command(
    config_path: Path | None,
    fmt: str,
    output_dir: Path | None,
    userdata_only: bool,
    group: str | None,
    patch_generation: int,
    heal_manifest: bool,
    image: str | None,
) -> None:
    """Print the CloudFormation template, or write it and the host user-data to a folder.

    Rendering is pure: it makes no AWS call. The image of an `ssm:` AMI is resolved by CloudFormation at deploy time.
    """
    from provision.render.template import render

    if userdata_only and output_dir is not None:
        raise click.UsageError("--userdata prints the user-data; --output writes both files. Choose one.")
    if heal_manifest:
        if userdata_only or output_dir is not None:
            raise click.UsageError("--heal-manifest prints the Deployment; use it without --userdata and --output.")
        _print_heal_manifest(config_path, image)
        return
    if image is not None:
        raise click.UsageError("--image names the heal image; it goes with --heal-manifest.")
    if group is not None and not userdata_only:
        raise click.UsageError("--group chooses whose user-data --userdata prints; it goes with --userdata.")
    rendered = render(load_config(config_path, example_ok=True), patch_generation=patch_generation)
    text = rendered.text("json" if fmt == "json" else "yaml")
    groups = rendered.groups
    if userdata_only:
        if group is None and len(groups) > 1:
            raise UsageError(f"--userdata: there are several groups ({', '.join(groups)}); choose one with --group")
        chosen = groups.get(group) if group is not None else next(iter(groups.values()))
        if chosen is None:
            raise UsageError(f"--group: there is no group {group!r} (the groups: {', '.join(groups)})")
        click.echo(chosen.userdata, nl=False)
    elif output_dir is None:
        click.echo(text, nl=False)
    else:
        userdata = {
            "userdata.sh" if len(groups) == 1 else f"userdata-{name}.sh": each.userdata for name, each in groups.items()
        }
        _write_both(output_dir, {f"template.{fmt}": text} | userdata)
        written = [str(output_dir / name) for name in [f"template.{fmt}", *userdata]]
        click.echo(f"wrote {', '.join(written[:-1])} and {written[-1]}", err=True)


def _print_heal_manifest(config_path: Path | None, image: str | None) -> None:
    """The heal Deployment carries the configuration file itself (in a ConfigMap), so the text is read as it is."""
    from provision.config.loader import config_from_text, read_config_text
    from provision.heal.manifest import DEFAULT_IMAGE, heal_manifest

    source = config_path or Path(DEFAULT_CONFIG)
    if config_path is not None or source.exists():
        text = read_config_text(source)
        config = config_from_text(text, source=str(source))
    else:  # load_config falls back to the packaged example, and says so
        config = load_config(None, example_ok=True)
        text = files("provision.templates").joinpath(EXAMPLE_CONFIG).read_text(encoding="utf-8")
    click.echo(heal_manifest(config, text, image=image or DEFAULT_IMAGE), nl=False)


def _write_both(folder: Path, texts: dict[str, str]) -> None:
    """Write every file into ``folder`` (made as needed), or, when that fails, leave nothing behind: neither a file
    written nor a folder made."""
    made = [part for part in (folder, *folder.parents) if not part.exists()]
    new: list[Path] = []  # files that were not there before (one that was is replaced whole, never half-written)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        for name, text in texts.items():
            if not (folder / name).exists():
                new.append(folder / name)
            _write_atomically(folder / name, text)
    except OSError as error:
        for path in new:
            path.unlink(missing_ok=True)
        for part in made:  # innermost first; each is empty unless someone else wrote into it meanwhile
            with contextlib.suppress(OSError):
                part.rmdir()
        raise UsageError(f"--output: cannot write into {folder}: {error.strerror or error}") from None


def _write_atomically(path: Path, text: str) -> None:
    """Write beside the target and rename, so an interrupted render never leaves a half-written file."""
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as stream:
            stream.write(text)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
