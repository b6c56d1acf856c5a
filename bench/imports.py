"""Print what importing each heavy library costs in a fresh interpreter (median of N runs), to keep `cluster --help`
fast and to choose between Kubernetes clients.

    .venv/bin/python bench/imports.py [--runs N]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys

CANDIDATES = {
    "click (the CLI itself)": "import click",
    "provision.cli (`cluster --help`)": "import provision.cli",
    "boto3": "import boto3",
    "troposphere + awacs": "import troposphere, awacs.aws",
    "pydantic": "import pydantic",
    "lightkube (the chosen client)": "import lightkube; from lightkube.resources import core_v1, apps_v1, policy_v1",
    "kubernetes (official client)": "import kubernetes.client, kubernetes.config",
    "paramiko": "import paramiko",
    "moto (sandbox only)": "import moto",
}


def cost(statement: str) -> float:
    code = f"import time; t = time.perf_counter(); {statement}; print(time.perf_counter() - t)"
    return float(subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    runs = parser.parse_args().runs
    print("| import | median | runs |\n|---|---|---|")
    for label, statement in CANDIDATES.items():
        print(f"| {label} | {statistics.median(cost(statement) for _ in range(runs)) * 1000:.0f} ms | {runs} |")


if __name__ == "__main__":
    main()
