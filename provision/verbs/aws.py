"""How a verb reaches AWS and Kubernetes: one AWS factory from the config's region and the group's options, error
translation around the whole verb, and the Kubernetes facade when the cluster's API can be reached. Imported only by
verbs that talk to AWS (it loads boto3)."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

from provision.aws.cloud import Cloud
from provision.aws.deadline import call_seconds
from provision.aws.session import AwsFactory, AwsSettings, aws_errors
from provision.clock import SystemClock
from provision.config.schema import ClusterConfig, EksControlPlane
from provision.errors import UsageError
from provision.sandbox.state import STATE_DIR, SandboxState, is_ours
from provision.verbs.options import Globals, check_endpoint_variables

if TYPE_CHECKING:
    from provision.kube.facade import Kube


@dataclass
class Connection:
    config: ClusterConfig
    options: Globals
    factory: AwsFactory
    cloud: Cloud

    def kube(self) -> tuple[Kube | None, str]:
        """The Kubernetes facade and "", or None and why the API cannot be used (then Kubernetes checks are
        skipped and said to be)."""
        from lightkube import Client, KubeConfig

        from provision.aws.eks_token import eks_kubeconfig, eks_token
        from provision.kube.facade import FIELD_MANAGER, Kube, connect

        try:
            if isinstance(self.config.control_plane, EksControlPlane) and not (
                self.options.kubeconfig or self.options.sandbox
            ):
                access = self.cloud.eks.access(self.config.name)
                token = eks_token(self.factory.session(), self.config.name, self.config.region)
                conf = KubeConfig.from_dict(
                    eks_kubeconfig(self.config.name, access.endpoint, access.certificate_authority, token)
                )
                client = Client(config=conf, field_manager=FIELD_MANAGER, trust_env=False)
            else:
                client = connect(
                    self.options.kubeconfig or self.config.kubernetes.kubeconfig,
                    self.options.context or self.config.kubernetes.context,
                )
            kube = Kube(client)
            kube.nodes()  # reachable and allowed?
        except UsageError as error:
            return None, str(error)
        except Exception as error:  # the API's own errors, connection and TLS failures alike
            return None, f"the Kubernetes API is not reachable ({type(error).__name__}: {error})"
        return kube, ""


SANDBOX_CREDENTIALS = ("sandbox", "sandbox")


def sandboxed(options: Globals) -> Globals:
    """With --sandbox: the sandbox's AWS endpoint and kubeconfig, from the state file `cluster sandbox start` wrote."""
    if not options.sandbox:
        return options
    state = SandboxState.load(STATE_DIR)
    if state is None or not is_ours(state.pid):
        raise UsageError("--sandbox: no sandbox is running here; start one with `cluster sandbox start`")
    return dataclasses.replace(options, endpoint_url=state.aws_endpoint, kubeconfig=state.kubeconfig, profile=None)


@contextmanager
def connected(config: ClusterConfig, options: Globals) -> Iterator[Connection]:
    options = sandboxed(options)
    if options.endpoint_url is None:  # else the endpoint given wins over the environment's, for every service
        check_endpoint_variables()
    settings = AwsSettings(
        region=config.region,
        profile=options.profile,
        endpoint_url=options.endpoint_url,
        static_credentials=SANDBOX_CREDENTIALS if options.sandbox else None,
        call_seconds=call_seconds(os.environ),
    )
    with aws_errors(settings):
        factory = AwsFactory(settings)
        yield Connection(config, options, factory, Cloud.connect(factory, SystemClock()))
