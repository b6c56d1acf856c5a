"""Label selectors (equality and set based, as strings or as LabelSelector objects) and field selectors: the
facade uses them to find the budgets that cover a pod, the simulator to answer list calls."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

Labels = dict[str, str]
Matcher = Callable[[Labels], bool]
ObjectMatcher = Callable[[dict[str, Any]], bool]
_SET = re.compile(r"^\s*([\w./-]+)\s+(in|notin)\s+\(([^)]*)\)\s*$")


def _split_terms(text: str) -> list[str]:
    """Split on commas that are not inside parentheses."""
    terms, depth, current = [], 0, ""
    for char in text:
        depth += char == "("
        depth -= char == ")"
        if char == "," and depth == 0:
            terms.append(current.strip())
            current = ""
        else:
            current += char
    if current.strip():
        terms.append(current.strip())
    return terms


def _label_term(term: str) -> Matcher:
    set_based = _SET.match(term)
    if set_based:
        key, operator, values = set_based.groups()
        allowed = {value.strip() for value in values.split(",")}
        if operator == "in":
            return lambda labels: labels.get(key) in allowed
        return lambda labels: labels.get(key) not in allowed
    if "!=" in term:
        key, value = (part.strip() for part in term.split("!=", 1))
        return lambda labels: labels.get(key) != value
    if "=" in term:
        key, value = (part.strip() for part in term.replace("==", "=").split("=", 1))
        return lambda labels: labels.get(key) == value
    if term.startswith("!"):
        absent = term[1:].strip()
        return lambda labels: absent not in labels
    return lambda labels: term in labels


def parse_label_selector(text: str) -> Matcher:
    checks = [_label_term(term) for term in _split_terms(text or "")]
    return lambda labels: all(check(labels) for check in checks)


def label_selector_object(selector: dict[str, Any] | None) -> Matcher:
    """A metav1.LabelSelector (matchLabels and matchExpressions). An empty selector matches everything."""
    selector = selector or {}
    wanted = selector.get("matchLabels") or {}
    expressions = selector.get("matchExpressions") or []

    def matches(labels: Labels) -> bool:
        if any(labels.get(key) != value for key, value in wanted.items()):
            return False
        for expression in expressions:
            key, operator, values = expression["key"], expression["operator"], set(expression.get("values") or [])
            present = key in labels
            if (
                (operator == "In" and labels.get(key) not in values)
                or (operator == "NotIn" and present and labels[key] in values)
                or (operator == "Exists" and not present)
                or (operator == "DoesNotExist" and present)
            ):
                return False
        return True

    return matches


# Boolean fields the API server lets clients select by: it formats them as Go does ("true"/"false"), an absent one
# as "false", so `spec.unschedulable=false` matches a node never cordoned.
BOOLEAN_FIELDS = frozenset({"spec.unschedulable", "spec.hostNetwork"})


def field_value(obj: dict[str, Any], path: str) -> str:
    current: Any = obj
    for part in path.split("."):
        current = current.get(part) if isinstance(current, dict) else None
    if isinstance(current, bool) or (current is None and path in BOOLEAN_FIELDS):
        return "true" if current else "false"
    return "" if current is None else str(current)


def _field_term(term: str) -> ObjectMatcher:
    negate = "!=" in term
    path, value = (part.strip() for part in term.replace("!=", "=").replace("==", "=").split("=", 1))
    if negate:
        return lambda obj: field_value(obj, path) != value
    return lambda obj: field_value(obj, path) == value


def field_paths(text: str) -> list[str]:
    """The field paths a field selector names."""
    return [term.replace("!=", "=").split("=", 1)[0].strip() for term in (text or "").split(",") if term.strip()]


def parse_field_selector(text: str) -> ObjectMatcher:
    checks = [_field_term(term.strip()) for term in (text or "").split(",") if term.strip()]
    return lambda obj: all(check(obj) for check in checks)
