"""Order and deadlines: an AWS endpoint that accepts connections and never answers ends a verb with one line naming
the endpoint and the deadline (exit 5) instead of botocore's eight attempts of a full read timeout each; and what can
be checked locally (the deadline's own setting, the join token, host names, folders) is refused before the first
AWS call, even when AWS cannot be reached."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from provision.errors import ExitCode
from tests.conftest import EXAMPLE, Outcome

Run = Callable[..., Outcome]


@dataclass
class SilentEndpoint:
    """A TCP server on 127.0.0.1 that accepts every connection, reads nothing and never answers: a hung endpoint."""

    listener: socket.socket
    accepted: list[socket.socket] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.listener.getsockname()[1]}"

    def serve(self) -> None:
        while True:
            try:
                connection, _ = self.listener.accept()
            except OSError:  # closed: the test is over
                return
            self.accepted.append(connection)


@pytest.fixture
def silent() -> Iterator[SilentEndpoint]:
    listener = socket.create_server(("127.0.0.1", 0))
    endpoint = SilentEndpoint(listener)
    thread = threading.Thread(target=endpoint.serve, daemon=True)
    thread.start()
    try:
        yield endpoint
    finally:
        listener.shutdown(socket.SHUT_RDWR)
        listener.close()
        thread.join(10)
        for connection in endpoint.accepted:
            connection.close()


def test_status_against_an_endpoint_that_never_answers_ends_at_the_deadline(
    run_main: Run, silent: SilentEndpoint, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CLUSTER_AWS_TIMEOUT", "1")  # 30 s by default; small here, so the test does not wait

    outcome = run_main("--endpoint-url", silent.url, "status", "-c", str(EXAMPLE))

    assert outcome.code == ExitCode.AWS_REFUSED
    [line] = outcome.err.splitlines()
    assert line.startswith(
        f"error: AWS at {silent.url} did not complete cloudformation DescribeStacks within 1s, retries included "
        "(last attempt: Read timeout on endpoint URL: "
    ), line
    assert line.endswith(
        "; check the endpoint, the region and the network, or allow longer with CLUSTER_AWS_TIMEOUT=SECONDS"
    )
    # The first attempt waited out its read timeout, which is no longer than the deadline; no retry was started
    # after it (botocore alone makes eight).
    assert len(silent.accepted) == 1


class Throttled(BaseHTTPRequestHandler):
    """An endpoint that answers every call with CloudFormation's throttling error: botocore retries it with backoff."""

    calls = 0

    def do_POST(self) -> None:
        type(self).calls += 1
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        body = (
            b"<ErrorResponse><Error><Type>Sender</Type><Code>Throttling</Code><Message>Rate exceeded</Message>"
            b"</Error><RequestId>1</RequestId></ErrorResponse>"
        )
        self.send_response(400)
        self.send_header("Content-Type", "text/xml")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


def test_a_call_throttled_past_its_deadline_says_what_the_last_attempt_got(
    run_main: Run, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CLUSTER_AWS_TIMEOUT", "1")
    server = ThreadingHTTPServer(("127.0.0.1", 0), Throttled)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        outcome = run_main(
            "--endpoint-url", f"http://127.0.0.1:{server.server_address[1]}", "status", "-c", str(EXAMPLE)
        )
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)

    assert outcome.code == ExitCode.AWS_REFUSED
    assert (
        "did not complete cloudformation DescribeStacks within 1s, retries included (last attempt: HTTP 400 Throttling)"
        in outcome.err
    )
    assert 1 <= Throttled.calls < 8, "stopped by the deadline, before botocore's eight attempts"


@pytest.mark.parametrize("value", ["0", "0.5", "-3", "nan", "inf", "1e9", "thirty", "30s"])
def test_a_bad_deadline_is_refused_before_any_aws_call(
    run_main: Run, silent: SilentEndpoint, monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv("CLUSTER_AWS_TIMEOUT", value)

    outcome = run_main("--endpoint-url", silent.url, "status", "-c", str(EXAMPLE))

    assert outcome.code == ExitCode.BAD_INPUT
    assert outcome.err == f"error: CLUSTER_AWS_TIMEOUT={value!r}: must be a number of seconds from 1 to 3600\n"
    assert silent.accepted == []


@pytest.fixture
def unreachable(silent: SilentEndpoint, monkeypatch: pytest.MonkeyPatch) -> SilentEndpoint:
    """AWS as a hung endpoint, with a deadline short enough that a check made too late fails fast, not slowly."""
    monkeypatch.setenv("CLUSTER_AWS_TIMEOUT", "1")
    return silent


def test_a_malformed_join_token_is_refused_before_any_aws_call(
    run_main: Run, unreachable: SilentEndpoint, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CLUSTER_JOIN_TOKEN", "not-a-token")

    outcome = run_main("--endpoint-url", unreachable.url, "up", "--yes", "-c", str(EXAMPLE))

    assert outcome.code == ExitCode.BAD_INPUT
    assert outcome.err == "error: the join token is not a kubeadm bootstrap token ([a-z0-9]{6}.[a-z0-9]{16})\n"
    assert unreachable.accepted == []


@pytest.mark.parametrize(
    ("args", "refusal"),
    [
        (["replace", "i-0abc;reboot", "--yes"], "Invalid value for 'HOST': 'i-0abc;reboot'"),
        (["ssh", "i-0abc -oProxyCommand=x"], "Invalid value for 'HOST': 'i-0abc -oProxyCommand=x'"),
        (["exec", "i-0abc", "$(id)", "--", "uptime"], "Invalid value for '[HOSTS]...': '$(id)'"),
        (["diagnose", "ip-10-0-0-1\n.ec2.internal"], "Invalid value for 'HOST': 'ip-10-0-0-1\\n.ec2.internal'"),
        (["diagnose", "i-0abc", "--output", "notes/saved"], "Invalid value for '--output': 'notes/saved' cannot be"),
    ],
)
def test_host_names_and_folders_are_refused_before_any_aws_call(
    run_main: Run, unreachable: SilentEndpoint, in_tmp: Path, args: list[str], refusal: str
) -> None:
    (in_tmp / "notes").write_text("a file where a folder would go\n")
    verb, *rest = args

    outcome = run_main("--endpoint-url", unreachable.url, verb, "-c", str(EXAMPLE), *rest)

    assert outcome.code == ExitCode.BAD_INPUT
    assert outcome.err.startswith(f"error: {refusal}"), outcome.err
    assert outcome.err.count("\n") == 1
    assert unreachable.accepted == []
