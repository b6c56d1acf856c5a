"""What hosts write about themselves under `/cluster/<name>/hosts/<instance-id>/` (userdata/bootstrap.sh.j2 and
userdata/health-agent.sh), read in one place for `up`, `status`, `doctor` and `heal`:

- `boot`: written when a boot step fails, `failed step=<step> exit=<code> at=<time>` and then the step's log tail;
- `health`: the health agent's last verdict, `<time> healthy failures=0` or `<time> failing:kubelet disk failures=3`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from provision.render.names import host_records_path


@dataclass(frozen=True)
class BootRecord:
    """What a host's boot script recorded when a step failed."""

    instance_id: str
    parameter: str
    step: str
    exit_code: str
    at: datetime | None
    log: tuple[str, ...]


@dataclass(frozen=True)
class HealthRecord:
    """The health agent's last published verdict."""

    instance_id: str
    verdict: str
    failures: int
    at: datetime | None

    @property
    def failing(self) -> bool:
        return self.verdict.startswith("failing")

    @property
    def failed_checks(self) -> str:
        return self.verdict.partition(":")[2].replace(" ", ", ")


def boot_record(parameter: str, instance_id: str, value: str) -> BootRecord | None:
    """The failure in a `boot` record, or None when the record says nothing failed."""
    if not value.startswith("failed "):
        return None
    head, _, log = value.partition("\n")
    fields = dict(part.split("=", 1) for part in head.split()[1:] if "=" in part)
    return BootRecord(
        instance_id=instance_id,
        parameter=parameter,
        step=fields.get("step", "?"),
        exit_code=fields.get("exit", "?"),
        at=_when(fields.get("at", "")),
        log=tuple(line for line in log.splitlines() if line.strip()),
    )


def boot_records(records: Mapping[str, str], parameter_path: str) -> list[BootRecord]:
    """Every failed boot among ``records`` (parameter name -> value, as read under the hosts' path), by name."""
    found = []
    for name, value in sorted(records.items()):
        instance = _host_of(name, parameter_path, "boot")
        record = boot_record(name, instance, value) if instance else None
        if record is not None:
            found.append(record)
    return found


def health_records(records: Mapping[str, str], parameter_path: str) -> dict[str, HealthRecord]:
    """Instance id -> the health agent's last verdict, among ``records``."""
    found = {}
    for name, value in records.items():
        instance = _host_of(name, parameter_path, "health")
        parts = value.split()
        if instance is None or len(parts) < 2:
            continue
        failures = next((part.removeprefix("failures=") for part in parts if part.startswith("failures=")), "0")
        found[instance] = HealthRecord(
            instance_id=instance,
            verdict=" ".join(part for part in parts[1:] if not part.startswith("failures=")),
            failures=int(failures) if failures.isdigit() else 0,
            at=_when(parts[0]),
        )
    return found


def _host_of(name: str, parameter_path: str, leaf: str) -> str | None:
    """The instance id in `<hosts path>/<instance-id>/<leaf>`, or None for another parameter."""
    prefix = host_records_path(parameter_path) + "/"
    instance, _, rest = name.removeprefix(prefix).partition("/")
    return instance if name.startswith(prefix) and rest == leaf else None


def _when(text: str) -> datetime | None:
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
