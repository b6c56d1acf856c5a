"""The simulator's HTTP face: the Kubernetes API's paths, verbs and JSON (lists, Status errors, the eviction
subresource), on a threaded server bound to 127.0.0.1."""

from __future__ import annotations

import dataclasses
import json
import re
import select
import socket
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import yaml

from provision.simulator import openapi, patches, protobuf, resources, reviews, tables
from provision.simulator.resources import BY_PATH, Resource
from provision.simulator.world import KINDS, Admit, ApiError, ChangeType, WatchFilter, World

# Watches end after this long unless the client asks for less (the real server picks 30 to 60 minutes).
WATCH_SECONDS = 1800.0
# How often a quiet watch checks that its client is still there and the server still running.
WATCH_POLL_SECONDS = 1.0
VERSION = {"major": "1", "minor": "34", "gitVersion": "v1.34.0-cluster-simulator", "platform": "linux/amd64"}
GROUP_VERSION = re.compile(r"^/(?:api/(?P<core>[^/]+)|apis/(?P<group>[^/]+)(?:/(?P<version>[^/]+))?)$")
# The media types a body may come in: JSON (and YAML) for objects, the patch types for a PATCH. Protobuf, which the
# real server also reads, is not spoken here: it gets 415 as any other unknown type does.
OBJECT_TYPES = ("application/json", "application/yaml")
PATCH_TYPES = (
    "application/json-patch+json",
    "application/merge-patch+json",
    "application/strategic-merge-patch+json",
    "application/apply-patch+yaml",
)
ROUTE = re.compile(
    r"^/(?P<prefix>api/[^/]+|apis/[^/]+/[^/]+)"
    r"(?:/namespaces/(?P<namespace>[^/]+)(?=/))?"
    r"/(?P<plural>[a-z]+)(?:/(?P<name>[^/]+))?(?:/(?P<sub>[a-z]+))?$"
)


@dataclass(frozen=True)
class Target:
    """What a request's path names: a resource, and maybe a namespace, an object and a subresource of it."""

    resource: Resource
    namespace: str | None
    name: str | None
    sub: str | None


class KubeApiServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, world: World, port: int = 0) -> None:
        super().__init__(("127.0.0.1", port), _Handler)
        self.world = world
        self.stopping = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> KubeApiServer:
        self._thread = threading.Thread(
            target=self.serve_forever, kwargs={"poll_interval": 0.05}, name="kube-api-simulator", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self.stopping.set()
        self.world.wake_watchers()  # open watches end their streams now, not at their next poll
        self.shutdown()
        self.server_close()
        if self._thread is not None:
            self._thread.join()


class _Handler(BaseHTTPRequestHandler):
    server: KubeApiServer
    protocol_version = "HTTP/1.1"
    # Headers and body go out in two writes; without TCP_NODELAY each keep-alive request waits ~40 ms for a
    # delayed ACK.
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: Any) -> None:
        return  # quiet: the sandbox has its own log

    def do_GET(self) -> None:
        self._serve("GET")

    def do_POST(self) -> None:
        self._serve("POST")

    def do_PUT(self) -> None:
        self._serve("PUT")

    def do_PATCH(self) -> None:
        self._serve("PATCH")

    def do_DELETE(self) -> None:
        self._serve("DELETE")

    def _serve(self, verb: str) -> None:
        url = urlsplit(self.path)
        query = {key: values[-1] for key, values in parse_qs(url.query).items()}
        self._warnings: list[str] = []  # Warning headers of the answer (unknown fields under fieldValidation=Warn)
        # The body is read before anything can fail, so an error answer leaves the keep-alive connection clean.
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        content_type = "application/json"
        try:
            discovered = self._discovery(verb, url.path)
            if discovered is not None:
                content_type, body = discovered
                status = 200
            else:
                target = _resolve(url.path)
                watch = verb == "GET" and target.name is None and query.get("watch") in {"1", "true"}
                _check_verb(verb, target, watch=watch)
                if query.get("dryRun") and verb != "GET":  # refused rather than made for real
                    raise ApiError(400, "BadRequest", "the simulator does not support dry run (dryRun)")
                if watch:
                    self._watch(target, query)
                    return
                status, body = self._route(verb, target, query, self._body(verb, raw, target))
                body = self._as_table(target, query, body) if verb == "GET" else body
        except ApiError as error:
            status, body = error.code, _status_object(error)
        except (ValueError, KeyError, TypeError, IndexError) as error:
            status, body = 400, _status_object(ApiError(400, "BadRequest", f"bad request: {error}"))
        payload = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        for warning in self._warnings:
            self.send_header("Warning", f"299 - {json.dumps(warning)}")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def _body(self, verb: str, raw: bytes, target: Target) -> Any:
        """The request's body, read as its Content-Type says (JSON when it says nothing, as the API server assumes);
        415 for a type the server does not read, before any attempt to parse it."""
        if not raw:
            return {}
        media_type = (self.headers.get("Content-Type") or "application/json").split(";")[0].strip().lower()
        accepted = PATCH_TYPES if verb == "PATCH" else OBJECT_TYPES
        if media_type == protobuf.MEDIA_TYPE and verb != "PATCH":
            try:
                return protobuf.decode(raw, target.resource.kind)
            except protobuf.Unreadable:
                pass  # a kind whose protobuf the simulator does not read: refused below
            except UnicodeDecodeError as error:
                raise ApiError(400, "BadRequest", f"unable to decode the protobuf body: {error}") from error
        if media_type not in accepted:
            raise ApiError(
                415,
                "UnsupportedMediaType",
                "the body of the request was in an unknown format - accepted media types include: "
                + ", ".join(accepted),
            )
        if media_type == "application/apply-patch+yaml":
            raise ApiError(415, "UnsupportedMediaType", "the simulator does not support server-side apply")
        try:
            return yaml.safe_load(raw) if media_type == "application/yaml" else json.loads(raw)
        except (ValueError, yaml.YAMLError) as error:
            raise ApiError(400, "BadRequest", f"couldn't get version/kind; json parse error: {error}") from error

    def _strategic(self) -> bool:
        return (self.headers.get("Content-Type") or "").startswith("application/strategic-merge-patch+json")

    def _discovery(self, verb: str, path: str) -> tuple[str, Any] | None:
        """The content type and body of a discovery or server document, or None when the path is not one."""
        if path in {"/healthz", "/readyz", "/livez"}:
            return "text/plain", "ok"
        if path == "/simulator/counters":  # not Kubernetes: what the demo reports (evictions, refusals, violations)
            return "application/json", dataclasses.asdict(self.server.world.counters)
        if path == "/version":
            return "application/json", VERSION
        if path in {"/openapi/v2", "/openapi/v3"} or path.startswith(openapi.V3_PREFIX):
            return self._openapi(verb, path)
        if path not in {"/api", "/apis"} and not GROUP_VERSION.match(path):
            return None
        return self._api_discovery(verb, path)

    def _openapi(self, verb: str, path: str) -> tuple[str, Any]:
        """The OpenAPI documents: as JSON, and v2 also in protobuf (what kubectl up to 1.28 asks for); 406 for a
        client that accepts neither."""
        if verb != "GET":
            raise ApiError(405, "MethodNotAllowed", f"{verb} is not supported on {path}")
        accepted = {media_type.split(";")[0].strip() for media_type in (self.headers.get("Accept") or "*/*").split(",")}
        if path == "/openapi/v2" and accepted & set(protobuf.OPENAPI_V2_ASKED):
            return protobuf.OPENAPI_V2, openapi.v2_protobuf()
        if not accepted & {"application/json", "*/*", "application/*"}:
            raise ApiError(
                406,
                "NotAcceptable",
                f"only the following media types are accepted: application/json, {protobuf.OPENAPI_V2}",
            )
        if path == "/openapi/v2":
            return "application/json", openapi.v2_document()
        if path == "/openapi/v3":
            return "application/json", openapi.v3_index()
        document = openapi.v3_for(path.removeprefix(openapi.V3_PREFIX))
        if document is None:
            raise ApiError(404, "NotFound", f"the server could not find the requested resource ({path})")
        return "application/json", document

    def _admission(self, target: Target, query: dict[str, str]) -> Admit:
        """Field validation as the request asks (fieldValidation Strict, Warn — the default — or Ignore): unknown
        fields are dropped, reported in Warning headers, or refuse the request with 400."""
        directive = query.get("fieldValidation") or "Warn"
        if directive not in {"Strict", "Warn", "Ignore"}:
            raise ApiError(400, "BadRequest", f'fieldValidation "{directive}" is not one of Ignore, Warn, Strict')
        kind = target.resource.kind

        def admit(obj: Any) -> None:
            unknown = openapi.unknown_fields(target.resource, obj) if isinstance(obj, dict) else []
            if unknown and directive == "Strict":
                fields = ", ".join(f'unknown field "{name}"' for name in unknown)
                version = KINDS[kind][0].rpartition("/")[2]
                raise ApiError(
                    400,
                    "BadRequest",
                    f'{kind} in version "{version}" cannot be handled as a {kind}: strict decoding error: {fields}',
                )
            if directive == "Warn":
                self._warnings += [f'unknown field "{name}"' for name in unknown]

        return admit

    def _api_discovery(self, verb: str, path: str) -> tuple[str, Any]:
        if verb != "GET":
            raise ApiError(405, "MethodNotAllowed", f"{verb} is not supported on {path}")
        if path in {"/api", "/apis"}:
            if resources.wants_aggregated(self.headers.get("Accept", "")):
                return resources.AGGREGATED_V2, resources.aggregated(core=path == "/api")
            if path == "/api":
                host, port = self.server.server_address[:2]
                return "application/json", resources.api_versions(f"{host!s}:{port}")
            return "application/json", resources.api_group_list()
        match = GROUP_VERSION.match(path)
        assert match is not None
        if match["core"]:
            found = resources.api_resource_list("", match["core"])
        elif match["version"]:
            found = resources.api_resource_list(match["group"], match["version"])
        else:
            found = resources.api_group(match["group"]) if match["group"] in resources.GROUPS else None
        if found is None:
            raise ApiError(404, "NotFound", f"the server could not find the requested resource ({path})")
        return "application/json", found

    def _route(self, verb: str, target: Target, query: dict[str, str], body: Any) -> tuple[int, Any]:
        kind, namespace, name = target.resource.kind, target.namespace, target.name
        if not target.resource.stored:  # a review: answered, not kept
            try:
                return 201, reviews.review(kind, body)
            except reviews.Invalid as error:
                raise ApiError(422, "Invalid", str(error)) from error
        if target.sub == "eviction":
            if verb != "POST" or not name:
                raise ApiError(405, "MethodNotAllowed", "only POST to pods/<name>/eviction")
            named = (body.get("metadata") or {}).get("name") if isinstance(body, dict) else None
            if named and named != name:
                raise ApiError(400, "BadRequest", "name in URL does not match name in Eviction object")
            self.server.world.evict(namespace or "", name)
            return 201, {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}
        if target.sub == "scale" and name:
            return 200, self._scale(verb, kind, namespace or "", name, body)
        admit = self._admission(target, query)
        if name:
            grace = query.get("gracePeriodSeconds") or (
                body.get("gracePeriodSeconds") if isinstance(body, dict) else None
            )
            return self._one(
                verb,
                kind,
                namespace or "",
                name,
                body,
                status=target.sub == "status",
                grace=None if grace is None else int(grace),
                admit=admit,
            )
        return self._collection(verb, kind, namespace, query, body, admit)

    def _collection(
        self, verb: str, kind: str, namespace: str | None, query: dict[str, str], body: Any, admit: Admit
    ) -> tuple[int, Any]:
        world = self.server.world
        if verb == "POST":
            return 201, world.create(kind, namespace or "", body, admit=admit)
        selected = WatchFilter(kind, namespace, query.get("labelSelector", ""), query.get("fieldSelector", ""))
        items, version = world.listing(selected)
        for item in items:  # items of a list carry no kind/apiVersion in the real API
            item.pop("kind", None)
            item.pop("apiVersion", None)
        list_kind = {"kind": f"{kind}List", "apiVersion": KINDS[kind][0]}
        return 200, {**list_kind, "metadata": {"resourceVersion": str(version)}, "items": items}

    def _one(
        self,
        verb: str,
        kind: str,
        namespace: str,
        name: str,
        body: Any,
        *,
        status: bool,
        grace: int | None,
        admit: Admit,
    ) -> tuple[int, Any]:
        world = self.server.world
        if verb == "GET":
            return 200, world.get(kind, namespace, name)
        if verb == "PUT":
            return 200, world.replace(kind, namespace, name, body, status=status, admit=admit)
        if verb == "DELETE" and not status:
            return 200, world.delete(kind, namespace, name, grace_seconds=grace)
        if verb == "PATCH":
            strategic = self._strategic()
            return 200, world.patch(kind, namespace, name, body, status=status, strategic=strategic, admit=admit)
        raise ApiError(405, "MethodNotAllowed", f"{verb} is not supported here")

    def _scale(self, verb: str, kind: str, namespace: str, name: str, body: Any) -> dict[str, Any]:
        """The scale subresource: the workload's replicas as an autoscaling/v1 Scale; PUT and PATCH change only
        spec.replicas, as on the real server."""
        world = self.server.world
        if verb not in {"GET", "PUT", "PATCH"}:
            raise ApiError(405, "MethodNotAllowed", f"{verb} is not supported on the scale subresource")
        if verb != "GET":
            current = _scale_of(world.get(kind, namespace, name))
            try:
                wanted = body if verb == "PUT" else patches.apply(current, body, strategic=self._strategic())
            except patches.PatchError as error:
                raise ApiError(422, "Invalid", str(error)) from error
            sent = (wanted.get("metadata") or {}).get("resourceVersion")
            if verb == "PUT" and sent and sent != current["metadata"]["resourceVersion"]:
                raise ApiError(
                    409,
                    "Conflict",
                    f'Operation cannot be fulfilled on {kind.lower()}s.apps "{name}": '
                    "the object has been modified; please apply your changes to the latest version and try again",
                )
            replicas = (wanted.get("spec") or {}).get("replicas")
            if not isinstance(replicas, int) or replicas < 0:
                raise ApiError(422, "Invalid", f'Scale.autoscaling "{name}" is invalid: spec.replicas: Invalid value')
            world.patch(kind, namespace, name, {"spec": {"replicas": replicas}})
        return _scale_of(world.get(kind, namespace, name))

    def _as_table(self, target: Target, query: dict[str, str], body: Any) -> Any:
        """The answer to a GET, printed as a Table when the client asks for one (kubectl get does)."""
        version = tables.wants_table(self.headers.get("Accept", ""))
        kind = target.resource.kind
        if version is None or target.sub is not None or kind not in tables.PRINTERS:
            return body
        objects = body["items"] if target.name is None else [body]
        resource_version = body["metadata"].get("resourceVersion", "")
        return self._table(kind, objects, version, resource_version, query, headers=True)

    def _table(
        self, kind: str, objects: list[Any], version: str, rv: str, query: dict[str, str], *, headers: bool
    ) -> Any:
        for obj in objects:  # a row's object is whole, as a GET of it would answer
            obj["kind"], obj["apiVersion"] = kind, KINDS[kind][0]
        now = self.server.world.now()
        include = query.get("includeObject", "Metadata")
        return tables.table(kind, objects, now, version=version, resource_version=rv, include=include, headers=headers)

    def _watch(self, target: Target, query: dict[str, str]) -> None:
        """A watch: the JSON lines of {type, object}, streamed in chunks as the changes happen. Without a
        resourceVersion (or with "0") it starts with every selected object as ADDED; with one it replays what
        happened after it (an ERROR event with 410 Expired when that is too old to replay)."""
        world, kind = self.server.world, target.resource.kind
        selected = WatchFilter(kind, target.namespace, query.get("labelSelector", ""), query.get("fieldSelector", ""))
        table_version = tables.wants_table(self.headers.get("Accept", ""))
        since = query.get("resourceVersion", "")
        expired: ApiError | None = None
        events: list[tuple[ChangeType, Any]] = []
        # A streaming list (client-go's WatchList, kubectl 1.35+): the current objects, then a bookmark that says
        # they are all there, then the changes.
        initial_events = query.get("sendInitialEvents") == "true"
        if since in {"", "0"} or initial_events:
            items, after = world.listing(selected)
            events = [(ChangeType.ADDED, item) for item in items]
        else:
            after = int(since)
            try:
                events, after = world.changes(selected, after, timeout=0)
            except ApiError as error:
                if error.code != 410:
                    raise
                expired = error
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        deadline = time.monotonic() + float(query.get("timeoutSeconds") or WATCH_SECONDS)
        first = True
        try:
            if expired is not None:
                self._chunk({"type": "ERROR", "object": _status_object(expired)})
                events = []
                deadline = 0.0
            while True:
                for change_type, obj in events:
                    shown = obj
                    if table_version is not None and kind in tables.PRINTERS:
                        version = obj["metadata"].get("resourceVersion", "")
                        shown = self._table(kind, [obj], table_version, version, query, headers=first)
                        first = False
                    self._chunk({"type": change_type.value, "object": shown})
                if initial_events:
                    self._chunk({"type": "BOOKMARK", "object": _initial_events_end(kind, after)})
                    initial_events = False
                left = deadline - time.monotonic()
                if left <= 0 or self.server.stopping.is_set() or (not events and self._client_gone()):
                    break
                events, after = world.changes(selected, after, timeout=min(left, WATCH_POLL_SECONDS))
            self.wfile.write(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True  # the client went away: nothing more to say

    def _chunk(self, event: dict[str, Any]) -> None:
        data = json.dumps(event).encode() + b"\n"
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()

    def _client_gone(self) -> bool:
        """Whether the client closed the connection: it sends nothing during a watch, so readable means EOF."""
        readable, _, _ = select.select([self.connection], [], [], 0)
        return bool(readable) and self.connection.recv(1, socket.MSG_PEEK) == b""


def _scale_of(workload: dict[str, Any]) -> dict[str, Any]:
    meta = workload["metadata"]
    selector = tables.format_selector(workload["spec"].get("selector"))
    return {
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": {key: meta[key] for key in ("name", "namespace", "uid", "resourceVersion", "creationTimestamp")},
        "spec": {"replicas": workload["spec"].get("replicas", 1)},
        "status": {
            "replicas": workload["status"].get("replicas", 0),
            "selector": "" if selector == tables.NONE else selector,
        },
    }


def _initial_events_end(kind: str, version: int) -> dict[str, Any]:
    """The bookmark that ends a streaming list's initial events: only the kind and the resourceVersion, and the
    annotation clients wait for."""
    return {
        "kind": kind,
        "apiVersion": KINDS[kind][0],
        "metadata": {"resourceVersion": str(version), "annotations": {"k8s.io/initial-events-end": "true"}},
    }


def _check_verb(verb: str, target: Target, *, watch: bool) -> None:
    """405 for what the resource does not serve (a GET of a review, a DELETE of a collection), as the API server
    answers a verb it has no handler for."""
    if target.sub is not None:
        return  # subresources check their own verbs
    if verb == "GET":
        wanted = "watch" if watch else ("get" if target.name else "list")
    elif verb == "POST":
        wanted = "create" if target.name is None else ""
    else:
        wanted = {"PUT": "update", "PATCH": "patch", "DELETE": "delete"}[verb] if target.name else ""
    if wanted not in target.resource.verbs:
        raise ApiError(405, "MethodNotAllowed", "the server does not allow this method on the requested resource")


def _resolve(path: str) -> Target:
    """The resource, namespace, name and subresource of an API path; 404 for anything the simulator does not
    serve (kinds, subresources, a namespace on a cluster-scoped kind)."""
    match = ROUTE.match(path)
    resource = BY_PATH.get((match["prefix"], match["plural"])) if match else None
    if match is None or resource is None:
        raise ApiError(404, "NotFound", f"the server could not find the requested resource ({path})")
    if not resource.namespaced and match["namespace"]:
        raise ApiError(404, "NotFound", f"{resource.kind} is not namespaced")
    if match["sub"] and not resource.serves(match["sub"]):
        raise ApiError(404, "NotFound", f"the server could not find the requested resource ({path})")
    return Target(resource, match["namespace"], match["name"], match["sub"])


def _status_object(error: ApiError) -> dict[str, Any]:
    body: dict[str, Any] = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": error.message,
        "reason": error.reason,
        "code": error.code,
    }
    if error.causes:
        body["details"] = {"causes": error.causes}
    return body


def kubeconfig_for(url: str, *, name: str = "cluster-sandbox") -> dict[str, Any]:
    """A kubeconfig for the simulator: plain HTTP on loopback, a user without credentials (none are checked)."""
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": name, "cluster": {"server": url}}],
        "users": [{"name": name, "user": {}}],
        "contexts": [{"name": name, "context": {"cluster": name, "user": name, "namespace": "default"}}],
        "current-context": name,
    }
