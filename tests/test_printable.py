"""What hosts write, operators read: text that hosts (boot records, health verdicts), Kubernetes and AWS hand back is
printed without terminal escape sequences or control characters, through the one function at the printing boundary.
The reports are checked where an operator reads them: `cluster status` and `cluster doctor` on moto, and the CLI's
error line."""

from __future__ import annotations

import io
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import boto3
import pytest
from rich.console import Console

from provision.aws.cloud import Cloud
from provision.deploy.status import collect, show
from provision.doctor.checks import diagnose
from provision.doctor.observe import gather
from provision.doctor.show import show as show_doctor
from provision.printable import escaped, printable
from provision.ui import UI
from tests.conftest import EXAMPLE as EXAMPLE_FILE
from tests.conftest import Outcome
from tests.deploykit import REGION, recording_ui
from tests.test_heal_status import EXAMPLE, tag, up

# What a hostile host could write: retitle the window, clear the screen, a hyperlink that hides its target, a
# carriage return that overwrites what came before, a bell, a right-to-left override, 8-bit CSI.
HOSTILE = (
    "\x1b]0;you have been owned\x07\x1b[2J\x1b[1;31mfailing:kubelet\x1b[0m"
    "\x1b]8;;https://evil.example\x1b\\disk\x1b]8;;\x1b\\\rhealthy\x07 \u202etxt.exe\x9b2J"
)
# What EC2 lets through to a tag (its XML answers cannot carry ESC or BEL): the 8-bit forms, and the override.
HOSTILE_TAG = "\x9d0;you have been owned\x9c\x9b2J\x9b1;31mfailing:kubelet\x9b0m \u202etxt.exe"


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("plain text, ünïcode ✓ and\ttabs", "plain text, ünïcode ✓ and\ttabs"),
        ("\x1b[1;31mred\x1b[0m", "red"),  # colour (CSI)
        ("a\x1b[2J\x1b[Hb", "ab"),  # clear screen, cursor home
        ("\x1b]0;title\x07after", "after"),  # window title (OSC ... BEL)
        ("\x1b]52;c;cGFzdGU=\x1b\\after", "after"),  # clipboard write (OSC ... ST)
        ("\x1bP+q544e\x1b\\after", "after"),  # a DCS query the terminal would answer as if typed
        ("\x9b2Jafter", "after"),  # 8-bit CSI
        ("\x1bcreset", "reset"),  # full reset (ESC c)
        ("ok\rFAKE", "ok FAKE"),  # a carriage return no longer overwrites the line
        ("one\ntwo\r\nthree", "one two three"),  # one line
        ("bell\x07 null\x00 del\x7f bs\x08", "bell null del bs"),
        ("\u202eexe.txt \u2066isolate\u2069", "exe.txt isolate"),  # bidirectional overrides (Trojan Source)
        ("unterminated \x1b]0;title", "unterminated "),
    ],
)
def test_escape_sequences_and_control_characters_are_stripped(text: str, shown: str) -> None:
    assert printable(text) == shown


def test_error_lines_show_controls_escaped_on_one_line() -> None:
    assert escaped("key 'a\nb'\x1b]0;t\x07 \u202eé") == "key 'a\\nb'\\x1b]0;t\\x07 \\u202eé"


def test_lines_keep_their_breaks_when_asked() -> None:
    assert printable("one\ntwo\r\nthree\rfour", lines=True) == "one\ntwo\nthree\nfour"


def terminal_ui() -> tuple[UI, io.StringIO]:
    """A UI on what rich takes for a terminal: it adds escape sequences of its own (colour), never the host's."""
    out = io.StringIO()
    return UI(Console(file=out, width=200, force_terminal=True, highlight=False), ask=None, assume_yes=True), out


def no_hostile_sequence(out: str) -> None:
    for sequence in ("\x1b]", "\x1b[2J", "\x07", "\r", "\u202e", "\x9b", "\x9c", "\x9d"):
        assert sequence not in out, repr(sequence)


def test_status_prints_a_hosts_hostile_verdict_without_its_escape_sequences(cloud: Cloud) -> None:
    sick, _, _ = up(EXAMPLE, cloud)
    tag([sick], f"2026-11-25T06:00:00Z {HOSTILE_TAG} failures=3")
    report = collect(EXAMPLE, cloud, now=datetime.now(UTC))

    plain, plain_out = recording_ui()
    show(report, plain)
    fancy, fancy_out = terminal_ui()
    show(report, fancy)

    assert "\x1b" not in plain_out.getvalue()
    no_hostile_sequence(fancy_out.getvalue())
    [row] = [line for line in plain_out.getvalue().splitlines() if line.startswith(sick)]
    assert "failing:kubelet txt.exe" in row, "what the host said is still shown, as text"
    assert "\\u009b" in report.to_json(), "json escapes it: scripts see it all, a terminal shows nothing of it"


def test_doctor_prints_a_hosts_hostile_boot_record_without_its_escape_sequences(cloud: Cloud) -> None:
    sick, _, _ = up(EXAMPLE, cloud)
    boto3.client("ssm", region_name=REGION).put_parameter(
        Name=f"/cluster/demo/hosts/{sick}/boot",
        Value=f"failed step=join exit=1 at=2026-11-25T06:00:00Z\nkubeadm: {HOSTILE}",
        Type="String",
    )
    report = diagnose(gather(EXAMPLE, cloud, now=datetime.now(UTC), kube=None))

    plain, plain_out = recording_ui()
    show_doctor(report, plain, header="doctor")
    fancy, fancy_out = terminal_ui()
    show_doctor(report, fancy, header="doctor")

    assert "\x1b" not in plain_out.getvalue()
    no_hostile_sequence(fancy_out.getvalue())
    # The record's log lines are split at line breaks, "\r" too: the last one is the cause.
    assert "cause: healthy txt.exe\n" in plain_out.getvalue()


class HostileAws(BaseHTTPRequestHandler):
    """An AWS endpoint (or whatever answers in its place) whose error message carries what XML allows of a terminal's
    controls: 8-bit OSC and CSI, a carriage return, a right-to-left override."""

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        body = (
            b"<ErrorResponse><Error><Type>Sender</Type><Code>ValidationError</Code><Message>"
            b"&#157;0;you have been owned&#156;&#155;2Jrefused&#13;FAKE &#x202E;txt</Message></Error>"
            b"<RequestId>1</RequestId></ErrorResponse>"
        )
        self.send_response(400)
        self.send_header("Content-Type", "text/xml")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def hostile_aws() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), HostileAws)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


def test_the_error_line_quotes_what_aws_said_on_one_line_with_its_controls_escaped(
    run_main: Callable[..., Outcome], hostile_aws: str
) -> None:
    outcome = run_main("--endpoint-url", hostile_aws, "status", "-c", str(EXAMPLE_FILE))

    # An error line shows what it quotes escaped, rather than cleaned: the user sees exactly what was said.
    assert outcome.code == 1
    assert outcome.err == (
        "error: DescribeStacks failed: ValidationError: "
        "\\x9d0;you have been owned\\x9c\\x9b2Jrefused\\rFAKE \\u202etxt\n"
    )
