"""Print how long the `cluster` command takes to answer, as a user's shell runs it (fresh process each time).

.venv/bin/python bench/cli_startup.py [--runs N]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CLUSTER = str(Path(sys.executable).parent / "cluster")
COMMANDS = {
    "cluster --help": [CLUSTER, "--help"],
    "cluster render (example)": [CLUSTER, "render", "-c", str(REPO / "cluster.example.toml")],
    "cluster render --userdata": [CLUSTER, "render", "--userdata", "-c", str(REPO / "cluster.example.toml")],
}


def measure(command: list[str], runs: int) -> list[float]:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(command, check=True, capture_output=True)
        times.append(time.perf_counter() - start)
    return times


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=10)
    runs = parser.parse_args().runs
    print("| command | median | min | max | runs |\n|---|---|---|---|---|")
    for label, command in COMMANDS.items():
        times = measure(command, runs)
        print(
            f"| `{label}` | {statistics.median(times) * 1000:.0f} ms | {min(times) * 1000:.0f} ms "
            f"| {max(times) * 1000:.0f} ms | {runs} |"
        )


if __name__ == "__main__":
    main()
