"""`up` and `status` with the Kubernetes side: moto (in-process) as AWS, the API simulator as the cluster, one
virtual clock for both. Nodes join the way hosts do: their providerID names the instance."""

from __future__ import annotations

from datetime import UTC, datetime

import boto3
import pytest

from provision import names
from provision.aws.cloud import Cloud
from provision.aws.session import AwsFactory, AwsSettings
from provision.clock import WaitTimeout
from provision.deploy.status import collect
from provision.deploy.up import Up
from provision.kube.facade import Kube, connect
from tests.deploykit import REGION, TOKEN, config, recording_ui
from tests.simkit import Simulator, simulator

__all__ = ["simulator"]  # the fixture

EXAMPLE = config()


def instances(cloud: Cloud) -> list[dict[str, str]]:
    group = cloud.stacks.resources(EXAMPLE.stack_name)[names.HOST_GROUP]
    described = boto3.client("autoscaling", region_name=REGION).describe_auto_scaling_groups(
        AutoScalingGroupNames=[group]
    )["AutoScalingGroups"][0]["Instances"]
    return [{"id": i["InstanceId"], "zone": i["AvailabilityZone"]} for i in described]


def join(sim: Simulator, cloud: Cloud) -> list[str]:
    """Every host of the group registers its node, as the boot script's kubeadm join does."""
    joined = []
    for index, host in enumerate(instances(cloud)):
        name = f"ip-10-42-0-{index + 10}.{REGION}.compute.internal"
        sim.world.add_node(name, provider_id=f"aws:///{host['zone']}/{host['id']}")
        joined.append(name)
    return joined


@pytest.fixture
def cloud_and_cluster(moto: None, simulator: Simulator) -> tuple[Cloud, Simulator, Kube]:
    cloud = Cloud.connect(AwsFactory(AwsSettings(region=REGION)), simulator.clock)
    return cloud, simulator, Kube(connect(kubeconfig=str(simulator.kubeconfig)))


def test_up_waits_until_every_hosts_node_is_ready(cloud_and_cluster: tuple[Cloud, Simulator, Kube]) -> None:
    cloud, sim, kube = cloud_and_cluster
    joined: list[str] = []

    def hosts_boot(now: float) -> None:
        sim.world.tick()
        if now >= 30 and not joined and cloud.stacks.find(EXAMPLE.stack_name):
            joined.extend(join(sim, cloud))

    sim.clock.on_sleep = hosts_boot
    ui, out = recording_ui()

    Up(EXAMPLE, cloud, ui, timeout=600, kube=lambda: (kube, "")).run(dry_run=False, join_token=TOKEN)

    assert len(joined) == 3
    assert "3 node(s) Ready" in out.getvalue()
    assert sim.clock.now() >= 30, "it waited for the nodes"


def test_up_times_out_naming_what_to_look_at_when_nodes_never_join(
    cloud_and_cluster: tuple[Cloud, Simulator, Kube],
) -> None:
    cloud, _, kube = cloud_and_cluster

    with pytest.raises(WaitTimeout, match=r"waiting for the nodes of cluster-demo-HostGroup-\w+ to be Ready; "):
        Up(EXAMPLE, cloud, recording_ui()[0], timeout=600, kube=lambda: (kube, "")).run(dry_run=False, join_token=TOKEN)


def test_up_without_kubernetes_access_says_readiness_was_not_checked(cloud: Cloud) -> None:
    ui, out = recording_ui()

    Up(EXAMPLE, cloud, ui, timeout=600, kube=lambda: (None, "no kubeconfig at /nowhere")).run(
        dry_run=False, join_token=TOKEN
    )

    assert "node readiness not checked: no kubeconfig at /nowhere" in out.getvalue()


def test_status_shows_each_hosts_node_readiness_schedulability_and_pods(
    cloud_and_cluster: tuple[Cloud, Simulator, Kube],
) -> None:
    cloud, sim, kube = cloud_and_cluster
    Up(EXAMPLE, cloud, recording_ui()[0], timeout=600).run(dry_run=False, join_token=TOKEN)
    joined = join(sim, cloud)
    sim.deployment("web", 6)
    sim.settle(5)
    kube.cordon(joined[0])
    sim.world.set_node_ready(joined[1], False)

    report = collect(EXAMPLE, cloud, now=datetime.now(UTC), kube=kube)

    rows = {row.node: row for row in report.hosts}
    assert set(rows) == set(joined)
    assert (rows[joined[0]].ready, rows[joined[0]].schedulable) == ("yes", "no")
    assert (rows[joined[1]].ready, rows[joined[1]].schedulable) == ("NO", "yes")
    assert sum(int(row.pods) for row in report.hosts) == 6
    assert all(row.current for row in report.hosts)


def test_status_marks_a_host_without_a_node(cloud_and_cluster: tuple[Cloud, Simulator, Kube]) -> None:
    cloud, _, kube = cloud_and_cluster
    Up(EXAMPLE, cloud, recording_ui()[0], timeout=600).run(dry_run=False, join_token=TOKEN)

    report = collect(EXAMPLE, cloud, now=datetime.now(UTC), kube=kube)

    assert [(row.node, row.ready, row.pods) for row in report.hosts] == [("-", "-", "-")] * 3
