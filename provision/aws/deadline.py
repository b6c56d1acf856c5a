"""One deadline for each AWS call, all its retries included.

botocore bounds each attempt (connect and read timeouts) and retries up to ``max_attempts`` times with backoff, so an
endpoint that accepts connections and never answers held a verb for minutes: eight attempts of a full read timeout
each, plus the backoff between them. Here every call gets ``seconds`` from its start; an attempt that would begin
after that is not made, and the call fails with one line naming the endpoint and the deadline (exit 5).

The deadline is checked before each attempt, and an attempt is itself bounded by the read timeout, which the factory
keeps no longer than the deadline: a call ends within about one deadline, at most two when a retry starts just before
it runs out. A call that asks AWS to wait (SQS's long poll, ``WaitTimeSeconds``) gets that wait on top.

The number comes from ``CLUSTER_AWS_TIMEOUT`` (seconds; 30 when unset), read and checked before the first call.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlsplit

from provision.errors import ClusterError, ExitCode, UsageError

VARIABLE = "CLUSTER_AWS_TIMEOUT"
DEFAULT_SECONDS = 30.0
LIMITS = (1.0, 3600.0)
_DEADLINE = "cluster:deadline"  # keys of botocore's per-call context, which every attempt's request carries
_LAST_FAILURE = "cluster:last-failure"


class AwsTimedOut(ClusterError):
    """AWS did not answer a call within the deadline: the endpoint is unreachable for practical purposes."""

    exit_code = ExitCode.AWS_REFUSED


def call_seconds(environ: Mapping[str, str]) -> float:
    """The deadline of one AWS call from ``CLUSTER_AWS_TIMEOUT``; a value that is not a number of seconds within
    the limits is a usage error naming the variable."""
    text = environ.get(VARIABLE, "").strip()
    if not text:
        return DEFAULT_SECONDS
    low, high = LIMITS
    try:
        seconds = float(text)
    except ValueError:
        seconds = math.nan
    if not (math.isfinite(seconds) and low <= seconds <= high):
        raise UsageError(f"{VARIABLE}={text!r}: must be a number of seconds from {low:g} to {high:g}")
    return seconds


class CallDeadline:
    """Installs the deadline on a botocore client through its events (no wrapper around the client's methods)."""

    def __init__(self, seconds: float, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.seconds = seconds
        self.clock = clock

    def watch(self, client: Any) -> None:
        events = client.meta.events
        # before-parameter-build sees the call's own parameters and the context its every attempt will carry.
        events.register("before-parameter-build", self._started)
        events.register("needs-retry", self._failed)
        events.register("before-send", self._check)

    def _started(self, params: Mapping[str, Any], context: dict[str, Any], **_: Any) -> None:
        waits = params.get("WaitTimeSeconds") or 0
        context[_DEADLINE] = self.clock() + self.seconds + (float(waits) if isinstance(waits, int | float) else 0)

    @staticmethod
    def _failed(
        request_dict: Mapping[str, Any], caught_exception: Exception | None = None, response: Any = None, **_: Any
    ) -> None:
        """Remembers why the last attempt failed, for the message if the deadline ends the call."""
        context = request_dict.get("context")
        if context is None:
            return
        if caught_exception is not None:
            context[_LAST_FAILURE] = str(caught_exception).splitlines()[0] if str(caught_exception) else ""
        elif response is not None and getattr(response[0], "status_code", 200) >= 400:
            code = response[1].get("Error", {}).get("Code", "") if isinstance(response[1], dict) else ""
            context[_LAST_FAILURE] = f"HTTP {response[0].status_code}{f' {code}' if code else ''}"

    def _check(self, request: Any, event_name: str = "", **_: Any) -> None:
        context = getattr(request, "context", None) or {}
        deadline = context.get(_DEADLINE)
        if deadline is None or self.clock() < deadline:
            return
        url = urlsplit(str(request.url))
        _event, service, operation = [*event_name.split("."), "", ""][:3]  # before-send.<service>.<operation>
        last = context.get(_LAST_FAILURE)
        raise AwsTimedOut(
            f"AWS at {url.scheme}://{url.netloc} did not complete {service} {operation} within {self.seconds:g}s, "
            f"retries included{f' (last attempt: {last})' if last else ''}; check the endpoint, the region and the "
            f"network, or allow longer with {VARIABLE}=SECONDS"
        )
