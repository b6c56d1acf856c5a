"""``cluster heal``: the handler of the group's lifecycle hooks, from a terminal or inside the cluster."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import click

from provision.verbs.options import Globals, config_option, load_config

if TYPE_CHECKING:
    from provision.kube.facade import Kube
    from provision.verbs.aws import Connection

IN_CLUSTER = "KUBERNETES_SERVICE_HOST"  # set in every pod: the API is reached with the pod's service account


@click.command("heal")
@config_option
@click.option("--watch", "mode", flag_value="watch", help="Run until stopped (SIGTERM or Ctrl-C), as a service does.")
@click.option("--once", "mode", flag_value="once", default=True, help="Handle what the queue holds now, then exit.")
@click.pass_obj
def command(options: Globals, config_path: Path | None, mode: str) -> None:
    """Drain the hosts the auto-scaling group terminates, before they go.

    Reads the lifecycle events of the cluster's group from its queue. A terminating host is cordoned and drained under
    the PodDisruptionBudgets (a NotReady host: its pods and node are deleted), with heartbeats to the hook while the
    drain runs, then its termination goes on. A host that never confirms its join is reported with the step its boot
    failed at. Hosts of a roll in progress are left to the roll. One line per action on stderr.

    Between receives (at most every 30 s; once with --once) it looks at the group's nodes: a host whose node has been
    NotReady or Unknown, or carried one of health_agent.node_conditions, for health_agent.node_not_ready_seconds is
    reported Unhealthy, at most health_agent.max_unhealthy hosts under repair at once (the rest are held).
    """
    import signal
    import sys

    from provision.clock import SystemClock
    from provision.heal.actionlog import ActionLog
    from provision.heal.consumer import Stop
    from provision.heal.service import connect_queue, heal_service
    from provision.printable import printable
    from provision.verbs.aws import connected

    config = load_config(config_path, example_ok=options.sandbox)
    clock = SystemClock()
    log = ActionLog(lambda line: print(printable(line), file=sys.stderr, flush=True))  # fields quote nodes and pods
    with connected(config, options) as connection:
        kube = _kube(connection, options)
        queue = connect_queue(connection.factory, connection.cloud, config)
        stop = Stop()

        def stopping(signum: int, _frame: object) -> None:
            stop.request(clock.now(), signal.Signals(signum).name)

        consumer = heal_service(config, connection.cloud, kube, queue, clock, log, stop)
        previous = {sig: signal.signal(sig, stopping) for sig in (signal.SIGTERM, signal.SIGINT)}
        log("started", group=",".join(consumer.handler.groups), mode=mode, queue=queue.url.rsplit("/", 1)[-1])
        try:
            consumer.run(once=mode == "once")
        finally:
            for sig, before in previous.items():
                signal.signal(sig, before)
        log("stopped")


def _kube(connection: Connection, options: Globals) -> Kube:
    """Inside a pod (the Deployment `cluster render --heal-manifest` prints), the pod's service account, whatever
    `kubernetes.kubeconfig` says (that file is on the operator's machine); otherwise the kubeconfig, as every verb."""
    from lightkube import Client, KubeConfig

    from provision.kube.facade import FIELD_MANAGER, Kube
    from provision.verbs.rolling import kube_or_refuse

    if os.environ.get(IN_CLUSTER) and not (options.kubeconfig or options.sandbox):
        return Kube(Client(config=KubeConfig.from_service_account(), field_manager=FIELD_MANAGER, trust_env=False))
    return kube_or_refuse(connection, "heal")
