"""The simulator's HTTP face: the Kubernetes API's paths, verbs and JSON (lists, Status errors, the eviction
subresource), on a threaded server bound to 127.0.0.1."""

from __future__ import annotations

import dataclasses
import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from provision.simulator.world import KINDS, ApiError, World

PLURALS = {
    "nodes": "Node",
    "namespaces": "Namespace",
    "pods": "Pod",
    "deployments": "Deployment",
    "replicasets": "ReplicaSet",
    "daemonsets": "DaemonSet",
    "statefulsets": "StatefulSet",
    "poddisruptionbudgets": "PodDisruptionBudget",
    "events": "Event",
}
GROUPS = {
    "Node": "api/v1",
    "Namespace": "api/v1",
    "Pod": "api/v1",
    "Event": "api/v1",
    "PodDisruptionBudget": "apis/policy/v1",
}
ROUTE = re.compile(
    r"^/(?P<group>api/v1|apis/apps/v1|apis/policy/v1)"
    r"(?:/namespaces/(?P<namespace>[^/]+)(?=/))?"
    r"/(?P<plural>[a-z]+)(?:/(?P<name>[^/]+))?(?:/(?P<sub>eviction|status))?$"
)


def _group_of(kind: str) -> str:
    return GROUPS.get(kind, "apis/apps/v1")


class KubeApiServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, world: World, port: int = 0) -> None:
        super().__init__(("127.0.0.1", port), _Handler)
        self.world = world
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
        # The body is read before anything can fail, so an error answer leaves the keep-alive connection clean.
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        try:
            status, body = self._route(verb, url.path, query, json.loads(raw) if raw else {})
        except ApiError as error:
            status, body = error.code, _status_object(error)
        except (ValueError, KeyError, TypeError, IndexError) as error:
            status, body = 400, _status_object(ApiError(400, "BadRequest", f"bad request: {error}"))
        payload = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def _route(self, verb: str, path: str, query: dict[str, str], body: Any) -> tuple[int, Any]:
        if path in {"/healthz", "/readyz", "/livez"}:
            return 200, "ok"
        if path == "/simulator/counters":  # not Kubernetes: what the demo reports (evictions, refusals, violations)
            return 200, dataclasses.asdict(self.server.world.counters)
        if path == "/version":
            return 200, {"major": "1", "minor": "34", "gitVersion": "v1.34.0-cluster-simulator", "platform": "linux"}
        kind, namespace, name, sub = _resolve(path)
        if sub == "eviction":
            if verb != "POST" or kind != "Pod" or not name:
                raise ApiError(405, "MethodNotAllowed", "only POST to pods/<name>/eviction")
            named = (body.get("metadata") or {}).get("name") if isinstance(body, dict) else None
            if named and named != name:
                raise ApiError(400, "BadRequest", "name in URL does not match name in Eviction object")
            self.server.world.evict(namespace or "", name)
            return 201, {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}
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
                status=sub == "status",
                grace=None if grace is None else int(grace),
            )
        return self._collection(verb, kind, namespace, query, body)

    def _collection(
        self, verb: str, kind: str, namespace: str | None, query: dict[str, str], body: Any
    ) -> tuple[int, Any]:
        world = self.server.world
        if verb == "POST":
            return 201, world.create(kind, namespace or "", body)
        if verb != "GET":
            raise ApiError(405, "MethodNotAllowed", f"{verb} is not supported on a collection")
        if query.get("watch") in {"1", "true"}:
            raise ApiError(405, "MethodNotAllowed", "watch is not supported by the simulator; poll instead")
        labels, fields = query.get("labelSelector", ""), query.get("fieldSelector", "")
        items = world.select(kind, namespace, labels=labels, fields=fields)
        for item in items:  # items of a list carry no kind/apiVersion in the real API
            item.pop("kind", None)
            item.pop("apiVersion", None)
        list_kind = {"kind": f"{kind}List", "apiVersion": KINDS[kind][0]}
        return 200, {**list_kind, "metadata": {"resourceVersion": "1"}, "items": items}

    def _one(
        self, verb: str, kind: str, namespace: str, name: str, body: Any, *, status: bool, grace: int | None
    ) -> tuple[int, Any]:
        world = self.server.world
        if verb == "GET":
            return 200, world.get(kind, namespace, name)
        if verb == "PUT":
            return 200, world.replace(kind, namespace, name, body, status=status)
        if verb == "DELETE" and not status:
            return 200, world.delete(kind, namespace, name, grace_seconds=grace)
        if verb == "PATCH":
            if "apply-patch" in self.headers.get("Content-Type", ""):
                raise ApiError(415, "UnsupportedMediaType", "the simulator does not support server-side apply")
            return 200, world.patch(kind, namespace, name, body, status=status)
        raise ApiError(405, "MethodNotAllowed", f"{verb} is not supported here")


def _resolve(path: str) -> tuple[str, str | None, str | None, str | None]:
    """kind, namespace, name and subresource of an API path; 404 for anything the simulator does not serve."""
    match = ROUTE.match(path)
    kind = PLURALS.get(match["plural"]) if match else None
    if match is None or kind is None or match["group"] != _group_of(kind):
        raise ApiError(404, "NotFound", f"the server could not find the requested resource ({path})")
    if not KINDS[kind][1] and match["namespace"]:
        raise ApiError(404, "NotFound", f"{kind} is not namespaced")
    return kind, match["namespace"], match["name"], match["sub"]


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
