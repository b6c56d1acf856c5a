"""The `cluster` command itself: verbs, `render`'s outputs, and a fast `--help` that imports nothing heavy."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import EXAMPLE, GOLDEN, Outcome

Run = Callable[..., Outcome]

PRODUCT_VERBS = ["up", "render", "status", "patch", "replace", "roll", "heal", "down", "ssh", "exec", "diagnose",
                 "doctor", "sandbox", "demo"]  # fmt: skip
HEAVY = [
    "boto3",
    "botocore",
    "troposphere",
    "awacs",
    "paramiko",
    "kubernetes",
    "lightkube",
    "moto",
    "cfnlint",
    "pydantic",
]


def test_help_lists_every_verb_of_the_product(run_main: Run) -> None:
    outcome = run_main("--help")

    assert outcome.code == 0
    # Verb rows start at the section's indent; wrapped help continues further right.
    listed = re.findall(r"^  (\S+)", outcome.out.split("Commands:")[1], flags=re.MULTILINE)
    assert listed == PRODUCT_VERBS


def test_help_imports_no_heavy_library() -> None:
    # A fresh interpreter, as a user's shell would start it.
    probe = (
        "import sys\n"
        "from provision.cli import main\n"
        "code = main(['--help'])\n"
        f"print(sorted(m for m in {HEAVY!r} if m in sys.modules), code)\n"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert result.stdout.strip().splitlines()[-1] == "[] 0"


def test_render_prints_the_example_template(run_main: Run) -> None:
    outcome = run_main("render", "-c", str(EXAMPLE))

    assert outcome.code == 0, outcome.err
    assert outcome.out == (GOLDEN / "kubeadm.template.yaml").read_text()


def test_render_json(run_main: Run) -> None:
    outcome = run_main("render", "-c", str(EXAMPLE), "--format", "json")
    assert json.loads(outcome.out)["Resources"]["HostGroup"]["Type"] == "AWS::AutoScaling::AutoScalingGroup"


def test_render_userdata(run_main: Run) -> None:
    outcome = run_main("render", "-c", str(EXAMPLE), "--userdata")
    assert outcome.out == (GOLDEN / "kubeadm.userdata.sh").read_text()


def test_render_output_writes_template_and_userdata(run_main: Run, in_tmp: Path) -> None:
    outcome = run_main("render", "-c", str(EXAMPLE), "--output", "out/rendered")

    assert outcome.code == 0
    written = sorted(path.name for path in (in_tmp / "out/rendered").iterdir())
    assert written == ["template.yaml", "userdata.sh"]
    assert (in_tmp / "out/rendered/userdata.sh").read_text() == (GOLDEN / "kubeadm.userdata.sh").read_text()


GROUPS = Path(__file__).resolve().parent / "configs" / "groups-kubeadm.toml"


def test_render_userdata_of_one_of_several_groups(run_main: Run) -> None:
    outcome = run_main("render", "-c", str(GROUPS), "--userdata", "--group", "system")

    assert outcome.code == 0, outcome.err
    assert "readonly NODE_TAINTS=dedicated=system:NoSchedule" in outcome.out
    assert "readonly GROUP_RESOURCE=HostGroupSystem" in outcome.out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--userdata"], "error: --userdata: there are several groups (system, workers); choose one with --group"),
        (["--userdata", "--group", "gpu"], "error: --group: there is no group 'gpu' (the groups: system, workers)"),
    ],
)
def test_render_userdata_of_several_groups_needs_a_group_it_has(run_main: Run, args: list[str], message: str) -> None:
    outcome = run_main("render", "-c", str(GROUPS), *args)

    assert (outcome.code, outcome.out, outcome.err.strip()) == (2, "", message)


def test_render_output_writes_the_userdata_of_each_group(run_main: Run, in_tmp: Path) -> None:
    outcome = run_main("render", "-c", str(GROUPS), "--output", "out")

    assert outcome.code == 0, outcome.err
    written = sorted(path.name for path in (in_tmp / "out").iterdir())
    assert written == ["template.yaml", "userdata-system.sh", "userdata-workers.sh"]
    assert "NODE_TAINTS" in (in_tmp / "out/userdata-system.sh").read_text()
    assert "NODE_TAINTS" not in (in_tmp / "out/userdata-workers.sh").read_text()


def test_render_output_of_a_bad_config_writes_nothing(run_main: Run, in_tmp: Path) -> None:
    bad = in_tmp / "bad.toml"
    bad.write_text(EXAMPLE.read_text().replace('instance_type = "m4.large"', 'instance_type = "m4"'))

    outcome = run_main("render", "-c", str(bad), "--output", "out")

    assert outcome.code == 2
    assert not (in_tmp / "out").exists()


def test_render_uses_cluster_toml_of_the_working_folder(run_main: Run, in_tmp: Path) -> None:
    (in_tmp / "cluster.toml").write_text(EXAMPLE.read_text().replace('name = "demo"', 'name = "here"'))

    outcome = run_main("render", "--userdata")

    assert "readonly CLUSTER=here" in outcome.out
    assert outcome.err == ""


def test_render_without_a_config_falls_back_to_the_packaged_example_and_says_so(run_main: Run) -> None:
    outcome = run_main("render")

    assert outcome.code == 0
    assert outcome.out == (GOLDEN / "kubeadm.template.yaml").read_text()
    assert "using the packaged cluster.example.toml" in outcome.err


def test_conflicting_flags_are_a_usage_error(run_main: Run) -> None:
    outcome = run_main("render", "--userdata", "--output", "x")
    assert outcome.code == 2
    assert "Choose one" in outcome.err


def test_version(run_main: Run) -> None:
    outcome = run_main("--version")
    assert outcome.code == 0 and outcome.out.startswith("cluster, version ")


def test_render_a_given_patch_generation(run_main: Run) -> None:
    outcome = run_main("render", "-c", str(EXAMPLE), "--patch-generation", "7")

    assert outcome.code == 0
    assert "!Sub '${ImageId}/7/" in outcome.out
    assert outcome.out.replace("/7/", "/0/") == (GOLDEN / "kubeadm.template.yaml").read_text()


@pytest.mark.parametrize(
    ("violations", "said"),
    [(2, "2 pod(s) were removed against their disruption budget"), (None, "did not report its budget violations")],
)
def test_the_demo_fails_when_a_budget_was_violated_or_cannot_be_counted(
    run_main: Run, monkeypatch: pytest.MonkeyPatch, violations: int | None, said: str
) -> None:
    from provision import demo

    def story(ui: object, *, boot_seconds: float, **budget: object) -> demo.Summary:
        return demo.Summary(replaced=4, lowest_ready=3, desired=3, healed=1, budget_violations=violations)

    monkeypatch.setattr(demo, "run_demo", story)

    outcome = run_main("demo")

    assert outcome.code == 1
    assert said in outcome.err
