"""`cluster up`/`down` on the paths moto does not simulate: failed creates with per-resource events, rollback and
failed states, stacks in progress, timeouts, refused change sets, paging. CloudFormation is scripted
(tests/fake_cloudformation.py); SSM is moto; time is virtual."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta

import boto3
import pytest

from provision.aws.cloud import Cloud
from provision.aws.session import AwsFactory, AwsSettings
from provision.aws.stacks import POLL_SECONDS, ChangeSetFailed, Stacks
from provision.clock import WaitTimeout
from provision.deploy.down import down
from provision.deploy.up import DeployFailed, Up
from provision.errors import ClusterError, UsageError
from tests.deploykit import REGION, TOKEN, config, recording_ui
from tests.fake_cloudformation import STACK_TYPE, ScriptedCloudFormation, event
from tests.fakeclock import FakeClock

NAME = "cluster-demo"
GROUP = "AWS::AutoScaling::AutoScalingGroup"
SIGNALS = "Received 0 SUCCESS signal(s) out of 3. Unable to satisfy 100% MinSuccessfulInstancesPercent requirement"
EXAMPLE = config()


def failed_create() -> list[tuple[str, list[dict[str, object]]]]:
    return [
        (
            "CREATE_IN_PROGRESS",
            [
                event(NAME, STACK_TYPE, "CREATE_IN_PROGRESS", "User Initiated"),
                event("Vpc", "AWS::EC2::VPC", "CREATE_IN_PROGRESS"),
                event("Vpc", "AWS::EC2::VPC", "CREATE_COMPLETE"),
            ],
        ),
        (
            "ROLLBACK_IN_PROGRESS",
            [
                event("HostGroup", GROUP, "CREATE_FAILED", SIGNALS),
                event("NatGatewayA", "AWS::EC2::NatGateway", "CREATE_FAILED", "Resource creation cancelled"),
                event(
                    NAME,
                    STACK_TYPE,
                    "ROLLBACK_IN_PROGRESS",
                    "The following resource(s) failed to create: [HostGroup, NatGatewayA]. Rollback requested by user.",
                ),
            ],
        ),
        (
            "ROLLBACK_COMPLETE",
            [event("Vpc", "AWS::EC2::VPC", "DELETE_COMPLETE"), event(NAME, STACK_TYPE, "ROLLBACK_COMPLETE")],
        ),
    ]


def succeeded(kind: str = "CREATE") -> list[tuple[str, list[dict[str, object]]]]:
    return [
        (f"{kind}_IN_PROGRESS", [event(NAME, STACK_TYPE, f"{kind}_IN_PROGRESS", "User Initiated")]),
        (f"{kind}_COMPLETE", [event(NAME, STACK_TYPE, f"{kind}_COMPLETE")]),
    ]


def scripted(moto: None, fake: ScriptedCloudFormation, clock: FakeClock | None = None) -> Cloud:
    real = Cloud.connect(AwsFactory(AwsSettings(region=REGION)), clock or FakeClock())
    return dataclasses.replace(real, stacks=Stacks(fake, real.clock))  # type: ignore[arg-type]


def record_boot_failure(instance: str, at: datetime, step: str = "join") -> None:
    boto3.client("ssm", region_name=REGION).put_parameter(
        Name=f"/cluster/demo/hosts/{instance}/boot",
        Type="String",
        Value=f"failed step={step} exit=1 at={at:%Y-%m-%dT%H:%M:%SZ}\n... kubeadm join\n[preflight] connection refused",
    )


def test_a_failed_create_reports_the_root_cause_and_the_hosts_own_record(moto: None) -> None:
    fake = ScriptedCloudFormation(NAME, after_execute=failed_create())
    cloud = scripted(moto, fake)
    record_boot_failure("i-0aaaaaaaaaaaaaaaa", datetime.now(UTC) + timedelta(seconds=5))
    record_boot_failure("i-0bbbbbbbbbbbbbbbb", datetime.now(UTC) - timedelta(days=3), step="kubelet")
    ui, out = recording_ui()

    with pytest.raises(DeployFailed) as failure:
        Up(EXAMPLE, cloud, ui, timeout=3600).run(dry_run=False, join_token=TOKEN)

    assert str(failure.value) == f"stack {NAME} ended ROLLBACK_COMPLETE: CREATE_FAILED HostGroup ({GROUP}): {SIGNALS}"
    shown = out.getvalue()
    assert "Resource creation cancelled" not in shown, "the cascade is noise"
    assert "CREATE_COMPLETE Vpc" in shown, "progress is streamed"
    assert "host i-0aaaaaaaaaaaaaaaa failed at step join (exit 1):" in shown
    assert "[preflight] connection refused" in shown
    assert "i-0bbbbbbbbbbbbbbbb" not in shown, "a record from an earlier deploy is not this failure"


def test_a_rolled_back_stack_is_explained_then_deleted_and_created_again(moto: None) -> None:
    fake = ScriptedCloudFormation(
        NAME,
        status="ROLLBACK_COMPLETE",
        events=[event("HostGroup", GROUP, "CREATE_FAILED", SIGNALS), event(NAME, STACK_TYPE, "ROLLBACK_COMPLETE")],
        after_execute=succeeded(),
    )
    ui, out = recording_ui(assume_yes=True)

    Up(EXAMPLE, scripted(moto, fake), ui, timeout=3600).run(dry_run=False, join_token=TOKEN)

    assert fake.calls.index("DeleteStack") < fake.calls.index("CreateChangeSet:CREATE")
    assert (
        f"stack {NAME} is ROLLBACK_COMPLETE: its creation failed and was rolled back, so it cannot be updated. "
        f"Cause: CREATE_FAILED HostGroup ({GROUP}): {SIGNALS}" in out.getvalue()
    )
    assert "CREATE_COMPLETE cluster-demo" in out.getvalue()


def test_a_rolled_back_stack_is_not_deleted_without_confirmation(moto: None) -> None:
    fake = ScriptedCloudFormation(NAME, status="ROLLBACK_COMPLETE")
    ui, _ = recording_ui(assume_yes=False, answers=None)

    with pytest.raises(UsageError, match="did not touch stack cluster-demo: rerun with --yes to delete and recreate"):
        Up(EXAMPLE, scripted(moto, fake), ui, timeout=3600).run(dry_run=False, join_token=TOKEN)
    assert "DeleteStack" not in fake.calls


def test_dry_run_on_a_rolled_back_stack_only_says_what_would_happen(moto: None) -> None:
    fake = ScriptedCloudFormation(NAME, status="ROLLBACK_COMPLETE")
    ui, out = recording_ui(assume_yes=True)

    Up(EXAMPLE, scripted(moto, fake), ui, timeout=3600).run(dry_run=True, join_token=TOKEN)

    assert "would delete stack cluster-demo and create it again" in out.getvalue()
    assert [call for call in fake.calls if not call.startswith("Describe")] == []


def test_update_rollback_failed_names_the_way_out(moto: None) -> None:
    fake = ScriptedCloudFormation(
        NAME,
        status="UPDATE_ROLLBACK_FAILED",
        events=[event("HostRole", "AWS::IAM::Role", "UPDATE_FAILED", "Access denied for iam:PassRole")],
    )

    with pytest.raises(DeployFailed, match=r"continue-update-rollback --stack-name cluster-demo.*iam:PassRole"):
        Up(EXAMPLE, scripted(moto, fake), recording_ui()[0], timeout=3600).run(dry_run=False, join_token=TOKEN)


def test_a_stack_in_progress_is_waited_for_before_the_update(moto: None) -> None:
    clock = FakeClock()
    fake = ScriptedCloudFormation(
        NAME,
        status="UPDATE_IN_PROGRESS",
        waiting=[
            ("UPDATE_IN_PROGRESS", []),
            ("UPDATE_IN_PROGRESS", []),
            ("UPDATE_COMPLETE", [event(NAME, STACK_TYPE, "UPDATE_COMPLETE")]),
        ],
        after_execute=succeeded("UPDATE"),
    )
    ui, out = recording_ui()

    Up(EXAMPLE, scripted(moto, fake, clock), ui, timeout=3600).run(dry_run=False, join_token=TOKEN)

    assert "stack cluster-demo is UPDATE_IN_PROGRESS; waiting for that to finish first" in out.getvalue()
    assert "CreateChangeSet:UPDATE" in fake.calls
    assert clock.slept, "waited in virtual time"


def test_a_stack_that_never_settles_times_out_with_the_next_step(moto: None) -> None:
    clock = FakeClock()
    fake = ScriptedCloudFormation(NAME, after_execute=[("CREATE_IN_PROGRESS", [])] * 10_000)

    with pytest.raises(WaitTimeout) as timeout:
        Up(EXAMPLE, scripted(moto, fake, clock), recording_ui()[0], timeout=600).run(dry_run=False, join_token=TOKEN)

    assert str(timeout.value) == (
        f"timed out after 600s waiting for stack {NAME}; it goes on in AWS: follow it with `cluster status`, "
        "or run `cluster up` again to keep waiting"
    )
    assert clock.current >= 600


def test_the_timeout_bounds_the_whole_of_up_not_each_of_its_waits(moto: None) -> None:
    clock = FakeClock()
    # 500 s waiting for an update already in progress, then our own update that never settles.
    fake = ScriptedCloudFormation(
        NAME,
        status="UPDATE_IN_PROGRESS",
        waiting=[("UPDATE_IN_PROGRESS", [])] * 100
        + [("UPDATE_COMPLETE", [event(NAME, STACK_TYPE, "UPDATE_COMPLETE")])],
        after_execute=[("UPDATE_IN_PROGRESS", [])] * 10_000,
    )

    with pytest.raises(WaitTimeout) as timeout:
        Up(EXAMPLE, scripted(moto, fake, clock), recording_ui()[0], timeout=600).run(dry_run=False, join_token=TOKEN)

    assert "ExecuteChangeSet" in fake.calls, "the first wait ended in time, the second ran out"
    left = int(str(timeout.value).removeprefix("timed out after ").partition("s waiting for stack")[0])
    assert 0 < left < 600, "the second wait had what the first left of the 600 s"
    assert 600 <= clock.current <= 600 + POLL_SECONDS, "600 s in all, not 600 s for each wait"


def test_a_change_set_without_changes_the_aws_way_is_no_change(moto: None) -> None:
    fake = ScriptedCloudFormation(
        NAME,
        status="UPDATE_COMPLETE",
        change_set_status=("FAILED", "The submitted information didn't contain changes. Submit different information."),
    )
    ui, out = recording_ui()

    Up(EXAMPLE, scripted(moto, fake), ui, timeout=3600).run(dry_run=False, join_token=TOKEN)

    assert "no changes: stack cluster-demo is up to date" in out.getvalue()
    assert "ExecuteChangeSet" not in fake.calls and "DeleteChangeSet" in fake.calls


def test_a_refused_change_set_says_why_and_leaves_no_empty_stack(moto: None) -> None:
    fake = ScriptedCloudFormation(NAME, change_set_status=("FAILED", "Template format error: bad Fn::Sub"))

    with pytest.raises(ChangeSetFailed, match="could not plan the change: Template format error: bad Fn::Sub"):
        Up(EXAMPLE, scripted(moto, fake), recording_ui()[0], timeout=3600).run(dry_run=False, join_token=TOKEN)
    cleanup = fake.calls[fake.calls.index("DeleteChangeSet") :]
    assert "DeleteStack" in cleanup, "the empty REVIEW_IN_PROGRESS stack of a CREATE change set must go too"


def test_every_page_of_the_change_set_is_shown(moto: None) -> None:
    changes = [
        {"ResourceChange": {"Action": action, "LogicalResourceId": logical, "ResourceType": kind, "Replacement": repl}}
        for action, logical, kind, repl in [
            ("Modify", "HostLaunchTemplate", "AWS::EC2::LaunchTemplate", "False"),
            ("Modify", "HostGroup", GROUP, "True"),
            ("Remove", "QueueBacklogScaling", "AWS::AutoScaling::ScalingPolicy", ""),
            ("Add", "NatGatewayC", "AWS::EC2::NatGateway", ""),
        ]
    ]
    fake = ScriptedCloudFormation(NAME, status="UPDATE_COMPLETE", changes=changes, after_execute=succeeded("UPDATE"))
    ui, out = recording_ui()

    Up(EXAMPLE, scripted(moto, fake), ui, timeout=3600).run(dry_run=True, join_token=TOKEN)

    shown = out.getvalue()
    for symbol, logical in [
        ("~", "HostLaunchTemplate"),
        ("~", "HostGroup"),
        ("-", "QueueBacklogScaling"),
        ("+", "NatGatewayC"),
    ]:
        assert f"{symbol}  {logical}" in shown
    assert "REPLACE" in shown.split("HostGroup")[1].splitlines()[0]
    assert "WARNING: 1 resource(s) will or may be REPLACED: HostGroup" in shown
    assert "every host is terminated and launched anew at once" in shown


def test_new_events_are_read_only_as_far_back_as_needed(moto: None) -> None:
    fake = ScriptedCloudFormation(NAME, status="CREATE_COMPLETE", page_size=2)
    fake.events = [event("R", "T", f"S{index}") for index in range(7)]
    stacks = Stacks(fake, FakeClock())  # type: ignore[arg-type]
    marker = fake.events[3]["EventId"]

    newer = stacks.events(NAME, after=marker)

    assert [e.status for e in newer] == ["S4", "S5", "S6"]
    assert fake.calls.count("DescribeStackEvents") == 2, "stops paging once it reaches the last seen event"
    assert [e.status for e in stacks.events(NAME, after=None)] == [f"S{index}" for index in range(7)]


def test_down_reports_a_failed_delete_with_its_cause(moto: None) -> None:
    fake = ScriptedCloudFormation(
        NAME,
        status="CREATE_COMPLETE",
        after_delete=[
            ("DELETE_IN_PROGRESS", [event(NAME, STACK_TYPE, "DELETE_IN_PROGRESS")]),
            (
                "DELETE_FAILED",
                [
                    event(
                        "HostSecurityGroup",
                        "AWS::EC2::SecurityGroup",
                        "DELETE_FAILED",
                        "resource has a dependent object",
                    )
                ],
            ),
        ],
    )

    with pytest.raises(ClusterError, match=r"ended DELETE_FAILED: DELETE_FAILED HostSecurityGroup .*dependent"):
        down(EXAMPLE, scripted(moto, fake), recording_ui()[0], purge=False, timeout=3600)
