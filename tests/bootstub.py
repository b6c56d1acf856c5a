"""Run a rendered boot script under bash with stub commands on PATH instead of a real host.

Every stub records its command line in a call log. ``curl`` plays IMDSv2 and the kubelet health endpoint; ``aws``
answers the few calls whose output the script uses. A stub named in ``fail`` exits 1, which is how a test breaks one
step. File system writes land below ``root`` (the script's CLUSTER_HOST_ROOT), never on the machine running the tests.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

INSTANCE_ID = "i-0123456789abcdef0"
GROUP = "cluster-demo-HostGroup-ABC123"
JOIN_TOKEN = "abcdef.0123456789abcdef"

STUBBED = [
    "aws",
    "containerd",
    "curl",
    "dnf",
    "kubeadm",
    "kubelet",
    "logger",
    "modprobe",
    "nodeadm",
    "reboot",
    "sleep",
    "sysctl",
    "systemctl",
]

STUB = r"""#!/bin/bash
name=${0##*/}
printf '%s\n' "$name $*" >>"$STUB_LOG"
case " $STUB_FAIL " in *" $name "*) echo "$name: injected failure" >&2; exit 1 ;; esac
case "$name $*" in
  "curl "*/api/token*) echo imds-token ;;
  "curl "*/meta-data/instance-id*) echo "$STUB_INSTANCE_ID" ;;
  "curl "*/meta-data/local-hostname*) echo ip-10-42-0-10.eu-west-1.compute.internal ;;
  "curl "*/meta-data/placement/availability-zone*) echo eu-west-1a ;;
  "curl "*/healthz*) [[ " $STUB_FAIL " != *" healthz "* ]] || exit 22; echo ok ;;
  "aws ssm get-parameter "*) echo "$STUB_TOKEN" ;;
  "aws autoscaling describe-auto-scaling-instances "*) echo "$STUB_GROUP" ;;
  # The health agent's calls (it names the region): its group, the group's desired capacity and members (this host,
  # then STUB_MEMBERS' tab-separated lines), the storm guard's slots (STUB_REPAIR's name<TAB>value lines).
  "aws --region "*" autoscaling describe-auto-scaling-instances "*) echo "$STUB_GROUP" ;;
  "aws --region "*" autoscaling describe-auto-scaling-groups "*)
    printf '%s\n%s\tInService\tHealthy\n' "${STUB_DESIRED:-3}" "$STUB_INSTANCE_ID"
    [[ -z "${STUB_MEMBERS:-}" ]] || printf '%s\n' "$STUB_MEMBERS" ;;
  "aws --region "*" ssm get-parameters-by-path "*) [[ -z "${STUB_REPAIR:-}" ]] || printf '%s\n' "$STUB_REPAIR" ;;
  "aws eks describe-cluster "*) printf 'https://ABC.gr7.eu-west-1.eks.amazonaws.com\tQ0EtREFUQQ==\t172.20.0.0/16\n' ;;
  "dnf needs-restarting "*) exit "${STUB_NEEDS_REBOOT:-0}" ;;
  "containerd config default") echo "  SystemdCgroup = false" ;;
  "kubeadm join "*)
    # Keep what kubeadm was given, and the file's mode, for the test to inspect.
    config=${*: -1}
    stat -c '%a' "$config" >"$STUB_DIR/kubeadm-config-mode"
    cp "$config" "$STUB_DIR/kubeadm-config-seen" ;;
esac
exit 0
"""


@dataclass(frozen=True)
class Run:
    code: int
    output: str
    calls: list[str]
    root: Path
    stubs: Path

    def called(self, prefix: str) -> list[int]:
        """Positions in the call log of the calls that start with ``prefix``."""
        return [index for index, call in enumerate(self.calls) if call.startswith(prefix)]

    def log_text(self) -> str:
        path = self.root / "var/log/cluster-bootstrap.log"
        return path.read_text() if path.exists() else ""

    def files_text(self) -> str:
        """The text of every file the script left below its root."""
        return "\n".join(path.read_text(errors="replace") for path in sorted(self.root.rglob("*")) if path.is_file())


class Host:
    """A fake host: a root folder and a stub folder that persist across runs, like a real disk across reboots."""

    def __init__(self, base: Path) -> None:
        self.root = base / "root"
        self.stubs = base / "stubs"
        self.root.mkdir()
        self.stubs.mkdir()
        for name in STUBBED:
            path = self.stubs / name
            path.write_text(STUB)
            path.chmod(0o755)
        self.call_log = self.stubs / "calls.log"

    def run(
        self, script: Path, *, fail: str = "", needs_reboot: bool = False, extra_env: dict[str, str] | None = None
    ) -> Run:
        self.call_log.write_text("")
        env = {
            "PATH": f"{self.stubs}:{os.environ['PATH']}",
            "HOME": str(self.root),
            "CLUSTER_HOST_ROOT": str(self.root),
            "STUB_DIR": str(self.stubs),
            "STUB_LOG": str(self.call_log),
            "STUB_FAIL": fail,
            "STUB_TOKEN": JOIN_TOKEN,
            "STUB_GROUP": GROUP,
            "STUB_INSTANCE_ID": INSTANCE_ID,
            "STUB_NEEDS_REBOOT": "1" if needs_reboot else "0",
            **(extra_env or {}),
        }
        result = subprocess.run(
            ["bash", str(script)], env=env, capture_output=True, text=True, timeout=120, check=False
        )
        calls = self.call_log.read_text().splitlines()
        return Run(result.returncode, result.stdout + result.stderr, calls, self.root, self.stubs)
