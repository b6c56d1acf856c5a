"""`cluster heal` assembled from a deployed stack: its queue, its group and hooks, the roll's lock and journal, the
storm guard's slots. The verb, the demo and the sandbox tests build it here, so they run the same thing."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from provision import names
from provision.aws.cloud import Cloud
from provision.aws.queues import Queue
from provision.aws.session import AwsFactory
from provision.clock import Clock
from provision.config.schema import ClusterConfig
from provision.errors import ClusterError
from provision.fleet.observe import Fleet
from provision.heal.actionlog import ActionLog
from provision.heal.consumer import WAIT_SECONDS, Consumer, LifecycleQueue, Stop
from provision.heal.handler import EveryGroup, Handler, Timeouts, roll_in_progress
from provision.heal.repair import NodeRepair, Wall
from provision.heal.slots import Slots
from provision.kube.facade import Kube
from provision.roll.journal import Journal
from provision.roll.lock import RunLock


def queue_url(cloud: Cloud, config: ClusterConfig) -> str:
    """The stack's output (the queue's physical id is its URL)."""
    stack = cloud.stacks.find(config.stack_name)
    if stack is None:
        raise ClusterError(f"no stack {config.stack_name} in {config.region}; create it with `cluster up`")
    url = stack.outputs.get(names.OUTPUT_LIFECYCLE_QUEUE_URL, "")
    if not url:
        raise ClusterError(
            f"stack {config.stack_name} has no lifecycle queue ({names.LIFECYCLE_QUEUE}); "
            "`cluster up` with this version adds it"
        )
    return url


def heal_service(
    config: ClusterConfig,
    cloud: Cloud,
    kube: Kube,
    queue: LifecycleQueue,
    clock: Clock,
    log: ActionLog,
    stop: Stop,
    *,
    wait_seconds: int = WAIT_SECONDS,
    wall: Wall = lambda: datetime.now(UTC),
) -> Consumer:
    """``wall``: the wall clock that node conditions' times are judged against (the sandbox's, in its tests). Every
    host group of the cluster is healed, each with its own drain policy and health settings: one handler per group,
    the events routed to their group's (``EveryGroup``)."""
    roll_hosts = roll_in_progress(
        RunLock(cloud.parameters, config.parameter_path), Journal(cloud.parameters, config.parameter_path)
    )
    stack = cloud.stacks.find(config.stack_name)
    handlers: list[Handler] = []
    sweeps: list[Callable[[], None]] = []
    for group in config.groups.values():
        fleet = Fleet.of_stack(cloud, config.stack_name, kube=kube, described=stack, group=group.name)
        # The hooks as deployed set the heartbeat cadence; the configuration only when the group has none (yet).
        hooks = cloud.groups.hook_timeouts(fleet.group)
        agent = group.health_agent
        handlers.append(
            Handler(
                fleet=fleet,
                actions=cloud.groups,
                kube=kube,
                records=cloud.parameters,
                roll_hosts=roll_hosts,
                clock=clock,
                log=log,
                rolling=group.rolling,
                timeouts=Timeouts(
                    heartbeat=hooks.get(names.TERMINATE_HOOK, config.lifecycle.terminate_timeout_seconds),
                    launch=hooks.get(names.LAUNCH_HOOK, config.lifecycle.launch_timeout_seconds),
                ),
                parameter_path=config.parameter_path,
                node_conditions=tuple(agent.node_conditions),
            )
        )
        # Repair from the cluster side goes with the health agent: health_agent.enabled = false switches both off.
        if agent.enabled:
            repair = NodeRepair(
                fleet=fleet,
                guard=Slots(cloud.parameters, config.parameter_path),
                reports=cloud.groups,
                tags=cloud.instances,
                roll_hosts=roll_hosts,
                settings=agent,
                wall=wall,
                log=log,
            )
            sweeps.append(repair.sweep)
    handler = handlers[0] if len(handlers) == 1 else EveryGroup(handlers)

    def sweep() -> None:
        for each in sweeps:
            each()

    return Consumer(queue, handler, clock, log, stop, wait_seconds=wait_seconds, sweep=sweep if sweeps else None)


def connect_queue(factory: AwsFactory, cloud: Cloud, config: ClusterConfig) -> Queue:
    return Queue.connect(factory, queue_url(cloud, config))
