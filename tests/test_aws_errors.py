"""AWS failures become one line with a next step and a named exit code; paging is followed, never per host."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError, NoCredentialsError

from provision.aws.instances import Instances
from provision.aws.session import AwsRefused, AwsSettings, aws_errors
from provision.errors import ClusterError, ExitCode
from tests.conftest import EXAMPLE, Outcome

SETTINGS = AwsSettings(region="eu-west-1")


def client_error(code: str, message: str = "nope", operation: str = "DescribeStacks") -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": message}}, operation)


@pytest.mark.parametrize(
    ("raised", "expected", "code"),
    [
        (NoCredentialsError(), "no AWS credentials found: set AWS_PROFILE", ExitCode.AWS_REFUSED),
        (
            client_error("AccessDenied", "User: x is not authorized to perform: cloudformation:DescribeStacks."),
            "access denied to DescribeStacks: User: x is not authorized to perform: cloudformation:DescribeStacks; "
            "the caller's IAM policy must allow it",
            ExitCode.AWS_REFUSED,
        ),
        (client_error("Throttling"), "AWS throttled DescribeStacks beyond the retries; wait a minute", 5),
        (client_error("ExpiredToken"), "the AWS credentials have expired (DescribeStacks)", 5),
        (client_error("InvalidClientTokenId"), "AWS rejected the credentials (InvalidClientTokenId", 5),
        (EndpointConnectionError(endpoint_url="https://x"), "cannot reach https://x: check `region` (eu-west-1)", 5),
        (
            client_error("ValidationError", "Template error"),
            "DescribeStacks failed: ValidationError: Template error",
            1,
        ),
    ],
)
def test_aws_failures_become_one_line_with_a_next_step(raised: Exception, expected: str, code: int) -> None:
    with pytest.raises(ClusterError) as caught, aws_errors(SETTINGS):
        raise raised

    assert str(caught.value).startswith(expected)
    assert "\n" not in str(caught.value)
    assert caught.value.exit_code == code


def test_no_credentials_through_the_command(run_main: Callable[..., Outcome], monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")

    outcome = run_main("status", "-c", str(EXAMPLE))

    assert outcome.code == ExitCode.AWS_REFUSED
    assert outcome.err.startswith("error: no AWS credentials found")
    assert outcome.err.count("\n") == 1


def test_unknown_region_through_the_command(run_main: Callable[..., Outcome], in_tmp: Any) -> None:
    config = in_tmp / "far.toml"
    config.write_text(EXAMPLE.read_text().replace('region = "eu-west-1"', 'region = "xx-nowhere-9"'))

    outcome = run_main("status", "-c", str(config))

    assert outcome.code == ExitCode.BAD_INPUT
    assert (
        outcome.err == "error: unknown AWS region 'xx-nowhere-9'; check `region` in the configuration "
        "(or upgrade boto3 if the region is new)\n"
    )


def test_verbs_that_act_on_aws_never_fall_back_to_the_example(run_main: Callable[..., Outcome]) -> None:
    outcome = run_main("up", "--yes")

    assert outcome.code == ExitCode.BAD_INPUT
    assert outcome.err.startswith("error: cluster.toml: no such file")


class PagedEc2:
    """describe_instances in pages of 100, counting the calls."""

    def __init__(self, count: int) -> None:
        self.pages = [
            {
                "Reservations": [
                    {
                        "Instances": [
                            {
                                "InstanceId": f"i-{index:017x}",
                                "State": {"Name": "running"},
                                "LaunchTime": datetime(2026, 11, 1, tzinfo=UTC),
                            }
                            for index in range(start, min(start + 100, count))
                        ]
                    }
                ]
            }
            for start in range(0, count, 100)
        ]
        self.calls = 0

    def get_paginator(self, operation: str) -> PagedEc2:
        assert operation == "describe_instances"
        return self

    def paginate(self, **request: Any) -> Iterator[dict[str, Any]]:
        for page in self.pages:
            self.calls += 1
            yield page


def test_500_hosts_are_read_in_5_pages_not_500_calls() -> None:
    ec2 = PagedEc2(500)

    found = Instances(ec2).of_group("group")  # type: ignore[arg-type]

    assert len(found) == 500
    assert ec2.calls == 5


def test_refusals_are_their_own_exit_code() -> None:
    assert AwsRefused("x").exit_code == ExitCode.AWS_REFUSED
    assert int(ExitCode.AWS_REFUSED) == 5
