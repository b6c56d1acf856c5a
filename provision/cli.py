"""The ``cluster`` command: a thin click group whose verbs live in ``provision.verbs.<verb>`` and are imported only
when they run, so ``cluster --help`` answers without loading boto3, troposphere, paramiko or a Kubernetes client.

This module is also the one edge where a ``ClusterError`` becomes one line on stderr and an exit code.
"""

from __future__ import annotations

import signal
import sys
import traceback
from collections.abc import Sequence
from importlib import import_module

import click

from provision import __version__
from provision.errors import ClusterError, ExitCode
from provision.printable import escaped
from provision.verbs.options import EndpointUrl, Globals

# verb -> one-line help. The help is here so that listing the verbs does not import them.
VERBS: dict[str, str] = {
    "up": "Create or update the cluster's stack and wait until its hosts are ready.",
    "render": "Print the CloudFormation template, or write it and the host user-data to a folder.",
    "status": "Show the stack and one row per host: lifecycle, health, fingerprint, node.",
    "patch": "Roll every outdated host: patched replacement first, then cordon, drain, terminate.",
    "replace": "Replace one host, even when the rest of the cluster is unhealthy.",
    "roll": "Replace every host, current or not, the way patch does, without a stack update.",
    "heal": "Drain hosts that the auto-scaling group terminates (lifecycle hook handler).",
    "down": "Delete the cluster's stack and report anything left behind.",
    "ssh": "Open a shell on a host (host keys verified).",
    "exec": "Run a command on several hosts at once.",
    "diagnose": "Save a host's logs and state to a local folder.",
    "doctor": "Find what needs attention and say what to do about it.",
    "sandbox": "Start, stop or show the local sandbox (AWS and Kubernetes simulators).",
    "demo": "Run the whole story on a fresh sandbox: up, replace, patch, a sick host healed, down.",
}


class LazyVerbs(click.Group):
    """Lists every verb from ``VERBS`` and imports a verb's module only when that verb is invoked."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(VERBS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in VERBS:
            return None
        command = import_module(f"provision.verbs.{cmd_name}").command
        assert isinstance(command, click.Command)
        return command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        with formatter.section("Commands"):
            formatter.write_dl(list(VERBS.items()))


@click.group(cls=LazyVerbs, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 120})
@click.option("--debug", is_flag=True, help="Show the full traceback of an error.")
@click.option("--profile", metavar="NAME", help="AWS profile (default: boto3's own choice, e.g. AWS_PROFILE).")
@click.option(
    "--endpoint-url",
    type=EndpointUrl(),
    help="AWS endpoint for every service, e.g. a local moto server (or AWS_ENDPOINT_URL).",
)
@click.option("--sandbox", is_flag=True, help="Talk to the local sandbox (`cluster sandbox start`) instead of AWS.")
@click.option("--kubeconfig", metavar="FILE", help="Kubeconfig (default: kubernetes.kubeconfig, $KUBECONFIG).")
@click.option("--context", metavar="NAME", help="Kubeconfig context (default: kubernetes.context, the current one).")
@click.version_option(__version__, prog_name="cluster")
@click.pass_context
def cli(
    ctx: click.Context,
    debug: bool,
    profile: str | None,
    endpoint_url: str | None,
    sandbox: bool,
    kubeconfig: str | None,
    context: str | None,
) -> None:
    """Provision, patch and heal fleets of Kubernetes worker hosts on AWS."""
    ctx.obj = Globals(debug, profile, endpoint_url, kubeconfig, context, sandbox)


def _click_message(error: click.ClickException) -> str:
    """click's own message (which names the option) on one line, with where to look for help instead of click's
    usage block."""
    message = escaped(" ".join(error.format_message().split()))
    if isinstance(error, click.UsageError) and error.ctx is not None:
        message += f" (see `{error.ctx.command_path} --help`)"
    return message


def _interrupted(signum: int, frame: object) -> None:
    raise KeyboardInterrupt  # a SIGTERM unwinds like Ctrl-C: locks released, processes resumed, progress journaled


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args
    previous = signal.signal(signal.SIGTERM, _interrupted)
    try:
        return _run(args, debug)
    finally:
        signal.signal(signal.SIGTERM, previous)


def _run(args: list[str], debug: bool) -> int:
    try:
        result = cli.main(args=args, prog_name="cluster", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("Aborted; nothing more was done.", err=True)
        return ExitCode.INTERRUPTED
    except click.ClickException as error:
        click.echo(f"error: {_click_message(error)}", err=True)
        return error.exit_code
    except ClusterError as error:
        if debug:
            traceback.print_exc()
        click.echo(f"error: {escaped(str(error))}", err=True)
        return error.exit_code
    except Exception as error:  # a bug: still one line, and the traceback on demand
        if debug:
            traceback.print_exc()
        first = escaped(str(error).splitlines()[0]) if str(error) else ""
        click.echo(
            f"error: unexpected {type(error).__name__}: {first} (rerun with --debug for the traceback)", err=True
        )
        return ExitCode.FAILED
    # click returns the exit code of --help/--version (via click.exceptions.Exit) and None after a verb ran.
    return result if isinstance(result, int) else ExitCode.OK
