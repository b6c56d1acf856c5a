"""OpenAPI documents (v2 at /openapi/v2, v3 at /openapi/v3 and /openapi/v3/<group-version>) for the kinds served,
generated from the type definitions lightkube ships (lightkube-models: one msgspec Struct per API type, its fields
annotated with their types and described in its docstring), never written by hand.

kubectl reads them for `explain` and, before `apply`/`create`, to learn that the server validates fields itself
(the ``fieldValidation`` parameter of each PATCH operation); ``unknown_fields`` is that validation, on the same
schemas. What lightkube's annotations do not carry is said where it is filled in: maps are annotated ``dict`` (every
map in the served types has string values, quantities and timestamps included), and the patch strategies
(``x-kubernetes-patch-merge-key``) are missing, so `kubectl apply` computes patches that replace lists whole.
"""

from __future__ import annotations

import functools
import hashlib
import importlib
import json
import re
from dataclasses import dataclass, field
from typing import Any

import msgspec

from provision.simulator import protobuf
from provision.simulator.resources import RESOURCES, Resource

Obj = dict[str, Any]
V3_PREFIX = "/openapi/v3/"
META = "io.k8s.apimachinery.pkg.apis.meta.v1"
# The apimachinery types lightkube aliases to Python ones, under their real names.
SCALARS: dict[str, tuple[str, Obj]] = {
    "meta_v1.Time": (f"{META}.Time", {"type": "string", "format": "date-time"}),
    "meta_v1.MicroTime": (f"{META}.MicroTime", {"type": "string", "format": "date-time"}),
    "util_intstr.IntOrString": (
        "io.k8s.apimachinery.pkg.util.intstr.IntOrString",
        {"type": "string", "format": "int-or-string"},
    ),
    "resource.Quantity": ("io.k8s.apimachinery.pkg.api.resource.Quantity", {"type": "string"}),
    "runtime.RawExtension": ("io.k8s.apimachinery.pkg.runtime.RawExtension", {"type": "object"}),
    "meta_v1.FieldsV1": (f"{META}.FieldsV1", {"type": "object"}),
    "meta_v1.Patch": (f"{META}.Patch", {"type": "object"}),
}
PRIMITIVES: dict[str, Obj] = {
    "str": {"type": "string"},
    "int": {"type": "integer", "format": "int64"},
    "float": {"type": "number", "format": "double"},
    "bool": {"type": "boolean"},
    "dict": {"type": "object", "additionalProperties": {"type": "string"}},
}
PATCH_TYPES = ("application/json-patch+json", "application/merge-patch+json", "application/strategic-merge-patch+json")
GENERIC = re.compile(r"^(Optional|List)\[(.*)\]$")
FIELD = re.compile(r"^\s*\* \*\*(\w+)\*\* ``[^`]*`` - ", re.MULTILINE)


@dataclass
class Definition:
    """One named schema: its JSON name, description and, for an object, its properties by JSON name."""

    name: str
    schema: Obj
    properties: dict[str, Type] = field(default_factory=dict)
    required: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Type:
    """A field's type: a named definition, a primitive, or an array of one."""

    definition: str = ""  # the named schema's name
    primitive: str = ""  # a key of PRIMITIVES
    array: bool = False
    description: str = ""


class Definitions:
    """Every schema reachable from the kinds served, by name."""

    def __init__(self) -> None:
        self.by_name: dict[str, Definition] = {}

    def of_kind(self, group: str, version: str, kind: str) -> str:
        return self._struct(_module(group, version), kind)

    def _struct(self, module: str, class_name: str) -> str:
        name = f"{_package(module)}.{class_name}"
        if name in self.by_name:
            return name
        cls = getattr(importlib.import_module(f"lightkube.models.{module}"), class_name)
        summary, described = _docstring(cls.__doc__ or "")
        definition = Definition(name, {"description": summary, "type": "object"})
        self.by_name[name] = definition  # before the fields: types refer to themselves (JSONSchemaProps, ...)
        annotations: dict[str, str] = {}
        for base in reversed(cls.__mro__):
            annotations.update(getattr(base, "__annotations__", {}))
        for info in msgspec.structs.fields(cls):
            text = str(annotations[info.name])
            definition.properties[info.encode_name] = self._type(module, text, described.get(info.encode_name, ""))
            if info.required:
                definition.required.append(info.encode_name)
        return name

    def _type(self, module: str, text: str, description: str) -> Type:
        array = False
        while match := GENERIC.match(text):
            array = array or match[1] == "List"
            text = match[2]
        if text in PRIMITIVES:
            return Type(primitive=text, array=array, description=description)
        text = text if "." in text else f"{module}.{text}"
        if text in SCALARS:
            name, schema = SCALARS[text]
            self.by_name.setdefault(name, Definition(name, dict(schema)))
            return Type(definition=name, array=array, description=description)
        owner, _, class_name = text.rpartition(".")
        return Type(definition=self._struct(owner, class_name), array=array, description=description)

    def reachable(self, roots: list[str]) -> list[str]:
        found: dict[str, None] = {}
        stack = list(roots)
        while stack:
            name = stack.pop()
            if name in found:
                continue
            found[name] = None
            stack += [t.definition for t in self.by_name[name].properties.values() if t.definition]
        return sorted(found)


def _module(group: str, version: str) -> str:
    """lightkube's module of a group-version: "" v1 -> core_v1, coordination.k8s.io v1 -> coordination_v1."""
    return f"{group.split('.', maxsplit=1)[0] or 'core'}_{version}"


def _package(module: str) -> str:
    """The Go package a lightkube module's types come from, as the API server names schemas."""
    if module == "meta_v1":
        return META
    group, _, version = module.rpartition("_")
    return f"io.k8s.api.{group}.{version}"


def _docstring(text: str) -> tuple[str, dict[str, str]]:
    """A class's description and its fields' (lightkube writes "* **name** ``type`` - description" per field)."""
    summary, _, parameters = text.partition("**parameters**")
    starts = list(FIELD.finditer(parameters))
    fields = {
        match[1]: _words(parameters[match.end() : following.start() if following else len(parameters)])
        for match, following in zip(starts, [*starts[1:], None], strict=False)
    }
    return _words(summary), fields


def _words(text: str) -> str:
    return " ".join(text.split())


@functools.cache
def definitions() -> Definitions:
    found = Definitions()
    for resource in RESOURCES:
        found.of_kind(resource.group, resource.version, resource.kind)
        for sub in resource.subresources:
            found.of_kind(sub.group or resource.group, sub.version or resource.version, sub.kind)
    for kind in ("Status", "DeleteOptions", "WatchEvent"):  # answers and bodies of the operations
        found.of_kind("meta", "v1", kind)
    return found


# --- the documents ----------------------------------------------------------------------------------------------


def _schema(definition: Definition, ref: str, *, v3: bool) -> Obj:
    schema = dict(definition.schema)
    if definition.properties:
        schema["properties"] = {name: _property(kind, ref, v3=v3) for name, kind in definition.properties.items()}
    if definition.required:
        schema["required"] = sorted(definition.required)
    gvks = _group_version_kinds(definition.name)
    if gvks:
        schema["x-kubernetes-group-version-kind"] = gvks
    return schema


def _property(kind: Type, ref: str, *, v3: bool) -> Obj:
    if kind.primitive:
        inner: Obj = dict(PRIMITIVES[kind.primitive])
    elif v3:  # v3 wraps a reference so that it can carry a description (as the API server writes it)
        inner = {"allOf": [{"$ref": ref + kind.definition}], "default": {}}
    else:
        inner = {"$ref": ref + kind.definition}
    schema = {"type": "array", "items": inner} if kind.array else inner
    if kind.description:
        schema = {**schema, "description": kind.description}
    return schema


def _group_version_kinds(name: str) -> list[Obj]:
    return [
        {"group": r.group, "version": r.version, "kind": r.kind}
        for r in RESOURCES
        if definitions().of_kind(r.group, r.version, r.kind) == name
    ]


def _paths(resource: Resource, ref: str, *, v3: bool) -> Obj:
    """The operations on a resource's collection and objects (and their status), each tagged with its kind as the
    API server tags them; PATCH declares the patch types and the fieldValidation parameter."""
    schema = definitions().of_kind(resource.group, resource.version, resource.kind)
    gvk = {"group": resource.group, "version": resource.version, "kind": resource.kind}
    base = "/" + resource.path_prefix + ("/namespaces/{namespace}" if resource.namespaced else "") + "/"
    collection, item = base + resource.plural, base + resource.plural + "/{name}"
    paths: Obj = {collection: {}, item: {}}
    verbs = set(resource.verbs)
    operations = [
        (collection, "get", "list", "list" in verbs),
        (collection, "post", "post", "create" in verbs),
        (item, "get", "get", "get" in verbs),
        (item, "put", "put", "update" in verbs),
        (item, "patch", "patch", "patch" in verbs),
        (item, "delete", "delete", "delete" in verbs),
    ]
    for sub in resource.subresources:
        if sub.name == "status":
            operations += [(item + "/status", verb, verb, True) for verb in ("get", "put", "patch")]
            paths[item + "/status"] = {}
    for path, method, action, served in operations:
        if served:
            paths[path][method] = _operation(method, action, gvk, ref + schema, v3=v3)
    return {path: ops for path, ops in paths.items() if ops}


def _operation(method: str, action: str, gvk: Obj, ref: str, *, v3: bool) -> Obj:
    operation: Obj = {"x-kubernetes-action": action, "x-kubernetes-group-version-kind": gvk}
    if method in {"post", "put", "patch"}:
        operation["parameters"] = [
            {"name": name, "in": "query", "schema" if v3 else "type": {"type": "string"} if v3 else "string"}
            for name in ("dryRun", "fieldManager", "fieldValidation")
        ]
        body_types = PATCH_TYPES if method == "patch" else ("application/json", "application/yaml")
        body_schema = {"type": "object"} if method == "patch" else {"$ref": ref}
        if v3:
            operation["requestBody"] = {"content": {t: {"schema": body_schema} for t in body_types}, "required": True}
        else:
            operation["consumes"] = list(body_types)
            operation["parameters"].append({"name": "body", "in": "body", "required": True, "schema": body_schema})
    code = "201" if method == "post" else "200"
    answer: Obj = {"description": "OK"}
    if v3:
        answer["content"] = {"application/json": {"schema": {"$ref": ref}}}
    else:
        answer["schema"] = {"$ref": ref}
    operation["responses"] = {code: answer}
    return operation


def _info() -> Obj:
    return {"title": "Kubernetes", "version": "v1.34.0"}


@functools.cache
def v3_document(group: str, version: str) -> Obj | None:
    """The v3 document of one group-version ("" for core), or None when it is not served."""
    served = [r for r in RESOURCES if r.group == group and r.version == version]
    if not served:
        return None
    ref = "#/components/schemas/"
    roots = [definitions().of_kind(r.group, r.version, r.kind) for r in served]
    roots += [
        definitions().of_kind(sub.group or r.group, sub.version or r.version, sub.kind)
        for r in served
        for sub in r.subresources
    ]
    roots += [f"{META}.Status", f"{META}.DeleteOptions"]
    paths: Obj = {}
    for resource in served:
        paths.update(_paths(resource, ref, v3=True))
    schemas = {name: _schema(definitions().by_name[name], ref, v3=True) for name in definitions().reachable(roots)}
    return {"openapi": "3.0.0", "info": _info(), "paths": paths, "components": {"schemas": schemas}}


def v3_path(group: str, version: str) -> str:
    return f"apis/{group}/{version}" if group else f"api/{version}"


@functools.cache
def v3_index() -> Obj:
    """/openapi/v3: each group-version's document, at a URL carrying its hash (clients cache by it)."""
    paths = {}
    for group, version in dict.fromkeys((r.group, r.version) for r in RESOURCES):
        document = v3_document(group, version)
        digest = hashlib.sha512(json.dumps(document, sort_keys=True).encode()).hexdigest()[:64].upper()
        paths[v3_path(group, version)] = {"serverRelativeURL": f"{V3_PREFIX}{v3_path(group, version)}?hash={digest}"}
    return {"paths": paths}


def v3_for(path: str) -> Obj | None:
    """The v3 document at /openapi/v3/<path>, or None."""
    match = re.fullmatch(r"api/(?P<core>[^/]+)|apis/(?P<group>[^/]+)/(?P<version>[^/]+)", path)
    if match is None:
        return None
    return v3_document("", match["core"]) if match["core"] else v3_document(match["group"], match["version"])


@functools.cache
def v2_document() -> Obj:
    """/openapi/v2 (Swagger 2.0) for every kind served, as JSON."""
    ref = "#/definitions/"
    paths: Obj = {}
    for resource in RESOURCES:
        paths.update(_paths(resource, ref, v3=False))
    roots = list(definitions().by_name)
    schemas = {name: _schema(definitions().by_name[name], ref, v3=False) for name in definitions().reachable(roots)}
    return {"swagger": "2.0", "info": _info(), "paths": paths, "definitions": schemas}


# --- field validation -------------------------------------------------------------------------------------------


def unknown_fields(resource: Resource, obj: Obj) -> list[str]:
    """The fields of ``obj`` its kind's schema does not declare, as the API server's strict decoding names them
    ("spec.template.spec.containers[0].imagee"); they are removed from ``obj``, as decoding drops them."""
    found: list[str] = []
    name = definitions().of_kind(resource.group, resource.version, resource.kind)
    _walk(definitions().by_name[name], obj, "", found)
    return found


def _walk(definition: Definition, value: Any, path: str, found: list[str]) -> None:
    if not isinstance(value, dict) or not definition.properties:
        return
    for key in list(value):
        kind = definition.properties.get(key)
        where = f"{path}.{key}" if path else key
        if kind is None:
            found.append(where)
            del value[key]
        elif kind.definition:
            inner = definitions().by_name[kind.definition]
            if kind.array and isinstance(value[key], list):
                for index, item in enumerate(value[key]):
                    _walk(inner, item, f"{where}[{index}]", found)
            else:
                _walk(inner, value[key], where, found)


@functools.cache
def v2_protobuf() -> bytes:
    return protobuf.openapi_v2(v2_document())
