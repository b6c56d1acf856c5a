"""The rendered CloudFormation template: golden files, cfn-lint, and the security properties it promises."""

from __future__ import annotations

import copy
import json
import subprocess
import tomllib
from importlib.resources import as_file, files
from pathlib import Path
from typing import Any

import cfn_flip  # type: ignore[import-untyped]  # the YAML loader CloudFormation templates need (short tags)
import pytest
from cfnlint.api import ManualArgs, lint

from provision import names
from provision.config.loader import load_config, parse_config
from provision.config.schema import ClusterConfig
from provision.errors import RenderError
from provision.render.template import Rendered, render
from provision.render.userdata import USERDATA_LIMIT
from tests.conftest import CONFIGS, EXAMPLE, GOLDEN

CASES = {"kubeadm": EXAMPLE, "eks": CONFIGS / "eks.toml"}  # one group each (other test modules use these too)
TWO_GROUPS = {"groups-kubeadm": CONFIGS / "groups-kubeadm.toml", "groups-eks": CONFIGS / "groups-eks.toml"}
ALL_CASES = CASES | TWO_GROUPS
# The templates of the last version before host groups (main at 93f74aa: its golden templates of the example and
# tests/configs/eks.toml). Frozen: stacks made by that version exist, and must update in place.
BEFORE_GROUPS = {
    "kubeadm": GOLDEN / "upgrade/kubeadm-single-group.template.yaml",
    "eks": GOLDEN / "upgrade/eks-single-group.template.yaml",
}


def rendered(mode: str) -> Rendered:
    return render(load_config(ALL_CASES[mode]))


def resources(template: dict[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    return {name: body for name, body in template["Resources"].items() if body["Type"] == kind}


def as_dict(result: Rendered) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(result.text("json"))
    return data


def launch_data(template: dict[str, Any], logical_id: str = names.LAUNCH_TEMPLATE) -> dict[str, Any]:
    data: dict[str, Any] = template["Resources"][logical_id]["Properties"]["LaunchTemplateData"]
    return data


def cfn_lint(template: dict[str, Any], region: str) -> list[str]:
    """cfn-lint with its own rules and the project's custom rules (templates/cfn-lint-rules.txt)."""
    with as_file(files("provision.templates").joinpath("cfn-lint-rules.txt")) as rules:
        matches = lint(json.dumps(template), config=ManualArgs(regions=[region], custom_rules=str(rules)))
    return [f"{match.rule.id} {match.message}" for match in matches]


def example_data() -> dict[str, Any]:
    return tomllib.loads(EXAMPLE.read_text())


def with_changes(**sections: dict[str, Any]) -> ClusterConfig:
    data = example_data()
    for section, values in sections.items():
        data[section] = data.get(section, {}) | values
    return parse_config(data, source="test")


@pytest.mark.parametrize("mode", ALL_CASES)
@pytest.mark.parametrize("fmt", ["yaml", "json"])
def test_golden_template(mode: str, fmt: str, update_golden: bool) -> None:
    golden = GOLDEN / f"{mode}.template.{fmt}"
    text = rendered(mode).text("json" if fmt == "json" else "yaml")
    if update_golden:
        golden.write_text(text)
    assert text == golden.read_text(), f"rendered template differs from {golden}; rerun with --update-golden if meant"


@pytest.mark.parametrize("mode", CASES)
def test_golden_userdata(mode: str, update_golden: bool) -> None:
    golden = GOLDEN / f"{mode}.userdata.sh"
    text = rendered(mode).userdata
    if update_golden:
        golden.write_text(text)
    assert text == golden.read_text()


@pytest.mark.parametrize("mode", ALL_CASES)
def test_rendering_is_deterministic(mode: str) -> None:
    assert rendered(mode).text("yaml") == rendered(mode).text("yaml")
    assert rendered(mode).digest == rendered(mode).digest


@pytest.mark.parametrize("mode", ALL_CASES)
def test_cfn_lint_accepts_the_template(mode: str) -> None:
    config = load_config(ALL_CASES[mode])
    assert cfn_lint(as_dict(render(config)), config.region) == []


@pytest.mark.parametrize(
    ("breakage", "rule_message"),
    [
        pytest.param(
            lambda lt: lt["MetadataOptions"].pop("HttpTokens"), "set MetadataOptions.HttpTokens", id="no-tokens"
        ),
        pytest.param(lambda lt: lt.pop("MetadataOptions"), "set MetadataOptions.HttpTokens", id="no-metadata-options"),
        pytest.param(
            lambda lt: lt["MetadataOptions"].update(HttpTokens="optional"), "HttpTokens must be required", id="optional"
        ),
        pytest.param(
            lambda lt: lt["MetadataOptions"].update(HttpPutResponseHopLimit=2), "hop limit above 1", id="hop-limit-2"
        ),
        pytest.param(
            lambda lt: lt["BlockDeviceMappings"][0]["Ebs"].update(Encrypted=False),
            "must be encrypted",
            id="unencrypted",
        ),
        pytest.param(
            lambda lt: lt["NetworkInterfaces"][0].update(AssociatePublicIpAddress=True),
            "must not get a public address",
            id="public-address",
        ),
    ],
)
def test_custom_lint_rules_catch_an_unsafe_launch_template(breakage: Any, rule_message: str) -> None:
    template = copy.deepcopy(as_dict(rendered("kubeadm")))
    breakage(launch_data(template))

    problems = cfn_lint(template, "eu-west-1")

    assert [problem for problem in problems if rule_message in problem], problems


@pytest.mark.parametrize("mode", ALL_CASES)
def test_shellcheck_accepts_the_userdata_of_every_group(mode: str, shellcheck: str, tmp_path: Path) -> None:
    scripts = []
    for group in rendered(mode).groups.values():
        scripts.append(tmp_path / f"userdata-{group.name}.sh")
        scripts[-1].write_text(group.userdata)
    result = subprocess.run([shellcheck, *map(str, scripts)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout


def test_shellcheck_accepts_the_health_agent(shellcheck: str) -> None:
    # The agent travels inside a quoted heredoc of the user-data, where shellcheck does not look, so check it alone.
    with as_file(files("provision.userdata").joinpath("health-agent.sh")) as agent:
        result = subprocess.run([shellcheck, str(agent)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout


def test_launch_template_is_safe_by_default() -> None:
    data = launch_data(as_dict(rendered("kubeadm")))

    assert data["InstanceType"] == "m4.large"
    assert data["MetadataOptions"]["HttpTokens"] == "required"
    assert data["MetadataOptions"]["HttpPutResponseHopLimit"] == 1
    [root] = data["BlockDeviceMappings"]
    assert root["Ebs"] | {"VolumeSize": 0} == {
        "VolumeType": "gp3",
        "Encrypted": True,
        "DeleteOnTermination": True,
        "VolumeSize": 0,
    }
    assert "KeyName" not in data
    assert data["ImageId"] == {"Ref": names.IMAGE_PARAMETER}
    # No public address even in a public subnet; the security groups travel with the only interface.
    [interface] = data["NetworkInterfaces"]
    assert interface["AssociatePublicIpAddress"] is False
    assert interface["Groups"] == [{"Ref": names.HOST_SECURITY_GROUP}]
    assert "SecurityGroupIds" not in data


def test_no_port_is_open_from_outside_by_default() -> None:
    template = as_dict(rendered("kubeadm"))
    group = template["Resources"][names.HOST_SECURITY_GROUP]["Properties"]

    ports = {(rule["FromPort"], rule["CidrIp"]) for rule in group["SecurityGroupIngress"]}

    assert ports == {(10250, "10.0.0.0/24")}, "only the kubeadm control plane may reach the kubelet"
    [self_rule] = resources(template, "AWS::EC2::SecurityGroupIngress").values()
    assert self_rule["Properties"]["SourceSecurityGroupId"] == {"Ref": names.HOST_SECURITY_GROUP}


def test_ssh_opens_only_to_the_configured_networks() -> None:
    group = as_dict(rendered("eks"))["Resources"][names.HOST_SECURITY_GROUP]["Properties"]
    ssh = [rule for rule in group["SecurityGroupIngress"] if rule["FromPort"] == 22]
    assert [rule["CidrIp"] for rule in ssh] == ["10.0.0.0/8"]


def test_iam_is_scoped_to_this_cluster() -> None:
    template = as_dict(rendered("kubeadm"))
    role = template["Resources"][names.HOST_ROLE]["Properties"]
    statements = {statement["Sid"]: statement for statement in role["Policies"][0]["PolicyDocument"]["Statement"]}

    lifecycle = statements["LifecycleAndHealthOfOwnGroup"]
    assert lifecycle["Resource"] == [
        {
            "Fn::Sub": "arn:${AWS::Partition}:autoscaling:${AWS::Region}:${AWS::AccountId}:autoScalingGroup:*:"
            "autoScalingGroupName/${AWS::StackName}-*"
        }
    ]
    assert lifecycle["Condition"] == {"StringEquals": {"autoscaling:ResourceTag/cluster:name": "demo"}}
    assert statements["ReadClusterParameters"]["Resource"] == [
        {"Fn::Sub": "arn:${AWS::Partition}:ssm:${AWS::Region}:${AWS::AccountId}:parameter/cluster/demo/*"}
    ]
    # Boot failures are the only host records in SSM; the health verdict is a tag the host may set on itself only.
    assert statements["RecordBootFailure"]["Resource"] == [
        {"Fn::Sub": "arn:${AWS::Partition}:ssm:${AWS::Region}:${AWS::AccountId}:parameter/cluster/demo/hosts/*/boot"}
    ]
    tag = statements["TagOwnInstanceWithHealth"]
    assert tag["Action"] == ["ec2:CreateTags"]
    assert tag["Resource"] == [{"Fn::Sub": "arn:${AWS::Partition}:ec2:${AWS::Region}:${AWS::AccountId}:instance/*"}]
    assert tag["Condition"] == {
        "StringEquals": {"aws:ARN": "${ec2:SourceInstanceARN}", "ec2:ResourceTag/cluster:name": "demo"},
        "ForAllValues:StringEquals": {"aws:TagKeys": [names.HEALTH_TAG, names.REPAIR_TAG]},
        "Null": {"aws:TagKeys": "false"},
    }
    # The storm guard's slots: read and created below the cluster's repair path, nowhere else; no delete.
    repair = statements["ClaimRepairSlot"]
    assert repair["Action"] == ["ssm:GetParametersByPath", "ssm:PutParameter"]
    assert repair["Resource"] == [
        {"Fn::Sub": "arn:${AWS::Partition}:ssm:${AWS::Region}:${AWS::AccountId}:parameter/cluster/demo/repair"},
        {"Fn::Sub": "arn:${AWS::Partition}:ssm:${AWS::Region}:${AWS::AccountId}:parameter/cluster/demo/repair/*"},
    ]
    ssm_actions = {action for statement in statements.values() for action in statement["Action"] if "ssm:" in action}
    ssm_writes = {action for action in ssm_actions if not action.startswith(("ssm:Get", "ssm:UpdateInstance"))}
    assert ssm_writes == {"ssm:PutParameter"}, "no delete of any parameter"
    ec2_actions = {action for statement in statements.values() for action in statement["Action"] if "ec2:" in action}
    assert ec2_actions == {"ec2:CreateTags"}, "no DeleteTags, no other EC2 write"
    # Only actions that AWS cannot scope to a resource get "*".
    unscoped = {sid for sid, statement in statements.items() if statement["Resource"] == ["*"]}
    assert unscoped == {"FindOwnGroup", "SessionManager"}
    assert not [a for a in statements["SessionManager"]["Action"] if a.startswith("ssm:")], "channels only"
    registration = statements["SessionManagerRegistration"]
    assert registration["Action"] == ["ssm:UpdateInstanceInformation"]
    assert registration["Resource"] == tag["Resource"], "EC2 instances only"
    managed = json.dumps(role["ManagedPolicyArns"])
    assert "AmazonSSMManagedInstanceCore" not in managed
    assert "AmazonEC2ContainerRegistryReadOnly" in managed


def test_token_kms_key_is_granted_through_ssm_only() -> None:
    key = "arn:aws:kms:eu-west-1:123456789012:key/00000000-0000-0000-0000-000000000000"
    template = as_dict(render(with_changes(control_plane={"token_kms_key": key})))
    statements = template["Resources"][names.HOST_ROLE]["Properties"]["Policies"][0]["PolicyDocument"]["Statement"]
    [decrypt] = [statement for statement in statements if statement["Sid"] == "DecryptJoinToken"]
    assert decrypt["Resource"] == [key]
    assert decrypt["Condition"] == {"StringEquals": {"kms:ViaService": {"Fn::Sub": "ssm.${AWS::Region}.amazonaws.com"}}}


def test_group_lifecycle_hooks_and_policies() -> None:
    group = as_dict(rendered("kubeadm"))["Resources"][names.HOST_GROUP]
    hooks = {hook["LifecycleHookName"]: hook for hook in group["Properties"]["LifecycleHookSpecificationList"]}

    assert hooks[names.LAUNCH_HOOK]["DefaultResult"] == "ABANDON"
    assert hooks[names.LAUNCH_HOOK]["LifecycleTransition"] == "autoscaling:EC2_INSTANCE_LAUNCHING"
    assert hooks[names.TERMINATE_HOOK]["DefaultResult"] == "CONTINUE"
    assert hooks[names.TERMINATE_HOOK]["HeartbeatTimeout"] >= 900, "long enough to drain"
    assert group["CreationPolicy"]["ResourceSignal"]["Count"] == 3
    assert group["UpdatePolicy"] == {"AutoScalingScheduledAction": {"IgnoreUnmodifiedGroupSizeProperties": True}}
    assert group["Properties"]["LaunchTemplate"]["Version"] == {
        "Fn::GetAtt": [names.LAUNCH_TEMPLATE, "LatestVersionNumber"]
    }
    assert len(group["Properties"]["VPCZoneIdentifier"]) == 3


def test_new_vpc_spreads_hosts_over_private_subnets_in_three_zones() -> None:
    template = as_dict(rendered("kubeadm"))
    subnets = resources(template, "AWS::EC2::Subnet")
    hosts = {name: body for name, body in subnets.items() if name.startswith("HostSubnet")}

    assert [body["Properties"]["AvailabilityZone"]["Fn::Select"][0] for body in hosts.values()] == [0, 1, 2]
    assert all(body["Properties"]["MapPublicIpOnLaunch"] is False for body in subnets.values())
    assert len(resources(template, "AWS::EC2::NatGateway")) == 3
    blocks = [body["Properties"]["CidrBlock"] for body in subnets.values()]
    assert len(set(blocks)) == len(blocks) == 6


def test_existing_network_adds_no_network_resources() -> None:
    template = as_dict(rendered("eks"))
    assert not resources(template, "AWS::EC2::VPC") and not resources(template, "AWS::EC2::Subnet")
    assert template["Resources"][names.HOST_GROUP]["Properties"]["VPCZoneIdentifier"][0] == "subnet-0123456789abcdef0"


def test_fingerprint_tags_every_host_with_its_configuration() -> None:
    result = rendered("kubeadm")
    data = launch_data(as_dict(result))
    expected = {"Fn::Sub": f"${{ImageId}}/0/{result.digest}"}

    for spec in data["TagSpecifications"]:
        assert {"Key": names.FINGERPRINT_TAG, "Value": expected} in spec["Tags"]
    assert as_dict(result)["Outputs"][names.OUTPUT_FINGERPRINT]["Value"] == expected


@pytest.mark.parametrize(
    "change",
    [
        pytest.param({"hosts": {"instance_type": "m5.large"}}, id="instance-type"),
        pytest.param({"hosts": {"root_volume_gib": 80}}, id="volume"),
        pytest.param({"patching": {"release": "2023.6.20241010"}}, id="release-pin-changes-userdata"),
        pytest.param({"health_agent": {"interval_seconds": 60}}, id="agent-interval"),
    ],
)
def test_fingerprint_changes_with_what_the_host_runs(change: dict[str, dict[str, Any]]) -> None:
    assert render(with_changes(**change)).digest != rendered("kubeadm").digest


def test_fingerprint_ignores_what_hosts_need_not_be_replaced_for() -> None:
    assert render(with_changes(hosts={"max_size": 9})).digest == rendered("kubeadm").digest


def test_eks_mode_creates_the_control_plane_and_access_entry() -> None:
    template = as_dict(rendered("eks"))
    [cluster] = resources(template, "AWS::EKS::Cluster").values()
    [entry] = resources(template, "AWS::EKS::AccessEntry").values()

    assert cluster["Properties"]["Name"] == "batch"
    assert cluster["Properties"]["AccessConfig"]["AuthenticationMode"] == "API"
    assert cluster["Properties"]["ResourcesVpcConfig"]["PublicAccessCidrs"] == ["203.0.113.0/24"]
    assert entry["Properties"] == {
        "ClusterName": {"Ref": names.EKS_CLUSTER},
        "PrincipalArn": {"Fn::GetAtt": [names.HOST_ROLE, "Arn"]},
        "Type": "EC2_LINUX",
    }
    assert template["Resources"][names.HOST_GROUP]["DependsOn"] == ["HostAccessEntry"]


def test_kubeadm_mode_has_no_control_plane() -> None:
    template = as_dict(rendered("kubeadm"))
    assert not [body for body in template["Resources"].values() if body["Type"].startswith("AWS::EKS::")]


def test_queue_scaling_tracks_backlog_per_in_service_host() -> None:
    template = as_dict(rendered("eks"))
    [policy] = resources(template, "AWS::AutoScaling::ScalingPolicy").values()
    tracking = policy["Properties"]["TargetTrackingConfiguration"]
    queries = {query["Id"]: query for query in tracking["CustomizedMetricSpecification"]["Metrics"]}

    assert tracking["TargetValue"] == 50.0
    assert queries["backlog_per_host"] == {
        "Expression": "backlog / hosts",
        "Id": "backlog_per_host",
        "Label": "Backlog per host",
        "ReturnData": True,
    }
    assert queries["backlog"]["MetricStat"]["Metric"]["Dimensions"] == [{"Name": "QueueName", "Value": "jobs"}]
    assert queries["hosts"]["MetricStat"]["Metric"]["MetricName"] == "GroupInServiceInstances"


def test_no_queue_scaling_unless_configured() -> None:
    assert not resources(as_dict(rendered("kubeadm")), "AWS::AutoScaling::ScalingPolicy")


def test_outputs_name_what_other_verbs_read() -> None:
    outputs = as_dict(rendered("eks"))["Outputs"]
    assert set(outputs) == {
        names.OUTPUT_GROUP,
        names.OUTPUT_LAUNCH_TEMPLATE,
        names.OUTPUT_ROLE,
        names.OUTPUT_FINGERPRINT,
        names.OUTPUT_PARAMETER_PATH,
        names.OUTPUT_EKS_CLUSTER,
        names.OUTPUT_LIFECYCLE_QUEUE_URL,
        names.OUTPUT_HEAL_HANDLER_POLICY,
    }


@pytest.mark.parametrize("mode", ALL_CASES)
def test_userdata_of_every_group_stays_under_the_ec2_limit(mode: str) -> None:
    for group in rendered(mode).groups.values():
        assert len(group.userdata.encode()) < USERDATA_LIMIT * 0.75, f"{group.name}: keep room for labels and taints"


def test_userdata_over_the_limit_is_refused_with_the_key_to_change() -> None:
    labels = {f"example.com/label-{index:03}": "v" * 63 for index in range(200)}
    with pytest.raises(RenderError, match=r"hosts\.labels: the rendered user-data of group workers is \d+ bytes"):
        render(with_changes(hosts={"labels": labels}))


def test_every_rendered_value_is_assigned_once_at_the_top_of_the_userdata() -> None:
    # The quoting guarantee rests on this: values from the configuration only ever appear as `readonly NAME=value`
    # assignments (quoted by the environment's finalize hook), never spliced into commands or heredocs.
    source = files("provision.userdata").joinpath("bootstrap.sh.j2").read_text()
    lines = [line for line in source.splitlines() if "{{" in line]
    assert lines
    for line in lines:
        if line.startswith("# "):
            continue
        assert line.startswith("readonly ") and line.endswith("}}"), line


def test_hostile_values_reach_the_userdata_quoted() -> None:
    # The schema refuses metacharacters; this checks the second guard on its own by bypassing the schema.
    config = with_changes()
    hostile = config.model_copy(update={"name": "x'; reboot; echo '$(id)"})
    text = render(hostile).userdata
    assert "readonly CLUSTER='x'\"'\"'; reboot; echo '\"'\"'$(id)'" in text


def test_the_taints_of_a_group_over_the_limit_are_named_in_its_table() -> None:
    taints = [f"example.com/taint-{index:03}={'v' * 63}:NoSchedule" for index in range(50)]
    data = example_data() | {
        "groups": {"system": {"taints": taints, "labels": {f"example.com/l{i}": "v" * 63 for i in range(60)}}}
    }
    with pytest.raises(
        RenderError, match=r"groups\.system\.labels: the rendered user-data of group system is \d+ bytes"
    ):
        render(parse_config(data, source="test"))


# --- host groups ---


def groups_of(template: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return resources(template, "AWS::AutoScaling::AutoScalingGroup")


def test_each_group_has_its_own_launch_template_group_hooks_and_outputs() -> None:
    result = rendered("groups-kubeadm")
    template = as_dict(result)

    assert set(groups_of(template)) == {"HostGroup", "HostGroupSystem"}
    assert set(resources(template, "AWS::EC2::LaunchTemplate")) == {"HostLaunchTemplate", "HostLaunchTemplateSystem"}
    system = template["Resources"]["HostGroupSystem"]
    assert system["Properties"]["LaunchTemplate"]["LaunchTemplateId"] == {"Ref": "HostLaunchTemplateSystem"}
    assert system["CreationPolicy"]["ResourceSignal"]["Count"] == 2
    assert system["UpdatePolicy"] == {"AutoScalingScheduledAction": {"IgnoreUnmodifiedGroupSizeProperties": True}}
    for group in groups_of(template).values():
        hooks = {hook["LifecycleHookName"] for hook in group["Properties"]["LifecycleHookSpecificationList"]}
        assert hooks == {names.LAUNCH_HOOK, names.TERMINATE_HOOK}
    outputs = template["Outputs"]
    assert outputs["HostGroupNameSystem"]["Value"] == {"Ref": "HostGroupSystem"}
    assert outputs["LaunchTemplateIdSystem"]["Value"] == {"Ref": "HostLaunchTemplateSystem"}
    assert outputs["HostFingerprintSystem"]["Value"] == {
        "Fn::Sub": f"${{ImageIdSystem}}/0/{result.groups['system'].digest}"
    }
    assert outputs[names.OUTPUT_FINGERPRINT]["Value"] == {
        "Fn::Sub": f"${{ImageId}}/0/{result.groups['workers'].digest}"
    }
    assert result.groups["system"].digest != result.groups["workers"].digest
    system_hosts = launch_data(template, "HostLaunchTemplateSystem")["TagSpecifications"][0]["Tags"]
    assert {"Key": "Name", "Value": "demo-system-host"} in system_hosts
    assert {"Key": "Name", "Value": "demo-host"} in launch_data(template)["TagSpecifications"][0]["Tags"]


def test_every_group_has_the_names_the_scheme_gives_it() -> None:
    template = as_dict(rendered("groups-eks"))
    ids = names.group_names("gpu-batch")

    assert (ids.group, ids.launch_template, ids.image_parameter) == (
        "HostGroupGpuBatch",
        "HostLaunchTemplateGpuBatch",
        "ImageIdGpuBatch",
    )
    assert (ids.output_group, ids.output_launch_template, ids.output_fingerprint) == (
        "HostGroupNameGpuBatch",
        "LaunchTemplateIdGpuBatch",
        "HostFingerprintGpuBatch",
    )
    assert {ids.group, ids.launch_template} <= set(template["Resources"])
    assert {ids.output_group, ids.output_launch_template, ids.output_fingerprint} <= set(template["Outputs"])
    # No group is named workers here: nothing has the names of the earlier single group.
    assert names.HOST_GROUP not in template["Resources"] and names.OUTPUT_GROUP not in template["Outputs"]


def test_adding_groups_beside_workers_leaves_its_group_and_launch_template_as_they_were() -> None:
    before = as_dict(rendered("kubeadm"))
    data = example_data() | {
        "groups": {"system": {"desired_capacity": 2, "min_size": 2, "taints": ["a=b:NoSchedule"]}, "workers": {}}
    }
    after = as_dict(render(parse_config(data, source="test")))

    for logical_id in (names.HOST_GROUP, names.LAUNCH_TEMPLATE):
        assert after["Resources"][logical_id] == before["Resources"][logical_id], logical_id
    for output in (names.OUTPUT_GROUP, names.OUTPUT_LAUNCH_TEMPLATE, names.OUTPUT_FINGERPRINT):
        assert after["Outputs"][output]["Value"] == before["Outputs"][output]["Value"], output
    assert set(before["Resources"]) < set(after["Resources"])


@pytest.mark.parametrize("mode", BEFORE_GROUPS)
def test_a_config_without_groups_renders_the_resources_of_the_version_before_groups(mode: str) -> None:
    earlier = json.loads(cfn_flip.to_json(BEFORE_GROUPS[mode].read_text()))
    now = as_dict(rendered(mode))

    assert set(now["Resources"]) == set(earlier["Resources"])
    assert set(now["Outputs"]) == set(earlier["Outputs"]) and set(now["Parameters"]) == set(earlier["Parameters"])
    assert now["Resources"][names.HOST_GROUP] == earlier["Resources"][names.HOST_GROUP]


def test_the_lifecycle_rule_and_heal_policy_cover_every_group_of_the_stack_and_no_other() -> None:
    template = as_dict(rendered("groups-kubeadm"))
    resources_ = template["Resources"]

    pattern = resources_[names.LIFECYCLE_EVENT_RULE]["Properties"]["EventPattern"]
    assert pattern["detail"]["AutoScalingGroupName"] == [{"Ref": "HostGroupSystem"}, {"Ref": "HostGroup"}]
    statements = {
        s["Sid"]: s for s in resources_[names.HEAL_HANDLER_POLICY]["Properties"]["PolicyDocument"]["Statement"]
    }
    prefix = (
        "arn:${AWS::Partition}:autoscaling:${AWS::Region}:${AWS::AccountId}:autoScalingGroup:*:autoScalingGroupName/"
    )
    assert statements["CompleteLifecycleActionsOfOwnGroup"]["Resource"] == [
        {"Fn::Sub": prefix + "${HostGroupSystem}"},
        {"Fn::Sub": prefix + "${HostGroup}"},
    ]
    # The hosts' role reaches the groups of this stack that carry this cluster's tag: every group, no other.
    role = resources_[names.HOST_ROLE]["Properties"]["Policies"][0]["PolicyDocument"]["Statement"]
    [own] = [statement for statement in role if statement["Sid"] == "LifecycleAndHealthOfOwnGroup"]
    assert own["Resource"] == [{"Fn::Sub": prefix + "${AWS::StackName}-*"}]
    assert own["Condition"] == {"StringEquals": {"autoscaling:ResourceTag/cluster:name": "demo"}}
    for group in groups_of(template).values():
        assert {"Key": names.CLUSTER_TAG, "PropagateAtLaunch": False, "Value": "demo"} in group["Properties"]["Tags"]


def test_a_mixed_instances_group_takes_its_types_from_the_policy_not_the_launch_template() -> None:
    template = as_dict(rendered("groups-kubeadm"))
    workers = template["Resources"][names.HOST_GROUP]["Properties"]

    assert "LaunchTemplate" not in workers and workers["CapacityRebalance"] is True
    policy = workers["MixedInstancesPolicy"]
    assert policy["InstancesDistribution"] == {
        "OnDemandBaseCapacity": 1,
        "OnDemandPercentageAboveBaseCapacity": 0,
        "SpotAllocationStrategy": "price-capacity-optimized",
    }
    assert policy["LaunchTemplate"]["LaunchTemplateSpecification"] == {
        "LaunchTemplateId": {"Ref": names.LAUNCH_TEMPLATE},
        "Version": {"Fn::GetAtt": [names.LAUNCH_TEMPLATE, "LatestVersionNumber"]},
    }
    assert [item["InstanceType"] for item in policy["LaunchTemplate"]["Overrides"]] == [
        "m5.large",
        "m5a.large",
        "m4.large",
    ]
    assert "InstanceType" not in launch_data(template)
    assert launch_data(template, "HostLaunchTemplateSystem")["InstanceType"] == "m5.large"
    assert "MixedInstancesPolicy" not in template["Resources"]["HostGroupSystem"]["Properties"]


def test_the_mix_of_instance_types_is_part_of_the_fingerprint() -> None:
    config = load_config(TWO_GROUPS["groups-kubeadm"])
    workers = config.groups["workers"]
    fewer = config.model_copy(
        update={"groups": config.groups | {"workers": workers.model_copy(update={"instance_types": ["m5.large"]})}}
    )
    odds = config.model_copy(
        update={"groups": config.groups | {"workers": workers.model_copy(update={"on_demand_percentage": 50})}}
    )

    assert render(fewer).groups["workers"].digest != render(config).groups["workers"].digest
    assert render(odds).groups["workers"].digest == render(config).groups["workers"].digest, "on-demand share: no"


def test_a_group_lives_in_its_zones_or_subnets_in_the_networks_order() -> None:
    kubeadm = as_dict(rendered("groups-kubeadm"))["Resources"]
    eks = as_dict(rendered("groups-eks"))["Resources"]

    assert kubeadm["HostGroupSystem"]["Properties"]["VPCZoneIdentifier"] == [
        {"Ref": "HostSubnetA"},
        {"Ref": "HostSubnetB"},
    ]
    assert len(kubeadm[names.HOST_GROUP]["Properties"]["VPCZoneIdentifier"]) == 3
    assert eks["HostGroupSystem"]["Properties"]["VPCZoneIdentifier"] == [
        "subnet-0123456789abcdef0",
        "subnet-0123456789abcdef1",
    ]
    assert len(eks["HostGroupGpuBatch"]["Properties"]["VPCZoneIdentifier"]) == 3


def test_each_group_has_its_own_image() -> None:
    result = rendered("groups-eks")
    parameters = as_dict(result)["Parameters"]

    assert parameters["ImageIdSystem"] == {
        "Type": "AWS::EC2::Image::Id",
        "Default": "ami-0123456789abcdef0",
        "Description": "groups.system.ami",
    }
    assert parameters["ImageIdGpuBatch"]["Type"] == "AWS::SSM::Parameter::Value<AWS::EC2::Image::Id>"
    assert "/eks/optimized-ami/1.34/" in parameters["ImageIdGpuBatch"]["Default"]
    assert result.parameters == {
        "ImageIdSystem": "ami-0123456789abcdef0",
        "ImageIdGpuBatch": parameters["ImageIdGpuBatch"]["Default"],
    }
    assert launch_data(as_dict(result), "HostLaunchTemplateSystem")["ImageId"] == {"Ref": "ImageIdSystem"}


def test_queue_scaling_follows_the_group_it_names() -> None:
    [policy] = resources(as_dict(rendered("groups-eks")), "AWS::AutoScaling::ScalingPolicy").values()
    assert policy["Properties"]["AutoScalingGroupName"] == {"Ref": "HostGroupGpuBatch"}


def test_eks_groups_wait_for_the_access_entry() -> None:
    for group in groups_of(as_dict(rendered("groups-eks"))).values():
        assert group["DependsOn"] == ["HostAccessEntry"]


def test_each_group_gets_a_patch_generation_of_its_own_when_given() -> None:
    result = render(load_config(TWO_GROUPS["groups-kubeadm"]), patch_generation=3, generations={"system": 7})
    outputs = as_dict(result)["Outputs"]

    assert outputs["HostFingerprintSystem"]["Value"]["Fn::Sub"].startswith("${ImageIdSystem}/7/")
    assert outputs[names.OUTPUT_FINGERPRINT]["Value"]["Fn::Sub"].startswith("${ImageId}/3/")
