"""The roll report: its JSON holds the run's timeline, and its page, opened in a real headless browser (Debian's
chromium), draws the three charts. Without chromium the page test skips locally; in CI (``CI`` set) it fails."""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from rich.console import Console

from provision.config.schema import Rolling
from provision.roll import report
from provision.roll.document import Document, plan_document, result_document
from provision.roll.engine import Roll
from provision.roll.journal import Journal
from provision.roll.lock import RunLock
from provision.roll.plan import Budget, Strategy, outdated
from provision.ui import UI
from tests.rollfakes import FakeKube, FakeParameters, World, fake_fleet


@pytest.fixture(scope="module")
def page(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A surge-2 roll of five hosts on the fakes, and the report the verbs would write for it."""
    world, parameters = World.with_hosts(5), FakeParameters()
    settings = Rolling.model_validate({"max_surge": 2, "drain_timeout_seconds": 600, "ready_timeout_seconds": 600})
    fleet = fake_fleet(world)
    snapshot = fleet.snapshot()
    plan = outdated(snapshot, operation="patch", include_protected=False,
                    budget=Budget.resolve(settings, snapshot.desired), strategy=Strategy.of(settings))  # fmt: skip
    ui = UI(Console(file=io.StringIO()), ask=None, assume_yes=True)
    roll = Roll(fleet, FakeKube(world), Journal(parameters, "/c"), RunLock(parameters, "/c"), ui, world.clock, settings)
    result = roll.run(plan, owner="test")
    assert result.timeline is not None
    document = Document(plan=plan_document(plan), result=result_document(result))
    return report.write(tmp_path_factory.mktemp("reports"), "patch", document.as_json(), result.timeline)


def test_the_report_json_holds_every_action_each_hosts_phases_the_drains_and_the_capacity(page: Path) -> None:
    data = json.loads(page.with_suffix(".json").read_text())
    timeline = data["timeline"]
    replaced = {item["instance_id"] for item in data["result"]["replaced"]}

    assert page.name.startswith("patch-") and len(replaced) == 5
    kinds = [step["action"] for step in timeline["steps"]]
    assert {"admit", "resize", "cordon", "drain", "terminate", "finish"} <= set(kinds)
    assert {host for step in timeline["steps"] if step["action"] == "drain" for host in step["hosts"]} == replaced
    for host in replaced:
        phases = [entry["phase"] for entry in timeline["entered"] if entry["host"] == host]
        assert phases == ["admitted", "ready", "cordoned", "drained", "migrated", "terminated"], host
    assert sum(drain["evicted"] for drain in timeline["drains"]) == 10, "two pods on each of five hosts"
    assert max(sample["desired"] for sample in timeline["samples"]) == 9, "five, a surge of two, two more overlapping"
    assert min(sample["ready"] for sample in timeline["samples"]) == 5, "never below desired"
    times = [step["at"] for step in timeline["steps"]]
    assert times == sorted(times) and times[-1] > 0


def test_the_report_page_draws_its_three_charts_in_a_real_browser(page: Path, tmp_path: Path) -> None:
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed (apt-get install chromium)")
        pytest.skip("chromium is not installed (apt-get install chromium)")
    html = page.read_text()
    assert "<script" in html and "cdn" not in html.split("<body>")[0], "plotly.js inlined: the page opens offline"
    assert not re.search(r"<script[^>]*\bsrc=", html), "no script fetched from anywhere: plotly.js is in the page"

    flags = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        f"--user-data-dir={tmp_path}",
        "--virtual-time-budget=15000",
    ]
    command = [browser, *flags, "--dump-dom", page.as_uri()]
    run = subprocess.run(command, check=False, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    dom = run.stdout

    for chart in ("capacity", "phases", "evictions"):
        start = dom.index(f'id="{chart}"')
        assert 'class="main-svg"' in dom[start : start + 200_000], f"the {chart} chart was drawn"
    for label in ("Ready and schedulable", "boot", "drain", "evicted"):
        assert f">{label}<" in dom, f"the legend names {label}"
