"""A stack's outputs in the sandbox, as CloudFormation gives them.

moto computes a stack's outputs once, when the stack object is made, and an executed change set (the only way `cluster
up` creates or updates a stack) never recomputes them: every stack the tool made had no outputs at all. AWS's
outputs are the point of a stack's contract with its readers (the verbs read the group, its launch template and the
up-to-date fingerprint from them, in the DescribeStacks call they make anyway), so this patch recomputes them from the
executed template and the stack's resources, as CloudFormation does when an operation completes.
"""

from __future__ import annotations

import threading
from typing import Any

_ORIGINAL: dict[str, Any] = {}
_INSTALL_LOCK = threading.Lock()


def install() -> None:
    """Patch moto's CloudFormation once per process."""
    from moto.cloudformation.models import CloudFormationBackend

    with _INSTALL_LOCK:
        if _ORIGINAL:
            return
        _ORIGINAL["execute_change_set"] = CloudFormationBackend.execute_change_set
        CloudFormationBackend.execute_change_set = _execute_change_set  # type: ignore[method-assign,assignment]


def _execute_change_set(backend: Any, change_set_name: str, stack_name: str | None = None) -> None:
    _ORIGINAL["execute_change_set"](backend, change_set_name, stack_name)
    change_set = backend.change_sets.get(change_set_name) or next(
        (each for each in backend.change_sets.values() if each.change_set_name == change_set_name), None
    )
    if change_set is None:
        return
    stack = backend.stacks[change_set.stack_id]
    stack._parse_template()  # moto keeps the template text of the change set but the parsed dict of the old one
    stack.output_map = stack._create_output_map()
