"""`cluster up`: render, make sure the join token is stored, then create or update the stack through a change set
that the user sees (and confirms) before anything changes, stream its events, and wait for the hosts.

Every exit path leaves nothing half-done: an unexecuted change set is deleted, and so is the empty stack that a
never-executed CREATE change set leaves behind.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Literal

from provision import kubeconfig, names
from provision.aws.cloud import Cloud
from provision.aws.stacks import ChangeSet, Stack, StackEvent
from provision.clock import wait_until
from provision.config.schema import ClusterConfig, EksControlPlane, HostGroup, KubeadmControlPlane
from provision.deploy.report import describe_event, event_printer, failure_records, root_causes
from provision.errors import ClusterError, UsageError
from provision.fleet.observe import Fleet
from provision.render.template import Rendered, RenderedGroup, cluster_tags, render
from provision.ui import UI

if TYPE_CHECKING:
    from provision.kube.facade import Kube

TEMPLATE_BODY_LIMIT = 51_200  # bytes CloudFormation accepts inline; beyond it needs S3
TOKEN_PATTERN = re.compile(r"[a-z0-9]{6}\.[a-z0-9]{16}")
RECREATE_STATES = {"ROLLBACK_COMPLETE", "ROLLBACK_FAILED", "CREATE_FAILED", "DELETE_FAILED"}
EXPLAIN = {
    "ROLLBACK_COMPLETE": "its creation failed and was rolled back, so it cannot be updated",
    "ROLLBACK_FAILED": "its creation failed and so did the rollback",
    "CREATE_FAILED": "its creation failed",
    "DELETE_FAILED": "a deletion failed half-way",
}


def check_join_token(config: ClusterConfig, join_token: str | None) -> None:
    """A given token must be a kubeadm bootstrap token, and given only in kubeadm mode."""
    if join_token is None:
        return
    if not isinstance(config.control_plane, KubeadmControlPlane):
        raise UsageError("a join token is only used in kubeadm mode (control_plane.mode)")
    if not TOKEN_PATTERN.fullmatch(join_token):
        raise UsageError("the join token is not a kubeadm bootstrap token ([a-z0-9]{6}.[a-z0-9]{16})")


class DeployFailed(ClusterError):
    """The stack operation ended in a failed state; the message names the root cause."""


KubeAccess = Callable[[], tuple["Kube | None", str]]


class Up:
    def __init__(
        self, config: ClusterConfig, cloud: Cloud, ui: UI, *, timeout: float, kube: KubeAccess | None = None
    ) -> None:
        self.config = config
        self.cloud = cloud
        self.ui = ui
        self.deadline = cloud.clock.now() + timeout  # `--timeout` bounds the whole verb, not each of its waits
        self.kube = kube  # called once the stack is complete: an EKS control plane may only exist from then on
        self.name = config.stack_name
        self.started = datetime.now(UTC)

    def run(
        self, *, dry_run: bool, join_token: str | None, next_patch_generation: bool = False, then: str = ""
    ) -> None:
        """``next_patch_generation`` raises the patch generation by one (what `cluster patch` does, so that every
        host becomes outdated even when the image did not change); ``then`` says in the confirmation what follows
        the stack change."""
        # Everything that can be checked here is, before the first AWS call: a bad token or a template AWS would
        # refuse is a usage error even when AWS cannot be reached.
        check_join_token(self.config, join_token)
        self._template(render(self.config, patch_generation=0))
        found = self.cloud.stacks.find(self.name)
        step = 1 if next_patch_generation else 0
        generations = {group: generation + step for group, generation in self._deployed_generations(found).items()}
        rendered = render(self.config, patch_generation=step, generations=generations)
        template = self._template(rendered)
        self._check_stored_join_token(join_token)
        stack = self._usable_stack(found, dry_run=dry_run)
        if stack is not None and stack.status in RECREATE_STATES:
            return  # dry run of a stack that would be deleted and recreated: already said so
        kind: Literal["CREATE", "UPDATE"] = (
            "CREATE" if stack is None or stack.status == "REVIEW_IN_PROGRESS" else "UPDATE"
        )
        parameters = rendered.parameters
        change_set_name = f"cluster-up-{uuid.uuid4().hex[:12]}"
        executed = False
        try:
            change_set = self.cloud.stacks.create_change_set(
                self.name,
                change_set_name,
                kind=kind,
                template=template,
                parameters=parameters,
                tags=cluster_tags(self.config),
                timeout=self._left(),
            )
            # A parameter-only update counts even when the change set lists no resource (as moto's do).
            changed = self._changed_parameters(stack, parameters)
            if changed:
                self.ui.say(f"parameters change: {', '.join(changed)}")
            elif not change_set.changes:
                self._store_join_token(join_token, dry_run=dry_run)
                self.ui.say(f"no changes: stack {self.name} is up to date")
                if not dry_run:
                    self._write_kubeconfig()
                    self._wait_for_hosts()
                return
            self._show(change_set, rendered, update=kind == "UPDATE")
            if dry_run:
                self._store_join_token(join_token, dry_run=True)
                self.ui.say("dry run: nothing was changed")
                return
            action = f"{'create' if kind == 'CREATE' else 'update'} stack {self.name} in {self.config.region}"
            self.ui.confirm(
                f"{action.capitalize()}{then}?",
                unasked=f"did not {action}: rerun with --yes to apply the changes, or --dry-run to only see them",
            )
            self._store_join_token(join_token, dry_run=False)
            after = self.cloud.stacks.latest_event_id(self.name)
            self.cloud.stacks.execute_change_set(self.name, change_set_name)
            executed = True
        finally:
            if not executed:
                self._discard(change_set_name, kind)
        self._follow(after, verb="up")
        self._write_kubeconfig()
        self._wait_for_hosts()

    def _left(self, limit: float | None = None) -> float:
        """Seconds a wait may take: what is left of the verb's timeout, and no more than its own ``limit``."""
        left = max(self.deadline - self.cloud.clock.now(), 0.0)
        return left if limit is None else min(left, limit)

    def _deployed_generations(self, stack: Stack | None) -> dict[str, int]:
        """The patch generation of each group's deployed launch template (its latest version's fingerprint tag); a
        group the stack does not have yet is left out."""
        if stack is None or stack.status == "REVIEW_IN_PROGRESS":
            return {}
        resources = self.cloud.stacks.resources(self.name)
        generations: dict[str, int] = {}
        for group in self.config.groups.values():
            template_id = resources.get(group.names.launch_template, "")
            if template_id:
                tags = self.cloud.instances.launch_template(template_id).tags
                generations[group.name] = names.patch_generation(tags.get(names.FINGERPRINT_TAG, ""))
        return generations

    def _changed_parameters(self, stack: Stack | None, parameters: dict[str, str]) -> list[str]:
        """Parameters whose value this deploy changes (an `ssm:` image is resolved by CloudFormation, so not here)."""
        if stack is None:
            return []
        resolved = {
            group.names.image_parameter
            for group in self.config.groups.values()
            if self.config.image_of(group).startswith("ssm:")
        }
        return [
            f"{key} {stack.parameters.get(key, '')} → {value}"
            for key, value in parameters.items()
            if key in stack.parameters and key not in resolved and stack.parameters.get(key) != value
        ]

    @staticmethod
    def _template(rendered: Rendered) -> str:
        template = rendered.body()
        if len(template.encode()) > TEMPLATE_BODY_LIMIT:
            raise UsageError(
                f"the template is {len(template.encode())} bytes, over CloudFormation's inline limit of "
                f"{TEMPLATE_BODY_LIMIT}; each host group adds its user-data (about 10 KB): use fewer groups, "
                "availability zones or labels"
            )
        return template

    def _check_stored_join_token(self, join_token: str | None) -> None:
        """Without a token given, kubeadm mode needs the one stored by an earlier `up`."""
        if join_token is not None or not isinstance(self.config.control_plane, KubeadmControlPlane):
            return
        parameter = names.join_token_parameter(self.config.parameter_path)
        if not self.cloud.parameters.exists(parameter):
            raise UsageError(
                f"kubeadm mode needs the bootstrap token in SSM {parameter}: pass it through CLUSTER_JOIN_TOKEN or "
                "--join-token-file FILE (make one with `kubeadm token create`)"
            )

    def _store_join_token(self, join_token: str | None, *, dry_run: bool) -> None:
        if join_token is None or not isinstance(self.config.control_plane, KubeadmControlPlane):
            return
        parameter = names.join_token_parameter(self.config.parameter_path)
        if dry_run:
            self.ui.say(f"dry run: would store the join token in {parameter}")
            return
        self.cloud.parameters.put_secret(parameter, join_token, kms_key=self.config.control_plane.token_kms_key)
        self.ui.say(f"stored the join token in {parameter} (SecureString)")

    def _usable_stack(self, stack: Stack | None, *, dry_run: bool) -> Stack | None:
        """The stack as it can be changed now: ours, settled, and not in a state that only a delete can leave."""
        if stack is None:
            return None
        owner = stack.tags.get(names.CLUSTER_TAG)
        if owner != self.config.name:
            raise UsageError(
                f"stack {self.name} exists but does not belong to cluster {self.config.name!r} "
                f"(its {names.CLUSTER_TAG} tag is {owner!r}); choose another `name`"
            )
        if stack.in_progress and stack.status != "REVIEW_IN_PROGRESS":
            self.ui.say(f"stack {self.name} is {stack.status}; waiting for that to finish first")
            settled = self._follow(None, verb="up", fail=False)
            return self._usable_stack(settled, dry_run=dry_run)
        if stack.status == "UPDATE_ROLLBACK_FAILED":
            raise DeployFailed(
                f"stack {self.name} is UPDATE_ROLLBACK_FAILED: fix the cause below, then run "
                f"`aws cloudformation continue-update-rollback --stack-name {self.name}` and `cluster up` again; "
                f"{self._first_cause(stack)}"
            )
        if stack.status not in RECREATE_STATES:
            return stack
        self.ui.warn(f"stack {self.name} is {stack.status}: {EXPLAIN[stack.status]}. Cause: {self._first_cause(stack)}")
        if dry_run:
            self.ui.say(f"dry run: `cluster up` would delete stack {self.name} and create it again")
            return stack
        self.ui.confirm(
            f"Delete stack {self.name} and create it again?",
            unasked=f"did not touch stack {self.name}: rerun with --yes to delete and recreate it",
        )
        after = self.cloud.stacks.latest_event_id(stack.stack_id)
        self.cloud.stacks.delete(self.name)
        self._follow(after, verb="delete", stack_id=stack.stack_id)
        return None

    def _first_cause(self, stack: Stack) -> str:
        causes = root_causes(self.cloud.stacks.events(stack.stack_id, after=None))
        return describe_event(causes[0]) if causes else stack.status_reason or "(no failure event found)"

    def _show(self, change_set: ChangeSet, rendered: Rendered, *, update: bool) -> None:
        symbols = {"Add": "+", "Modify": "~", "Remove": "-"}
        rows = [
            [
                symbols.get(change.action, "?"),
                change.logical_id,
                change.resource_type,
                "REPLACE" if change.replacement == "True" else "may replace" if change.replaces else "",
            ]
            for change in change_set.changes
        ]
        self.ui.table(["", "resource", "type", "replacement"], rows, title=f"Changes to stack {self.name}")
        replaced = [change.logical_id for change in change_set.changes if change.replaces]
        if replaced:
            self.ui.warn(f"{len(replaced)} resource(s) will or may be REPLACED: {', '.join(replaced)}")
        for group in self.config.groups.values():
            self._show_group(group, change_set, rendered.groups[group.name], update=update)

    def _show_group(self, group: HostGroup, change_set: ChangeSet, rendered: RenderedGroup, *, update: bool) -> None:
        """What the change set does to one host group, in the words of its hosts."""
        ids = group.names
        changes = {change.logical_id: change for change in change_set.changes}
        several = len(self.config.groups) > 1
        label = f"group {group.name}: " if several else ""
        launch_template, auto_scaling = changes.get(ids.launch_template), changes.get(ids.group)
        if auto_scaling is not None and auto_scaling.replaces:
            subject = f"the hosts of group {group.name} are" if several else "the host group is"
            self.ui.warn(
                f"{subject} replaced: every host is terminated and launched anew at once. "
                "For a rolling change of the hosts, use `cluster patch`"
            )
        if not update:
            return
        if auto_scaling is not None and auto_scaling.action == "Add":
            self.ui.say(f"{label}new: {group.desired_capacity} host(s) launch with configuration …/{rendered.digest}")
        elif launch_template is not None:
            self.ui.say(
                f"{label}hosts launched from now on get configuration …/{rendered.digest}; "
                "`cluster patch` replaces the running ones"
            )
        elif auto_scaling is not None:
            self.ui.say(f"{label}the group's settings change; its hosts stay as they are")
        elif several:
            self.ui.say(f"{label}unchanged")

    def _discard(self, change_set_name: str, kind: str) -> None:
        self.cloud.stacks.delete_change_set(self.name, change_set_name)
        stack = self.cloud.stacks.find(self.name)
        if kind == "CREATE" and stack is not None and stack.status == "REVIEW_IN_PROGRESS":
            # A CREATE change set leaves an empty stack behind; it is ours and holds nothing.
            self.cloud.stacks.delete(self.name)

    def _follow(self, after: str | None, *, verb: str, fail: bool = True, stack_id: str | None = None) -> Stack | None:
        """Stream the stack's events until it settles; on a failed end, report the root causes and raise."""
        seen: list[StackEvent] = []
        with self.ui.waiting(f"waiting for stack {self.name}"):
            stack = self.cloud.stacks.wait_settled(
                stack_id or self.name,
                after_event=after,
                on_events=event_printer(self.ui, seen),
                timeout=self._left(),
                next_step=f"it goes on in AWS: follow it with `cluster status`, or run `cluster {verb}` again to "
                "keep waiting",
            )
        if stack is None or stack.settled_ok or not fail:
            return stack
        if stack.status == "DELETE_COMPLETE":
            return None
        causes = root_causes(seen)
        for record in failure_records(self.cloud.parameters, self.config.parameter_path, since=self.started):
            self.ui.say(record)
        cause = describe_event(causes[0]) if causes else stack.status_reason or "no failure event was recorded"
        raise DeployFailed(f"stack {self.name} ended {stack.status}: {cause}")

    def _write_kubeconfig(self) -> None:
        if not isinstance(self.config.control_plane, EksControlPlane):
            return
        access = self.cloud.eks.access(self.config.name)
        path = kubeconfig.default_path(self.config.kubernetes.kubeconfig)
        entry = kubeconfig.eks_entry(
            self.config.name, self.config.region, access.endpoint, access.certificate_authority
        )
        current = kubeconfig.write_entry(path, entry)
        self.ui.say(
            f"kubeconfig {path}: context {self.config.name}"
            + ("" if current else f" added (switch with `kubectl config use-context {self.config.name}`)")
        )

    def _wait_for_hosts(self) -> None:
        """Each group's hosts InService, then, when the Kubernetes API can be reached, their nodes Ready."""
        stack = self.cloud.stacks.find(self.name)
        fleets: list[tuple[HostGroup, Fleet]] = []
        for group in self.config.groups.values():
            try:
                fleets.append((group, Fleet.of_stack(self.cloud, self.name, described=stack, group=group.name)))
            except ClusterError:
                continue  # a stack without this group: no host to wait for
        if not fleets:
            return
        for group, fleet in fleets:
            self._wait_in_service(group, fleet)
        kube, unavailable = self.kube() if self.kube else (None, "no Kubernetes access was given")
        if kube is None:
            self.ui.say(f"node readiness not checked: {unavailable}")
            return
        for group, fleet in fleets:
            fleet.kube = kube  # from now on every host comes joined to its node
            self._wait_for_nodes(group, fleet)

    def _wait_in_service(self, group: HostGroup, fleet: Fleet) -> None:
        def all_in_service() -> int | None:
            snapshot = fleet.snapshot()
            ready = sum(1 for host in snapshot.hosts if host.lifecycle_state == "InService")
            return ready if ready >= snapshot.desired else None

        with self.ui.waiting(f"waiting for the {group.names.hosts} to be InService"):
            ready = wait_until(
                all_in_service,
                clock=self.cloud.clock,
                timeout=self._left(group.rolling.ready_timeout_seconds),
                interval=5.0,
                what=f"the hosts of {fleet.group} to be InService",
                next_step="see which host is stuck, and why, with `cluster status`",
            )
        self.ui.say(f"{ready} host(s) InService in {fleet.group}")

    def _wait_for_nodes(self, group: HostGroup, fleet: Fleet) -> None:
        """Each InService host's node Ready."""

        def all_ready() -> int | None:
            snapshot = fleet.snapshot()
            in_service = [host for host in snapshot.hosts if host.lifecycle_state == "InService"]
            ready = sum(1 for host in in_service if host.node is not None and host.node.ready)
            return ready if ready >= snapshot.desired and ready == len(in_service) else None

        with self.ui.waiting(f"waiting for the {group.names.hosts}' nodes to be Ready"):
            ready = wait_until(
                all_ready,
                clock=self.cloud.clock,
                timeout=self._left(group.rolling.ready_timeout_seconds),
                interval=5.0,
                what=f"the nodes of {fleet.group} to be Ready",
                next_step="`cluster status` shows which host has no Ready node; its boot record says why",
            )
        self.ui.say(f"{ready} node(s) Ready" + (f" in {fleet.group}" if len(self.config.groups) > 1 else ""))
