"""The tool's one exception hierarchy and its exit codes.

Library code raises a ``ClusterError``; only the CLI edge (``provision.cli.main``) turns it into one line on stderr
and the exit code it carries. Nothing below the CLI calls ``sys.exit``.
"""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    """Every exit code the ``cluster`` command uses. The README lists them; keep the two in step."""

    OK = 0
    FAILED = 1  # the operation ran and did not succeed
    BAD_INPUT = 2  # bad configuration, arguments or host name; nothing was changed
    DECLINED = 3  # the user answered no at a confirmation; nothing was changed
    TIMEOUT = 4  # a wait ran out of time; the operation may still be running in AWS
    AWS_REFUSED = 5  # AWS refused: no credentials, access denied, throttled beyond retries, unknown region
    LOCKED = 6  # another roll holds the cluster's lock; nothing was changed
    INTERRUPTED = 130  # Ctrl-C (128 + SIGINT), as shells report it


class ClusterError(Exception):
    """An error the user can act on. ``str(error)`` is the one line the CLI prints."""

    exit_code: ExitCode = ExitCode.FAILED


class ConfigError(ClusterError):
    """The configuration file is missing, unreadable or invalid. The message names the file and the key."""

    exit_code = ExitCode.BAD_INPUT

    def __init__(self, source: str, key: str, problem: str) -> None:
        self.source = source
        self.key = key
        self.problem = problem
        where = f"{source}: {key}" if key else source
        super().__init__(f"{where}: {problem}")


class UsageError(ClusterError):
    """The command line asks for something that cannot be done (a bad flag combination, a missing prerequisite)."""

    exit_code = ExitCode.BAD_INPUT


class RenderError(ClusterError):
    """The configuration is valid but cannot be rendered within AWS's limits (e.g. user-data over 16 KB)."""

    exit_code = ExitCode.BAD_INPUT
