"""Watches and resourceVersions on the simulator, through lightkube's ``Client.watch`` and the official client's
``watch.Watch``, over HTTP: list then watch from the list's resourceVersion misses no change; a watch without one
starts with every object ADDED; a selective watch sees objects enter and leave its selection; a version older than
the history kept answers 410 Gone, as etcd's compaction makes it. Time is virtual (``settle``); the events asked for
are already in the history when the watch opens, so no test waits for one to happen."""

from __future__ import annotations

import itertools
import queue
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import watch
from kubernetes.client import CoreV1Api
from kubernetes.config import new_client_from_config
from lightkube import ApiError, Client, KubeConfig
from lightkube.core.generic_client import ListIterable
from lightkube.resources.core_v1 import Node, Pod

from provision.simulator.api import KubeApiServer, kubeconfig_for
from provision.simulator.world import Timings, World
from tests.fakeclock import FakeClock
from tests.simkit import Simulator, simulator

__all__ = ["simulator"]  # the fixture, imported for pytest

WATCH_TIMEOUT = 10.0  # generous: the events asked for are in the history before the watch opens


def client_for(kubeconfig: Path) -> Client:
    return Client(KubeConfig.from_file(str(kubeconfig)), trust_env=False)


def listed_version(listed: ListIterable[Any]) -> str:
    """The resourceVersion a list was read at (lightkube knows it once the list is read)."""
    list(listed)
    return listed.resourceVersion


def first(events: Iterator[tuple[str, Any]], count: int) -> list[tuple[str, str]]:
    """The first ``count`` events as (type, name), or those that came within WATCH_TIMEOUT: read on a thread, so a
    missing event fails the test instead of hanging it (the server's stop at teardown ends that thread's watch)."""
    received: queue.Queue[tuple[str, str] | BaseException | None] = queue.Queue()

    def pump() -> None:
        try:
            for kind, obj in itertools.islice(events, count):
                received.put((kind, obj.metadata.name if obj.metadata else ""))
        except Exception as error:  # handed to the test's thread, which raises it
            received.put(error)
        received.put(None)

    threading.Thread(target=pump, daemon=True).start()
    taken: list[tuple[str, str]] = []
    deadline = time.monotonic() + WATCH_TIMEOUT
    while (left := deadline - time.monotonic()) > 0:
        try:
            item = received.get(timeout=left)
        except queue.Empty:
            break
        if item is None:
            break
        if isinstance(item, BaseException):
            raise item
        taken.append(item)
    return taken


def test_list_then_watch_from_its_version_misses_no_change(simulator: Simulator) -> None:
    simulator.world.add_node("node-a")
    simulator.deployment("web", 1)
    simulator.settle(3)
    client = client_for(simulator.kubeconfig)
    listed = client.list(Pod, namespace="default")
    [before] = [pod.metadata.name for pod in listed if pod.metadata]
    version = listed.resourceVersion

    # Changes made after the list and before the watch opens: the watch must still deliver them, in order.
    simulator.world.delete("Pod", "default", before or "")
    simulator.settle(3)

    events = first(client.watch(Pod, namespace="default", resource_version=version), 5)
    replacement = next(name for kind, name in events if kind == "ADDED")
    assert events == [
        ("MODIFIED", before),  # terminating
        ("ADDED", replacement),
        ("MODIFIED", replacement),  # running
        ("DELETED", before),
        ("MODIFIED", replacement),  # ready
    ]


def test_watch_without_a_version_starts_with_every_object_added(simulator: Simulator) -> None:
    simulator.world.add_node("node-a")
    simulator.world.add_node("node-b")
    client = client_for(simulator.kubeconfig)

    events = first(client.watch(Node), 2)

    assert events == [("ADDED", "node-a"), ("ADDED", "node-b")]


def test_a_selective_watch_sees_objects_enter_and_leave_its_selection(simulator: Simulator) -> None:
    simulator.world.add_node("node-a")
    simulator.deployment("web", 1)
    simulator.settle(3)
    client = client_for(simulator.kubeconfig)
    version = listed_version(client.list(Pod, namespace="default"))
    [pod] = simulator.world.select("Pod", "default")
    name = pod["metadata"]["name"]

    simulator.world.patch("Pod", "default", name, {"metadata": {"labels": {"tier": "front"}}})
    simulator.world.patch("Pod", "default", name, {"metadata": {"labels": {"tier": "back"}}})

    events = first(client.watch(Pod, namespace="default", labels={"tier": "front"}, resource_version=version), 2)
    assert events == [("ADDED", name), ("DELETED", name)]


def test_every_change_gets_a_new_resource_version_and_a_no_op_none(simulator: Simulator) -> None:
    simulator.world.add_node("node-a")
    simulator.deployment("web", 1)
    [pending] = simulator.world.select("Pod", "default")
    simulator.settle(3)  # the kubelet runs it: a change made by a controller, not through the API
    [running] = simulator.world.select("Pod", "default")
    name = running["metadata"]["name"]
    unchanged = simulator.world.patch("Pod", "default", name, {"metadata": {"labels": {"app": "web"}}})

    assert int(running["metadata"]["resourceVersion"]) > int(pending["metadata"]["resourceVersion"])
    assert running["status"]["phase"] == "Running"
    assert unchanged["metadata"]["resourceVersion"] == running["metadata"]["resourceVersion"]


def test_the_official_client_watches_from_a_list(simulator: Simulator) -> None:
    simulator.world.add_node("node-a")
    core = CoreV1Api(new_client_from_config(str(simulator.kubeconfig)))  # type: ignore[no-untyped-call]
    listed = core.list_node().metadata
    assert listed is not None
    version = listed.resource_version
    simulator.world.add_node("node-b")

    stream = watch.Watch().stream(  # type: ignore[no-untyped-call]
        core.list_node, resource_version=version, timeout_seconds=5
    )
    event = next(stream)

    assert (event["type"], event["object"].metadata.name) == ("ADDED", "node-b")


@pytest.fixture
def short_history(tmp_path: Path) -> Iterator[tuple[World, Path]]:
    """A simulator that keeps only the last five changes."""
    world = World(FakeClock(), Timings(), history=5)
    server = KubeApiServer(world).start()
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(yaml.safe_dump(kubeconfig_for(server.url)))
    try:
        yield world, kubeconfig
    finally:
        server.stop()


def test_a_watch_from_a_version_no_longer_kept_is_gone(short_history: tuple[World, Path]) -> None:
    world, kubeconfig = short_history
    client = client_for(kubeconfig)
    version = listed_version(client.list(Node))
    for number in range(6):
        world.add_node(f"node-{number}")

    with pytest.raises(ApiError) as gone:
        first(client.watch(Node, resource_version=version), 1)

    assert (gone.value.status.code, gone.value.status.reason) == (410, "Expired")
    assert "too old resource version" in (gone.value.status.message or "")
