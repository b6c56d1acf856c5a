"""The code's layering, as the README's layout table states it: the CLI (provision/cli.py and provision/verbs/) on
top, the only code that imports click or the verbs; AWS below, through the typed facades of provision/aws/, the only
code that imports boto3 or botocore or reaches a facade's raw client."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "provision"
FACADES = {"stacks", "groups", "instances", "parameters", "eks", "alarms", "queues"}


def modules() -> Iterator[tuple[str, ast.Module]]:
    for path in sorted(PACKAGE.rglob("*.py")):
        yield path.relative_to(PACKAGE.parent).as_posix(), ast.parse(path.read_text(), str(path))


def imported(tree: ast.Module) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def cli(module: str) -> bool:
    return module in {"provision/cli.py", "provision/__main__.py"} or module.startswith("provision/verbs/")


def test_the_layout_check_sees_the_code() -> None:
    found = dict(modules())
    assert "provision/cli.py" in found and "provision/aws/groups.py" in found and len(found) > 50


@pytest.mark.parametrize("module,tree", list(modules()), ids=lambda value: value if isinstance(value, str) else "")
def test_each_module_stays_in_its_layer(module: str, tree: ast.Module) -> None:
    names = imported(tree)
    if not cli(module):
        assert not {name for name in names if name.split(".")[0] == "click"}, "click belongs to the CLI"
        assert not {name for name in names if name.startswith(("provision.verbs", "provision.cli"))}, "no arrow up"
    if not module.startswith("provision/aws/"):
        assert not {name for name in names if name.split(".")[0] in {"boto3", "botocore"}}, "AWS: provision/aws/"
        raw = [
            node.lineno
            for node in ast.walk(tree)
            if isinstance(node, ast.Attribute)
            and node.attr == "client"
            and isinstance(node.value, ast.Attribute)
            and node.value.attr in FACADES
        ]
        assert not raw, f"a facade's raw client used at line(s) {raw}: add the call to the facade"
