"""The one place that builds boto3 sessions and clients, and turns botocore's errors into one line with a next step.

Nothing here runs at import time: a ``AwsFactory`` reads the environment (profile, credentials, AWS_ENDPOINT_URL)
only when the first client is made, through boto3's own resolution.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, overload

import boto3
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    EndpointConnectionError,
    NoCredentialsError,
    NoRegionError,
    PartialCredentialsError,
    ProfileNotFound,
)
from botocore.parsers import ResponseParserError

from provision import __version__
from provision.aws.deadline import DEFAULT_SECONDS, CallDeadline
from provision.errors import ClusterError, ExitCode, UsageError

if TYPE_CHECKING:
    from mypy_boto3_autoscaling import AutoScalingClient
    from mypy_boto3_cloudformation import CloudFormationClient
    from mypy_boto3_cloudwatch import CloudWatchClient
    from mypy_boto3_ec2 import EC2Client
    from mypy_boto3_eks import EKSClient
    from mypy_boto3_sqs import SQSClient
    from mypy_boto3_ssm import SSMClient

CONNECT_SECONDS = 10.0
READ_SECONDS = 60.0
# Services whose calls may ask AWS to wait before it answers, and for how long at most: SQS's long poll.
LONG_POLL_SECONDS = {"sqs": 20.0}


def client_config(call_seconds: float, service: str) -> Config:
    """Adaptive retries back off on throttling across all calls of the process. No attempt may wait longer than the
    whole call may take (``provision.aws.deadline``), so a dead endpoint cannot hang a verb."""
    return Config(
        retries={"mode": "adaptive", "max_attempts": 8},
        connect_timeout=min(CONNECT_SECONDS, call_seconds),
        read_timeout=min(READ_SECONDS, call_seconds) + LONG_POLL_SECONDS.get(service, 0.0),
        user_agent_extra=f"cluster/{__version__}",
    )


ACCESS_DENIED = {"AccessDenied", "AccessDeniedException", "UnauthorizedOperation", "AuthorizationError"}
THROTTLED = {"Throttling", "ThrottlingException", "RequestLimitExceeded", "TooManyRequestsException"}
BAD_CREDENTIALS = {"InvalidClientTokenId", "UnrecognizedClientException", "SignatureDoesNotMatch", "AuthFailure"}
EXPIRED = {"ExpiredToken", "ExpiredTokenException", "RequestExpired"}


class AwsRefused(ClusterError):
    """AWS (or the way to it) said no: credentials, permissions, throttling, region."""

    exit_code = ExitCode.AWS_REFUSED


@dataclass(frozen=True)
class AwsSettings:
    region: str
    profile: str | None = None
    endpoint_url: str | None = None  # None: boto3's own resolution, which honours AWS_ENDPOINT_URL
    static_credentials: tuple[str, str] | None = None  # the sandbox's fake key pair; None: boto3's own chain
    call_seconds: float = DEFAULT_SECONDS  # the longest one AWS call may take, retries included


class AwsFactory:
    """Builds one session and caches one client per service."""

    def __init__(self, settings: AwsSettings) -> None:
        self.settings = settings
        self._session: boto3.Session | None = None
        self._clients: dict[str, Any] = {}

    def session(self) -> boto3.Session:
        if self._session is None:
            with aws_errors(self.settings):
                key, secret = self.settings.static_credentials or (None, None)
                self._session = boto3.Session(
                    profile_name=self.settings.profile,
                    region_name=self.settings.region,
                    aws_access_key_id=key,
                    aws_secret_access_key=secret,
                )
            self._check_region(self._session)
        return self._session

    def _check_region(self, session: boto3.Session) -> None:
        if self.settings.endpoint_url:
            return  # a local endpoint (the sandbox, moto) answers for any region
        known = set(session.get_available_regions("cloudformation"))
        if self.settings.region not in known:
            raise UsageError(
                f"unknown AWS region {self.settings.region!r}; check `region` in the configuration "
                "(or upgrade boto3 if the region is new)"
            )

    @overload
    def client(self, service: Literal["cloudformation"]) -> CloudFormationClient: ...
    @overload
    def client(self, service: Literal["autoscaling"]) -> AutoScalingClient: ...
    @overload
    def client(self, service: Literal["ec2"]) -> EC2Client: ...
    @overload
    def client(self, service: Literal["ssm"]) -> SSMClient: ...
    @overload
    def client(self, service: Literal["eks"]) -> EKSClient: ...
    @overload
    def client(self, service: Literal["cloudwatch"]) -> CloudWatchClient: ...
    @overload
    def client(self, service: Literal["sqs"]) -> SQSClient: ...
    def client(self, service: str) -> Any:
        if service not in self._clients:
            seconds = self.settings.call_seconds
            client = self.session().client(
                service,  # type: ignore[call-overload]
                config=client_config(seconds, service),
                endpoint_url=self.settings.endpoint_url,
            )
            CallDeadline(seconds).watch(client)
            self._clients[service] = client
        return self._clients[service]


def error_code(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code", ""))


@contextmanager
def aws_errors(settings: AwsSettings) -> Iterator[None]:
    """Turn botocore's exceptions into a ``ClusterError`` whose message is one line: what happened, what to do."""
    try:
        yield
    except (NoCredentialsError, PartialCredentialsError):
        raise AwsRefused(
            "no AWS credentials found: set AWS_PROFILE (or --profile), run `aws configure` or `aws sso login`"
        ) from None
    except ProfileNotFound as error:
        raise UsageError(f"AWS profile {error.kwargs.get('profile')!r} is not in ~/.aws/config") from None
    except NoRegionError:
        raise UsageError("no AWS region: set `region` in the configuration") from None
    except EndpointConnectionError as error:
        raise AwsRefused(
            f"cannot reach {error.kwargs.get('endpoint_url')}: check `region` ({settings.region}) and the network"
        ) from None
    except ClientError as error:
        raise translate_client_error(error) from error
    except (BotoCoreError, ResponseParserError) as error:
        raise AwsRefused(f"AWS call failed: {str(error).splitlines()[0]}") from error


def translate_client_error(error: ClientError) -> ClusterError:
    code = error_code(error)
    operation = error.operation_name
    message = str(error.response.get("Error", {}).get("Message", "")).rstrip(".")
    if code in ACCESS_DENIED:
        return AwsRefused(f"access denied to {operation}: {message}; the caller's IAM policy must allow it")
    if code in THROTTLED:
        return AwsRefused(f"AWS throttled {operation} beyond the retries; wait a minute and run the command again")
    if code in EXPIRED:
        return AwsRefused(f"the AWS credentials have expired ({operation}); refresh them and run the command again")
    if code in BAD_CREDENTIALS:
        return AwsRefused(f"AWS rejected the credentials ({code} in {operation}); check the profile and the region")
    return ClusterError(f"{operation} failed: {code}: {message}")
