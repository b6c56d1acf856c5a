"""`cluster heal` at the CLI edge: what it needs, and what it says when it cannot start (one line, an exit code)."""

from __future__ import annotations

from collections.abc import Callable

from tests.conftest import EXAMPLE, Outcome
from tests.simkit import Simulator, simulator

__all__ = ["simulator"]  # the fixture

Run = Callable[..., Outcome]


def test_without_the_kubernetes_api_heal_refuses_to_start(run_main: Run, moto: None) -> None:
    outcome = run_main("--kubeconfig", "nowhere.yaml", "heal", "-c", str(EXAMPLE))

    assert outcome.code == 2
    assert outcome.err.strip().splitlines() == [
        "error: `cluster heal` drains hosts, so it needs the Kubernetes API: no kubeconfig at nowhere.yaml: "
        "set kubernetes.kubeconfig in the configuration or KUBECONFIG"
    ]


def test_without_the_clusters_stack_heal_says_which_stack_is_missing(
    run_main: Run, moto: None, simulator: Simulator
) -> None:
    outcome = run_main("--kubeconfig", str(simulator.kubeconfig), "heal", "--once", "-c", str(EXAMPLE))

    assert outcome.code == 1
    assert outcome.err.strip().splitlines() == [
        "error: no stack cluster-demo in eu-west-1; create it with `cluster up`"
    ]
