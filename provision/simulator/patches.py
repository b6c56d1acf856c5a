"""The three patch types of the API: JSON patch (RFC 6902), JSON merge patch (RFC 7386) and strategic merge patch.

A strategic merge patch merges lists of objects element by element on a merge key (containers by name, ...) where a
merge patch replaces them. The real server takes each list's merge key from the Go types; the simulator has no such
table, so it takes it from the patch itself: kubectl (``set image``, ``apply``, ``edit``) writes a
``$setElementOrder/<list>`` directive beside every list it merges, listing the elements by their merge key, and
``$patch: delete`` elements carry theirs. A list with neither directive is replaced, as a merge patch replaces it.
``$patch: replace``, ``$retainKeys`` and ``$deleteFromPrimitiveList/<list>`` are honoured too.
"""

from __future__ import annotations

import copy
from typing import Any

Obj = dict[str, Any]
ORDER = "$setElementOrder/"
DELETE_FROM = "$deleteFromPrimitiveList/"


class PatchError(Exception):
    """A patch that cannot be applied (422 Invalid)."""


def apply(document: Obj, patch: Obj | list[Obj], *, strategic: bool = False) -> Obj:
    """A copy of ``document`` with the patch applied: a list is a JSON patch; a map a merge patch, or a strategic
    merge patch when ``strategic``."""
    if isinstance(patch, list):
        return _json_patch(document, patch)
    if not isinstance(patch, dict):
        raise PatchError("a patch must be a JSON object or a list of operations")
    merged: Obj = (_strategic if strategic else _merge)(copy.deepcopy(document), patch)
    return merged


def _merge(target: Any, patch: Any) -> Any:
    if not isinstance(patch, dict):
        return patch
    if not isinstance(target, dict):
        target = {}
    for key, value in patch.items():
        if value is None:
            target.pop(key, None)
        else:
            target[key] = _merge(target.get(key), value)
    return target


def _strategic(target: Any, patch: Any) -> Any:
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    if patch.get("$patch") == "replace":
        return {key: value for key, value in patch.items() if key != "$patch"}
    result: Obj = target if isinstance(target, dict) else {}
    orders = {key.removeprefix(ORDER): value for key, value in patch.items() if key.startswith(ORDER)}
    for key, value in patch.items():
        if key.startswith("$"):
            continue
        if value is None:
            result.pop(key, None)
        elif isinstance(value, list) and (key in orders or any(_directive(item) for item in value)):
            result[key] = _merge_list(result.get(key) or [], value, orders.get(key))
        elif isinstance(value, dict):
            result[key] = _strategic(result.get(key), value)
        else:
            result[key] = copy.deepcopy(value)
    return _directives(result, patch, orders)


def _directives(result: Obj, patch: Obj, orders: dict[str, Any]) -> Obj:
    """What the map-level directives do after the merge: reorder, remove from sets, keep only some keys."""
    for key, order in orders.items():
        if key not in patch:  # only the order given: the elements stay as they are
            result[key] = _merge_list(result.get(key) or [], [], order)
    for key, removed in patch.items():
        if key.startswith(DELETE_FROM):
            name = key.removeprefix(DELETE_FROM)
            result[name] = [item for item in result.get(name) or [] if item not in removed]
    if isinstance(patch.get("$retainKeys"), list):
        result = {key: value for key, value in result.items() if key in patch["$retainKeys"]}
    return result


def _directive(item: Any) -> bool:
    return isinstance(item, dict) and "$patch" in item


def _merge_key(patch_items: list[Any], order: list[Any] | None) -> str | None:
    """The key the list merges on, as the directives name it: the one key of each $setElementOrder entry, or the
    key beside a ``$patch`` in an element."""
    for item in [*(order or []), *patch_items]:
        if isinstance(item, dict):
            keys = [str(key) for key in item if key != "$patch"]
            if len(keys) == 1 and (item in (order or []) or _directive(item)):
                return keys[0]
    return None


def _merge_list(current: list[Any], patch_items: list[Any], order: list[Any] | None) -> list[Any]:
    key = _merge_key(patch_items, order)
    if key is None:  # a list of scalars (a set, such as finalizers): the union
        merged = list(current) + [item for item in patch_items if item not in current]
        return _ordered(merged, order, lambda item: item)
    elements = [copy.deepcopy(item) for item in current]
    for item in patch_items:
        if not isinstance(item, dict) or key not in item:
            raise PatchError(f"map: {item} does not contain declared merge key: {key}")
        at = next((index for index, element in enumerate(elements) if element.get(key) == item[key]), None)
        if item.get("$patch") == "delete":
            if at is not None:
                del elements[at]
        elif at is None:
            elements.append(_strategic({}, item))
        else:
            elements[at] = _strategic(elements[at], item)
    return _ordered(elements, order, lambda element: {key: element.get(key)})


def _ordered(elements: list[Any], order: list[Any] | None, identity: Any) -> list[Any]:
    """The elements in the order the directive gives; those it does not name keep their place after them."""
    if not order:
        return elements
    position = {repr(entry): index for index, entry in enumerate(order)}
    return sorted(elements, key=lambda element: position.get(repr(identity(element)), len(order)))


def _json_patch(document: Obj, operations: list[Obj]) -> Obj:
    """RFC 6902: add, remove, replace and test (what clients send); the pointer escapes ~0 and ~1 are honoured."""
    result = copy.deepcopy(document)
    for operation in operations:
        parts = [part.replace("~1", "/").replace("~0", "~") for part in operation["path"].split("/")[1:]]
        parent: Any = result
        for part in parts[:-1]:
            parent = parent[int(part)] if isinstance(parent, list) else parent.setdefault(part, {})
        last, op = parts[-1], operation["op"]
        if op == "test":
            current = parent[int(last)] if isinstance(parent, list) else parent.get(last)
            if current != operation.get("value"):
                raise PatchError(f"the test operation failed at {operation['path']}")
        elif op == "remove":
            del parent[int(last) if isinstance(parent, list) else last]
        elif isinstance(parent, list):
            index = len(parent) if last == "-" else int(last)
            if op == "add":
                parent.insert(index, operation["value"])
            else:
                parent[index] = operation["value"]
        elif op in {"add", "replace"}:
            parent[last] = operation["value"]
        else:
            raise PatchError(f"unsupported JSON patch operation {op!r}")
    return result
