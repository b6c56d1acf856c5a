"""The sandbox's background process: moto's server, the Kubernetes API simulator with a sample workload, and the
host simulator with its lifecycle hooks, ticking in real time until SIGTERM. `cluster sandbox start` runs it; `stop`
signals it.

    python -m provision.sandbox.daemon --dir .cluster [--boot-seconds 5] [--hook-scale 0.05]
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import threading
from pathlib import Path

import yaml
from moto.server import ThreadedMotoServer

from provision.clock import SystemClock
from provision.sandbox.hosts import HostSimulator
from provision.sandbox.state import STATE_FILE, SandboxState
from provision.simulator.api import KubeApiServer, kubeconfig_for
from provision.simulator.world import Timings, World

TICK_SECONDS = 0.2
SAMPLE_REPLICAS = 6
HOOK_SCALE = 0.05


def seed_workload(world: World) -> None:
    """A sample workload to watch move: a Deployment spread over the hosts, with a budget that lets one pod go at a
    time, and a DaemonSet that stays on every node."""
    labels = {"app": "web"}
    container = {"name": "web", "image": "nginx", "resources": {"requests": {"cpu": "250m"}}}
    world.create(
        "Deployment",
        "default",
        {
            "metadata": {"name": "web"},
            "spec": {
                "replicas": SAMPLE_REPLICAS,
                "selector": {"matchLabels": labels},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {"containers": [container]},
                },
            },
        },
    )
    world.create(
        "PodDisruptionBudget",
        "default",
        {"metadata": {"name": "web"}, "spec": {"maxUnavailable": 1, "selector": {"matchLabels": labels}}},
    )
    world.create(
        "DaemonSet",
        "kube-system",
        {
            "metadata": {"name": "node-agent"},
            "spec": {
                "selector": {"matchLabels": {"app": "node-agent"}},
                "template": {"metadata": {"labels": {"app": "node-agent"}}, "spec": {"containers": [{"name": "a"}]}},
            },
        },
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="provision.sandbox.daemon")
    parser.add_argument("--dir", type=Path, required=True)
    parser.add_argument("--boot-seconds", type=float, default=5.0)
    # Lifecycle hooks wait this fraction of their timeout: the terminate hook's 1200 s become 60 s, so a scale-in
    # nobody drains still ends within a demo, and what describe_lifecycle_hooks reports says so.
    parser.add_argument("--hook-scale", type=float, default=HOOK_SCALE)
    args = parser.parse_args(argv)
    folder: Path = args.dir.resolve()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    log = logging.getLogger("sandbox")

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())

    clock = SystemClock()
    aws = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    aws.start()
    # Pods start and turn Ready within a couple of seconds: quick enough to watch a roll, slow enough to see it wait.
    world = World(clock, Timings(start_delay=0.5, ready_delay=1.0, termination_delay=0.5))
    kube = KubeApiServer(world).start()
    hosts = HostSimulator(world, clock, boot_seconds=args.boot_seconds, hook_scale=args.hook_scale)
    seed_workload(world)
    host, port = aws.get_host_and_port()
    kubeconfig = folder / "kubeconfig"
    folder.mkdir(parents=True, exist_ok=True)
    kubeconfig.write_text(yaml.safe_dump(kubeconfig_for(kube.url)))
    kubeconfig.chmod(0o600)
    state = SandboxState(os.getpid(), f"http://{host}:{port}", kube.url, str(kubeconfig), str(folder / "sandbox.log"))
    state.save(folder)
    log.info("ready: AWS %s, Kubernetes %s", state.aws_endpoint, state.kube_url)
    try:
        while not stop.wait(TICK_SECONDS):
            try:
                hosts.tick()
                world.tick()
            except Exception:  # keep serving; the log says what went wrong
                log.exception("tick failed")
    finally:
        log.info("stopping")
        kube.stop()
        aws.stop()
        (folder / STATE_FILE).unlink(missing_ok=True)


if __name__ == "__main__":
    main()
