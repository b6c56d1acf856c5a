"""Host groups in the configuration: what a group inherits and what it sets itself, and every bad group as one line
naming the file and the key, with exit code 2 and nothing rendered."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import pytest

from provision.config.loader import load_config, parse_config
from provision.config.schema import ClusterConfig, Hosts
from provision.errors import ConfigError
from tests.conftest import CONFIGS, EXAMPLE
from tests.test_config_errors import Run, assert_one_error_line, did_you_mean, example, existing_network

SUBNETS = '["subnet-0123456789abcdef0", "subnet-0123456789abcdef1", "subnet-0123456789abcdef2"]'


def with_groups(groups: str, base: str | None = None) -> bytes:
    """The example (or ``base``) with [groups...] tables appended."""
    return ((base if base is not None else example().text) + "\n" + groups + "\n").encode()


def loaded(data: dict[str, Any]) -> ClusterConfig:
    return parse_config(data, source="test.toml")


def example_data(**sections: Any) -> dict[str, Any]:
    data = tomllib.loads(EXAMPLE.read_text())
    return data | sections


# --- what a group is made of ---


def test_without_groups_there_is_one_group_workers_made_of_hosts_rolling_and_health_agent() -> None:
    config = load_config(EXAMPLE)

    [workers] = config.groups.values()
    assert workers.name == "workers" and list(config.groups) == ["workers"]
    hosts_keys = set(Hosts.model_fields)
    assert {key: getattr(workers, key) for key in hosts_keys} == config.hosts.model_dump()
    assert workers.rolling == config.rolling
    assert workers.health_agent == config.health_agent
    assert workers.zones is None and workers.subnet_ids is None
    assert workers.names.group == "HostGroup" and workers.names.launch_template == "HostLaunchTemplate"


def test_a_group_inherits_what_it_leaves_out_key_by_key_in_the_files_order() -> None:
    config = loaded(
        example_data(
            rolling={"max_surge": 2, "drain_timeout_seconds": 600},
            health_agent={"interval_seconds": 20},
            groups={
                "system": {
                    "desired_capacity": 2,
                    "min_size": 2,
                    "labels": {"example.com/pool": "system"},
                    "taints": ["dedicated=system:NoSchedule"],
                    "zones": [2, 1],
                    "rolling": {"max_surge": 0, "max_unavailable": 1},
                    "health_agent": {"failures_before_unhealthy": 5},
                },
                "workers": {},
            },
        )
    )

    assert list(config.groups) == ["system", "workers"]
    system, workers = config.groups["system"], config.groups["workers"]
    # Its own keys replace [hosts]'s whole (labels are not merged); the rest comes from [hosts].
    assert (system.desired_capacity, system.min_size, system.max_size) == (2, 2, 6)
    assert system.labels == {"example.com/pool": "system"}
    assert system.instance_type == "m4.large" and system.root_volume_gib == 50
    assert system.taints == ["dedicated=system:NoSchedule"] and workers.taints == []
    assert system.zones == [2, 1]
    # [groups.system.rolling] and [groups.system.health_agent] override [rolling] and [health_agent] key by key.
    assert (system.rolling.max_surge, system.rolling.max_unavailable) == (0, 1)
    assert system.rolling.drain_timeout_seconds == 600
    assert (system.health_agent.interval_seconds, system.health_agent.failures_before_unhealthy) == (20, 5)
    assert workers.rolling == config.rolling and workers.health_agent == config.health_agent
    assert workers.labels == config.hosts.labels


def test_a_group_naming_its_instance_type_makes_its_own_instance_choice() -> None:
    mix = {"instance_types": ["m5.large", "m5a.large"], "on_demand_base": 1, "on_demand_percentage": 0}
    config = loaded(
        example_data(
            hosts={key: value for key, value in example_data()["hosts"].items() if key != "instance_type"} | mix,
            groups={"gpu": {"instance_type": "g5.xlarge"}, "spot": {"spot_allocation": "capacity-optimized"}},
        )
    )

    gpu, spot = config.groups["gpu"], config.groups["spot"]
    assert not gpu.mixed and gpu.instance_type == "g5.xlarge" and gpu.on_demand_base == 0
    # A group that sets neither instance_type nor instance_types keeps [hosts]'s mix and tunes it.
    assert spot.mixed and spot.instance_types == ["m5.large", "m5a.large"]
    assert (spot.on_demand_base, spot.on_demand_percentage, spot.spot_allocation) == (1, 0, "capacity-optimized")


@pytest.mark.parametrize(
    "taint", ["dedicated=system:NoSchedule", "CriticalAddonsOnly:NoSchedule", "example.com/gpu=a100:NoExecute"]
)
def test_taints_as_kubectl_writes_them_are_accepted(taint: str) -> None:
    config = loaded(example_data(groups={"g": {"taints": [taint]}}))
    assert config.groups["g"].taints == [taint]


def test_the_two_group_test_configurations_load() -> None:
    kubeadm = load_config(CONFIGS / "groups-kubeadm.toml")
    eks = load_config(CONFIGS / "groups-eks.toml")

    assert list(kubeadm.groups) == ["system", "workers"] and list(eks.groups) == ["system", "gpu-batch"]
    assert eks.scaled_group is eks.groups["gpu-batch"]
    assert eks.groups["system"].subnet_ids == ["subnet-0123456789abcdef1", "subnet-0123456789abcdef0"]


# --- bad groups: one line, the file and the key ---

GROUP = "[groups.system]\ndesired_capacity = 2\nmin_size = 2"
BAD_GROUPS = [
    # unknown keys, with a did-you-mean
    pytest.param(
        with_groups(f"{GROUP}\ninstnce_type = 'm5.large'"),
        "groups.system.instnce_type",
        did_you_mean("instance_type"),
        id="unknown-key",
    ),
    pytest.param(
        with_groups(f"{GROUP}\n[groups.system.rolling]\nmax_surg = 2"),
        "groups.system.rolling.max_surg",
        did_you_mean("max_surge"),
        id="unknown-key-in-rolling",
    ),
    pytest.param(
        with_groups(f"{GROUP}\n[groups.system.health_agent]\nintervall_seconds = 20"),
        "groups.system.health_agent.intervall_seconds",
        did_you_mean("interval_seconds"),
        id="unknown-key-in-health-agent",
    ),
    pytest.param(
        with_groups(f"{GROUP}\nname = 'other'"), "groups.system.name", ("unknown key", "its table's"), id="name-key"
    ),
    # names
    pytest.param(with_groups("[groups.System]"), "groups.System", ("is not a group name",), id="name-uppercase"),
    pytest.param(with_groups("[groups.-a]"), "groups.-a", ("not starting or ending with '-'",), id="name-dash"),
    pytest.param(with_groups(f"[groups.{'a' * 21}]"), f"groups.{'a' * 21}", ("1-20",), id="name-21-long"),
    pytest.param(with_groups("[groups.a_b]"), "groups.a_b", ("is not a group name",), id="name-underscore"),
    pytest.param(with_groups("[groups.system]\n[groups.system]"), "", ("TOML syntax error",), id="duplicate-name"),
    pytest.param(
        with_groups("[groups.gpu-a]\n[groups.gpua]"),
        "groups.gpua",
        ("groups.gpu-a", "same names", "HostGroupGpua"),
        id="duplicate-names-after-camel-case",
    ),
    pytest.param(with_groups("[groups]"), "groups", ("has no group",), id="no-group"),
    pytest.param(with_groups("groups = ['system']", base=""), "", (), id="groups-not-a-table"),
    # taints
    pytest.param(
        with_groups(f"{GROUP}\ntaints = ['dedicated=system']"),
        "groups.system.taints[0]",
        ("dedicated=system",),
        id="taint-without-effect",
    ),
    pytest.param(
        with_groups(f"{GROUP}\ntaints = ['dedicated=system:NoSchedul']"),
        "groups.system.taints[0]",
        ("effect 'NoSchedul'", "NoSchedule, PreferNoSchedule, NoExecute"),
        id="taint-bad-effect",
    ),
    pytest.param(
        with_groups(f"{GROUP}\ntaints = ['node-role.kubernetes.io/system:NoSchedule']"),
        "groups.system.taints[0]",
        ("kubernetes.io and k8s.io",),
        id="taint-reserved-node-role",
    ),
    pytest.param(
        with_groups(f"{GROUP}\ntaints = ['node.kubernetes.io/not-ready:NoExecute']"),
        "groups.system.taints[0]",
        ("kubernetes.io and k8s.io",),
        id="taint-reserved-node-controller",
    ),
    pytest.param(
        with_groups(f"{GROUP}\ntaints = ['example.k8s.io/x=y:NoSchedule']"),
        "groups.system.taints[0]",
        ("kubernetes.io and k8s.io",),
        id="taint-reserved-k8s-subdomain",
    ),
    pytest.param(
        with_groups(f"{GROUP}\ntaints = ['$(reboot)=x:NoSchedule']"),
        "groups.system.taints[0]",
        ("is not a taint key",),
        id="taint-shell-in-key",
    ),
    pytest.param(
        with_groups(f"{GROUP}\ntaints = ['dedicated=a b:NoSchedule']"),
        "groups.system.taints[0]",
        ("is not a taint value",),
        id="taint-space-in-value",
    ),
    pytest.param(
        with_groups(f"{GROUP}\ntaints = ['a=b:NoSchedule', 'a=c:NoSchedule']"),
        "groups.system.taints",
        ("key 'a' with effect NoSchedule twice",),
        id="taint-key-and-effect-twice",
    ),
    pytest.param(
        example().set("hosts", "taints", '["dedicated:Sometimes"]').data,
        "hosts.taints[0]",
        ("effect 'Sometimes'",),
        id="taint-bad-in-hosts",
    ),
    # where the group lives
    pytest.param(
        with_groups(f"{GROUP}\nzones = [1, 4]"),
        "groups.system.zones",
        ("zone 4 is not one of the network's 3 availability zones",),
        id="zone-outside-the-network",
    ),
    pytest.param(with_groups(f"{GROUP}\nzones = [0]"), "groups.system.zones[0]", (), id="zone-zero"),
    pytest.param(with_groups(f"{GROUP}\nzones = []"), "groups.system.zones", (), id="zones-empty"),
    pytest.param(with_groups(f"{GROUP}\nzones = [1, 1]"), "groups.system.zones", ("lists 1 twice",), id="zone-twice"),
    pytest.param(
        with_groups(f"{GROUP}\nsubnet_ids = ['subnet-0123456789abcdef0']"),
        "groups.system.subnet_ids",
        ("in a new VPC choose zones",),
        id="subnets-in-a-new-vpc",
    ),
    pytest.param(
        with_groups(f"{GROUP}\nsubnet_ids = ['subnet-0123456789abcdef9']", base=existing_network(SUBNETS).text),
        "groups.system.subnet_ids",
        ("subnet-0123456789abcdef9 is not one of network.subnet_ids",),
        id="subnet-outside-the-network",
    ),
    pytest.param(
        with_groups(f"{GROUP}\nzones = [1]", base=existing_network(SUBNETS).text),
        "groups.system.zones",
        ("choose subnet_ids",),
        id="zones-in-an-existing-network",
    ),
    # instance choice and sizes
    pytest.param(
        with_groups(f"{GROUP}\ninstance_type = 'm5.large'\ninstance_types = ['m5.large']"),
        "groups.system.instance_types",
        ("both given",),
        id="instance-type-and-types",
    ),
    pytest.param(
        with_groups(f"{GROUP}\non_demand_base = 1"),
        "groups.system.on_demand_base",
        ("give instance_types too",),
        id="mix-key-without-types",
    ),
    pytest.param(
        with_groups(f"{GROUP}\ninstance_types = ['m5.large', 'm5.large']"),
        "groups.system.instance_types",
        ("twice",),
        id="instance-types-twice",
    ),
    pytest.param(
        with_groups(f"{GROUP}\ninstance_types = ['m5.large']\nspot_allocation = 'cheapest'"),
        "groups.system.spot_allocation",
        ("price-capacity-optimized",),
        id="spot-allocation-unknown",
    ),
    pytest.param(
        with_groups(f"{GROUP}\ninstance_types = ['m5.large']\non_demand_percentage = 101"),
        "groups.system.on_demand_percentage",
        (),
        id="on-demand-percentage-101",
    ),
    pytest.param(
        with_groups("[groups.system]\nmax_size = 2"),
        "groups.system.min_size",
        ("(3) is greater than max_size (2)",),
        id="sizes-out-of-order-with-inherited-min",
    ),
    pytest.param(
        with_groups(f"{GROUP}\n[groups.system.rolling]\ndrain_timeout_seconds = 1500"),
        "groups.system.rolling.drain_timeout_seconds",
        ("longer than lifecycle.terminate_timeout_seconds (1200)",),
        id="group-drain-outlasts-terminate-hook",
    ),
    pytest.param(
        with_groups(f"{GROUP}\n[groups.system.rolling]\nmax_surge = 0"),
        "groups.system.rolling.max_unavailable",
        ("both 0",),
        id="group-rolling-without-room",
    ),
    # queue scaling picks one group
    pytest.param(
        with_groups(f"[queue_scaling]\nqueue_name = 'jobs'\n{GROUP}\n[groups.workers]"),
        "queue_scaling.group",
        ("several groups", "system, workers"),
        id="queue-scaling-without-group",
    ),
    pytest.param(
        with_groups(f"[queue_scaling]\nqueue_name = 'jobs'\ngroup = 'batch'\n{GROUP}"),
        "queue_scaling.group",
        ("'batch' is not a group",),
        id="queue-scaling-of-an-unknown-group",
    ),
]


@pytest.mark.parametrize(("config", "key", "fragments"), BAD_GROUPS)
def test_bad_group_is_one_line_naming_file_and_key(
    run_main: Run, tmp_path: Path, config: bytes, key: str, fragments: tuple[str, ...]
) -> None:
    path = tmp_path / "bad.toml"
    path.write_bytes(config)

    outcome = run_main("render", "-c", str(path))

    assert_one_error_line(outcome, path, key, fragments)


def test_an_error_in_hosts_is_named_there_not_in_the_group_that_inherits_it() -> None:
    data = example_data(groups={"system": {}})
    data["hosts"] = data["hosts"] | {"instance_type": "m4"}
    with pytest.raises(ConfigError) as caught:
        loaded(data)
    assert caught.value.key == "hosts.instance_type"
