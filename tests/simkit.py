"""The Kubernetes API simulator for tests: served over HTTP on 127.0.0.1, in virtual time. The world moves only
when the code under test sleeps on the shared FakeClock (each sleep is one tick), so every test is deterministic."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from moto import mock_aws

from provision.aws.cloud import Cloud
from provision.aws.session import AwsFactory, AwsSettings
from provision.sandbox.hosts import HostSimulator
from provision.simulator.api import KubeApiServer, kubeconfig_for
from provision.simulator.world import Timings, World
from tests.fakeclock import FakeClock


@dataclass
class Simulator:
    world: World
    server: KubeApiServer
    clock: FakeClock
    kubeconfig: Path

    def settle(self, seconds: float = 10.0) -> None:
        """Let virtual time pass in one-second ticks (pods start, become Ready, controllers react)."""
        for _ in range(int(seconds)):
            self.clock.sleep(1.0)

    def deployment(self, name: str, replicas: int, *, namespace: str = "default", **pod_spec: Any) -> None:
        labels = {"app": name}
        self.world.create(
            "Deployment",
            namespace,
            {
                "metadata": {"name": name},
                "spec": {
                    "replicas": replicas,
                    "selector": {"matchLabels": labels},
                    "template": {
                        "metadata": {"labels": labels},
                        "spec": {"containers": [{"name": "main", "image": "nginx"}], **pod_spec},
                    },
                },
            },
        )

    def budget(self, name: str, app: str, *, namespace: str = "default", **limits: Any) -> None:
        self.world.create(
            "PodDisruptionBudget",
            namespace,
            {"metadata": {"name": name}, "spec": {"selector": {"matchLabels": {"app": app}}, **limits}},
        )


@pytest.fixture
def simulator(tmp_path: Path) -> Iterator[Simulator]:
    clock = FakeClock()
    world = World(clock, Timings(start_delay=1.0, ready_delay=1.0, termination_delay=1.0))
    clock.on_sleep = lambda _now: world.tick()
    server = KubeApiServer(world).start()
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(yaml.safe_dump(kubeconfig_for(server.url)))
    try:
        yield Simulator(world, server, clock, kubeconfig)
    finally:
        server.stop()


@contextmanager
def virtual_cloud(
    simulator: Simulator, region: str, *, hook_scale: float = 1.0
) -> Iterator[tuple[Cloud, HostSimulator]]:
    """moto in-process as AWS, with the host simulator booting its instances (10 s) into the simulator's cluster;
    both move on each sleep of the simulator's virtual clock."""
    with mock_aws():
        cloud = Cloud.connect(AwsFactory(AwsSettings(region=region)), simulator.clock)
        hosts = HostSimulator(simulator.world, simulator.clock, boot_seconds=10, gone_seconds=5, hook_scale=hook_scale)

        def tick(_now: float) -> None:
            hosts.tick()
            simulator.world.tick()

        simulator.clock.on_sleep = tick
        yield cloud, hosts
