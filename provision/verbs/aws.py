"""How a verb reaches AWS: one factory from the config's region and the group's options, and error translation
around the whole verb. Imported only by verbs that talk to AWS (it loads boto3)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from provision.aws.cloud import Cloud
from provision.aws.session import AwsFactory, AwsSettings, aws_errors
from provision.clock import SystemClock
from provision.config.schema import ClusterConfig
from provision.verbs.options import Globals


@contextmanager
def connected(config: ClusterConfig, options: Globals) -> Iterator[Cloud]:
    settings = AwsSettings(region=config.region, profile=options.profile, endpoint_url=options.endpoint_url)
    with aws_errors(settings):
        yield Cloud.connect(AwsFactory(settings), SystemClock())
