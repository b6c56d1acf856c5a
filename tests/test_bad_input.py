"""Bad input of every kind, table-driven: configurations, flags, the files the tool reads and the environment.

Each case runs `cluster` in-process (the real error edge, ``provision.cli.main``) in an empty working folder and
asserts what the user must see: exit code 2, nothing on stdout, exactly one ``error:`` line on stderr that names
the file, key or option at fault, no traceback, and nothing left behind in the working folder (so no ./.cluster/
and no ./diagnostics/ either). The inputs live in a folder of their own.

Every case is refused before any AWS call: AWS_ENDPOINT_URL points at a closed local port, so a case that slipped
through would end with exit 5 (AWS unreachable), never reach the internet, and fail here.

tests/test_config_errors.py holds the configuration's syntax, type and character-set cases and the property tests;
the cases here are the classes of issue 15 (open networks, impersonating tags, files, numbers and paths, kubelet
labels and ports) and the command line's existing refusals, none repeated from there.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from provision.config.loader import CONFIG_LIMIT
from provision.remote.connect import KNOWN_HOSTS_LIMIT
from provision.verbs.options import TOKEN_FILE_LIMIT
from tests.conftest import EXAMPLE, Outcome
from tests.test_config_errors import Edit, eks_example, example

Run = Callable[..., Outcome]

DEAD_ENDPOINT = "http://127.0.0.1:9"  # the discard port: nothing listens, a connection is refused at once


# --- the inputs a case is made of ------------------------------------------------------------------------------------

Maker = Callable[[Path], None]  # makes the special file at the path it is given


def fifo(path: Path) -> None:
    os.mkfifo(path)


def to_dev_zero(path: Path) -> None:
    path.symlink_to("/dev/zero")


def folder(path: Path) -> None:
    path.mkdir()


def sparse(size: int) -> Maker:
    """A file of ``size`` zero bytes that takes no room on disk."""

    def make(path: Path) -> None:
        with path.open("wb") as stream:
            stream.truncate(size)

    return make


def unix_socket(path: Path) -> None:
    with socket.socket(socket.AF_UNIX) as listening:
        listening.bind(str(path))


@dataclass(frozen=True)
class Bad:
    """One bad input. In ``args``, ``config`` and ``names``, "{config}" and "{file}" stand for the paths of the
    case's configuration file and of its other file (both outside the working folder)."""

    args: tuple[str, ...]
    names: tuple[str, ...]  # what the error line names: the file, key or option, and the problem
    config: bytes | Maker = field(default_factory=lambda: example().data)
    file: bytes | Maker | None = None
    env: dict[str, str] = field(default_factory=dict)


def case(
    *args: str,
    names: str | tuple[str, ...],
    id: str,
    config: bytes | Maker | None = None,
    file: bytes | Maker | None = None,
    env: dict[str, str] | None = None,
) -> object:
    bad = Bad(
        args=args,
        names=(names,) if isinstance(names, str) else names,
        config=example().data if config is None else config,
        file=file,
        env=env or {},
    )
    return pytest.param(bad, id=id)


def render(edit: Edit, key: str, *problem: str, id: str) -> object:
    """`cluster render` of a configuration: the line names the file, then the key."""
    return case("render", "-c", "{config}", config=edit.data, names=(f"{{config}}: {key}", *problem), id=id)


def ssh_file(key: str, verb: tuple[str, ...], tail: tuple[str, ...] = ()) -> Callable[..., object]:
    """A case whose configuration points ``ssh.<key>`` at the case's other file, run by ``verb`` (then ``tail``)."""

    def make(file: bytes | Maker, *problem: str, id: str) -> object:
        config = example().set("ssh", key, '"{file}"').data
        return case(*verb, "-c", "{config}", *tail, config=config, file=file, names=("{file}", *problem), id=id)

    return make


def tags(count: int) -> Edit:
    return example().append("\n".join(f"t{index} = 'x'" for index in range(count)))


def eks_public(cidrs: str) -> Edit:
    return (
        eks_example()
        .set("control_plane", "endpoint_public_access", "true")
        .set("control_plane", "public_access_cidrs", cidrs)
    )


PUBLIC_24S = "[" + ", ".join(f'"45.{index // 256}.{index % 256}.0/24"' for index in range(257)) + "]"
DEEP_ARRAYS = b"name = " + b"[" * 5000 + b"]" * 5000 + b"\n"
DEEP_TABLES = b"name = " + b"{a = " * 3000 + b"1" + b"}" * 3000 + b"\n"
LONG = "x" * 300
ALLOW = "ssh.allow_from"
CP = "control_plane.control_plane_cidrs"
PUBLIC = "control_plane.public_access_cidrs"
OVER = "more than 65,536 public addresses"
KUBELET = "the kubelet refuses"

known_hosts_for_exec = ssh_file("known_hosts", ("exec", "--all"), ("--", "uptime"))
known_hosts_for_ssh = ssh_file("known_hosts", ("ssh", "i-0123456789abcdef0"))
ssh_config_for_diagnose = ssh_file("config_file", ("diagnose", "i-0123456789abcdef0"))
identity_for_ssh = ssh_file("identity_file", ("ssh", "i-0123456789abcdef0"))

CASES = [
    # --- 1. no quasi-open network: at most a /16's worth of public addresses per list, private ranges free ---------
    render(example().set("ssh", "allow_from", '["0.0.0.0/1", "128.0.0.0/1"]'), f"{ALLOW}[0]", OVER, id="ssh-halves"),
    render(example().set("ssh", "allow_from", '["8.0.0.0/15"]'), f"{ALLOW}[0]", OVER, id="ssh-public-15"),
    render(example().set("ssh", "allow_from", '["10.0.0.0/7"]'), f"{ALLOW}[0]", OVER, id="ssh-private-plus-public-8"),
    render(example().set("ssh", "allow_from", '["172.0.0.0/10"]'), f"{ALLOW}[0]", OVER, id="ssh-around-rfc1918"),
    render(
        example().set("ssh", "allow_from", '["8.0.0.0/17", "9.0.0.0/17", "11.0.0.0/24"]'),
        ALLOW,
        "together",
        OVER,
        id="ssh-union-over-a-16",
    ),
    render(
        example().set("ssh", "allow_from", '["10.1.0.0/16", "10.1.0.0/16"]'), ALLOW, "10.1.0.0/16 twice", id="ssh-twice"
    ),
    render(example().set("control_plane", "control_plane_cidrs", '["16.0.0.0/12"]'), f"{CP}[0]", OVER, id="cp-12"),
    render(example().set("control_plane", "control_plane_cidrs", PUBLIC_24S), CP, "together", id="cp-257-slash-24s"),
    render(
        example().set("control_plane", "control_plane_cidrs", '["0.0.0.0/0"]'), f"{CP}[0]", "whole internet", id="cp-0"
    ),
    render(eks_public('["0.0.0.0/1"]'), f"{PUBLIC}[0]", OVER, id="eks-public-half"),
    render(eks_public('["0.0.0.0/0"]'), f"{PUBLIC}[0]", "whole internet", id="eks-public-world"),
    render(eks_public('["52.0.0.0/16", "54.0.0.0/16"]'), PUBLIC, "together", id="eks-public-two-16s"),
    render(eks_public('["52.0.0.0/24", "52.0.0.0/24"]'), PUBLIC, "twice", id="eks-public-twice"),
    # --- 2. no tag can impersonate the tool or break AWS's limits ---------------------------------------------------
    render(example().set("tags", '"cluster:name"', '"prod"'), "tags.cluster:name", "cluster:", id="tag-owner"),
    render(example().set("tags", '"CLUSTER:Name"', '"prod"'), "tags.CLUSTER:Name", "any case", id="tag-owner-upper"),
    render(example().set("tags", '"Cluster:fingerprint"', '"x"'), "tags.Cluster:fingerprint", id="tag-fingerprint"),
    render(example().set("tags", '"cluster:health"', '"Healthy"'), "tags.cluster:health", id="tag-health"),
    render(example().set("tags", '"cluster:"', '"x"'), "tags.cluster:", id="tag-bare-prefix"),
    render(example().set("tags", "Name", '"prod-host"'), "tags.Name", "set by cluster", id="tag-name"),
    render(example().set("tags", "name", '"x"'), "tags.name", "set by cluster", id="tag-name-lower"),
    render(example().set("tags", '"AWS:x"', '"y"'), "tags.AWS:x", "'aws:'", id="tag-aws-upper"),
    render(
        example().set("tags", '"Aws:cloudformation:stack-name"', '"x"'),
        "tags.Aws:cloudformation:stack-name",
        id="tag-aws-mixed",
    ),
    render(example().set("tags", '"' + "k" * 129 + '"', '"x"'), "tags.", "is not a tag key", id="tag-key-129"),
    render(example().set("tags", "team", f'"{LONG}"'), "tags.team", "is not a tag value", id="tag-value-300"),
    render(example().set("tags", '""', '"x"'), "tags", "is not a tag key", id="tag-key-empty"),
    render(example().set("tags", '"équipe"', '"x"'), "tags.équipe", "is not a tag key", id="tag-key-unicode"),
    render(example().set("tags", "team", '"a;b"'), "tags.team", "is not a tag value", id="tag-value-semicolon"),
    render(example().set("tags", '"te*am"', '"x"'), "tags.te*am", "is not a tag key", id="tag-key-star"),
    render(tags(46), "tags", "has 47 tags", "at most 46", id="tags-too-many"),
    # --- 8. labels the kubelet refuses, and ports --------------------------------------------------------------------
    render(
        example().set("hosts", "labels", '{ "node-role.kubernetes.io/worker" = "" }'),
        "hosts.labels.node-role.kubernetes.io/worker",
        KUBELET,
        id="label-node-role",
    ),
    render(
        example().set("hosts", "labels", '{ "kubernetes.io/role" = "w" }'), "hosts.labels", KUBELET, id="label-k8s-io"
    ),
    render(
        example().set("hosts", "labels", '{ "k8s.io/pool" = "a" }'), "hosts.labels.k8s.io/pool", KUBELET, id="label-k8s"
    ),
    render(example().set("hosts", "labels", '{ "x.k8s.io/pool" = "a" }'), "hosts.labels", KUBELET, id="label-sub-k8s"),
    render(
        example().set("hosts", "labels", '{ "node-restriction.kubernetes.io/a" = "b" }'),
        "hosts.labels",
        KUBELET,
        id="label-node-restriction",
    ),
    render(
        example().set("hosts", "labels", '{ "topology.kubernetes.io/rack" = "r1" }'),
        "hosts.labels",
        KUBELET,
        id="label-topology-rack",
    ),
    render(
        example().set("hosts", "labels", '{ "Example.com/pool" = "a" }'),
        "hosts.labels",
        "is not a Kubernetes label key",
        id="label-prefix-upper",
    ),
    render(
        example().set("hosts", "labels", f'{{ pool = "{"a" * 64}" }}'),
        "hosts.labels.pool",
        "is not a Kubernetes label value",
        id="label-value-64",
    ),
    render(
        example().set("control_plane", "api_endpoint", '"10.0.0.10:0"'),
        "control_plane.api_endpoint",
        "port 0",
        id="api-port-0",
    ),
    render(
        example().set("control_plane", "api_endpoint", '"10.0.0.10:65536"'),
        "control_plane.api_endpoint",
        "1 to 65535",
        id="api-port-65536",
    ),
    render(
        example().set("control_plane", "api_endpoint", '"api.example.com:99999"'),
        "control_plane.api_endpoint",
        "port 99999",
        id="api-port-99999",
    ),
    render(example().set("ssh", "bastion", '"bastion:0"'), "ssh.bastion", "port 0", id="bastion-port-0"),
    render(
        example().set("ssh", "bastion", '"ec2-user@bastion:70000"'), "ssh.bastion", "port 70000", id="bastion-70000"
    ),
    render(
        example().set("ssh", "bastion", '"ec2-user@bastion:"'), "ssh.bastion", "is not a bastion", id="bastion-colon"
    ),
    # --- 4. numbers in the configuration: no nan, no infinity, nothing huge -----------------------------------------
    render(example().set("rolling", "bake_seconds", "nan"), "rolling.bake_seconds", "got float nan", id="cfg-nan"),
    render(example().set("rolling", "bake_seconds", "inf"), "rolling.bake_seconds", "got float inf", id="cfg-inf"),
    render(
        example().set("health_agent", "interval_seconds", "-inf"), "health_agent.interval_seconds", id="cfg-neg-inf"
    ),
    render(example().set("ssh", "connect_timeout_seconds", "1e400"), "ssh.connect_timeout_seconds", id="cfg-1e400"),
    render(example().set("hosts", "max_size", "1e3"), "hosts.max_size", "got float", id="cfg-float-for-int"),
    render(
        example().set("hosts", "max_size", "99999999999999999999"),
        "hosts.max_size",
        "less than or equal",
        id="cfg-huge",
    ),
    render(
        example().set("lifecycle", "launch_timeout_seconds", "9223372036854775807"),
        "lifecycle.launch_timeout_seconds",
        id="cfg-int64-max",
    ),
    render(example().set("rolling", "max_surge", "nan"), "rolling.max_surge", id="cfg-surge-nan"),
    render(example().set("rolling", "canary", "0"), "rolling.canary", id="cfg-canary-0"),
    render(example().set("rolling", "bake_seconds", "86401"), "rolling.bake_seconds", id="cfg-bake-over-a-day"),
    # --- 3. the files the tool reads: regular, bounded, UTF-8 text ---------------------------------------------------
    case("render", "-c", "{config}", config=fifo, names=("{config}", "FIFO"), id="config-fifo"),
    case("render", "-c", "{config}", config=to_dev_zero, names=("{config}", "character device"), id="config-dev-zero"),
    case("render", "-c", "{config}", config=folder, names=("--config", "is a directory"), id="config-folder"),
    case("render", "-c", "{config}", config=unix_socket, names=("{config}", "socket"), id="config-socket"),
    case(
        "render",
        "-c",
        "{config}",
        config=sparse(CONFIG_LIMIT + 1),
        names=("{config}", "larger than 1 MiB"),
        id="config-huge",
    ),
    case("render", "-c", "{config}", config=b"name = 'demo'\0\n", names=("{config}", "binary"), id="config-nul"),
    case(
        "render",
        "-c",
        "{config}",
        config="name = 'démo'".encode("utf-16"),
        names=("{config}", "not UTF-8"),
        id="config-utf16",
    ),
    case(
        "render", "-c", "{config}", config=DEEP_ARRAYS, names=("{config}", "nested too deeply"), id="config-deep-arrays"
    ),
    case(
        "render", "-c", "{config}", config=DEEP_TABLES, names=("{config}", "nested too deeply"), id="config-deep-tables"
    ),
    case("render", "-c", "", names=("--config", "is empty"), id="config-empty-name"),
    case(
        "render",
        "-c",
        "{config}",
        config=b"\xef\xbb\xbf" + example().data,
        names=("{config}", "byte order mark"),
        id="config-bom",
    ),
    case(
        "render",
        "-c",
        "{config}",
        config=lambda path: path.symlink_to(path),
        names=("{config}", "symbolic links"),
        id="config-loop",
    ),
    case(
        "render", "--heal-manifest", "-c", "{config}", config=fifo, names=("{config}", "FIFO"), id="heal-manifest-fifo"
    ),
    case(
        "up",
        "-c",
        "{config}",
        "--join-token-file",
        "{file}",
        file=fifo,
        names=("--join-token-file", "{file}", "FIFO"),
        id="token-fifo",
    ),
    case(
        "up",
        "-c",
        "{config}",
        "--join-token-file",
        "{file}",
        file=to_dev_zero,
        names=("--join-token-file", "device"),
        id="token-dev-zero",
    ),
    case(
        "up",
        "-c",
        "{config}",
        "--join-token-file",
        "{file}",
        file=b"abcdef.\xff\xfe",
        names=("--join-token-file", "not UTF-8"),
        id="token-latin1",
    ),
    case(
        "up",
        "-c",
        "{config}",
        "--join-token-file",
        "{file}",
        file=b"abcdef.\0\0\0",
        names=("--join-token-file", "binary"),
        id="token-nul",
    ),
    case(
        "up",
        "-c",
        "{config}",
        "--join-token-file",
        "{file}",
        file=sparse(TOKEN_FILE_LIMIT + 1),
        names=("--join-token-file", "4 KiB"),
        id="token-huge",
    ),
    case(
        "up",
        "-c",
        "{config}",
        "--join-token-file",
        "{file}",
        names=("--join-token-file", "no such file"),
        id="token-missing",
    ),
    case(
        "up", "-c", "{config}", "--join-token-file", "", names=("--join-token-file", "is empty"), id="token-empty-name"
    ),
    case(
        "up",
        "-c",
        "{config}",
        "--join-token-file",
        "{file}",
        file=folder,
        names=("--join-token-file", "is a directory"),
        id="token-folder",
    ),
    known_hosts_for_exec(fifo, "ssh.known_hosts", "FIFO", id="known-hosts-fifo"),
    known_hosts_for_ssh(to_dev_zero, "ssh.known_hosts", "device", id="known-hosts-dev-zero"),
    known_hosts_for_exec(b"host ssh-ed25519 \xff\n", "ssh.known_hosts", "not UTF-8", id="known-hosts-latin1"),
    known_hosts_for_ssh(folder, "ssh.known_hosts", "folder", id="known-hosts-folder"),
    known_hosts_for_exec(sparse(KNOWN_HOSTS_LIMIT + 1), "larger than 16 MiB", id="known-hosts-huge"),
    ssh_config_for_diagnose(fifo, "SSH client configuration", "FIFO", id="ssh-config-fifo"),
    ssh_config_for_diagnose(b"Host *\n  User \0root\n", "binary", id="ssh-config-nul"),
    identity_for_ssh(fifo, "ssh.identity_file", "not a private key file", id="identity-fifo"),
    case(
        "--kubeconfig",
        "{file}",
        "replace",
        "i-0123456789abcdef0",
        "-c",
        "{config}",
        file=fifo,
        names=("kubeconfig {file}", "FIFO"),
        id="kubeconfig-fifo",
    ),
    case(
        "--kubeconfig",
        "{file}",
        "roll",
        "-c",
        "{config}",
        file=b"clusters: [\n",
        names=("kubeconfig {file}", "not YAML"),
        id="kubeconfig-not-yaml",
    ),
    # --- 4. numbers on the command line: finite and bounded ----------------------------------------------------------
    case("down", "-c", "{config}", "--timeout", "nan", names=("'--timeout'", "'nan'"), id="down-timeout-nan"),
    case("up", "-c", "{config}", "--timeout", "inf", names=("'--timeout'", "'inf'"), id="up-timeout-inf"),
    case(
        "patch",
        "-c",
        "{config}",
        "--timeout",
        "1" + "0" * 30,
        names=("'--timeout'", "between 60 and 86400"),
        id="patch-timeout-huge",
    ),
    case("up", "-c", "{config}", "--timeout", "59", names=("'--timeout'", "between 60"), id="up-timeout-short"),
    case(
        "exec",
        "--all",
        "--timeout",
        "nan",
        "--",
        "true",
        names=("'--timeout'", "not a finite number"),
        id="exec-timeout-nan",
    ),
    case(
        "exec",
        "--all",
        "--timeout",
        "-inf",
        "--",
        "true",
        names=("'--timeout'", "not a finite number"),
        id="exec-timeout-neg-inf",
    ),
    case(
        "exec", "--all", "--timeout", "1e999", "--", "true", names=("'--timeout'", "'1e999'"), id="exec-timeout-1e999"
    ),
    case("exec", "--all", "--timeout", "0", "--", "true", names=("'--timeout'", "between 0.1"), id="exec-timeout-zero"),
    case(
        "exec",
        "--all",
        "--parallel",
        "nan",
        "--",
        "true",
        names=("'--parallel'", "whole number"),
        id="exec-parallel-nan",
    ),
    case(
        "exec",
        "--all",
        "--parallel",
        "1e3",
        "--",
        "true",
        names=("'--parallel'", "whole number"),
        id="exec-parallel-1e3",
    ),
    case(
        "exec",
        "--all",
        "--parallel",
        "201",
        "--",
        "true",
        names=("'--parallel'", "between 1 and 200"),
        id="exec-parallel-201",
    ),
    case(
        "diagnose", "i-0123456789abcdef0", "--timeout", "inf", names=("'--timeout'", "'inf'"), id="diagnose-timeout-inf"
    ),
    case(
        "diagnose", "i-0123456789abcdef0", "--timeout", "NaN", names=("'--timeout'", "'NaN'"), id="diagnose-timeout-nan"
    ),
    case("demo", "--boot-seconds", "nan", names=("'--boot-seconds'", "'nan'"), id="demo-boot-nan"),
    case("sandbox", "start", "--boot-seconds", "inf", names=("'--boot-seconds'", "'inf'"), id="sandbox-boot-inf"),
    case(
        "sandbox", "start", "--boot-seconds", "-1", names=("'--boot-seconds'", "between 0"), id="sandbox-boot-negative"
    ),
    case(
        "render",
        "--patch-generation",
        "9" * 30,
        names=("'--patch-generation'", "between 0 and 1000000"),
        id="generation-huge",
    ),
    case("render", "--patch-generation", "-1", names=("'--patch-generation'",), id="generation-negative"),
    case("roll", "-c", "{config}", "--max-surge", "\u00b2", names=("'--max-surge'", "'²'"), id="surge-superscript"),
    case("roll", "-c", "{config}", "--max-surge", "nan", names=("'--max-surge'", "'nan'"), id="surge-nan"),
    case(
        "patch",
        "-c",
        "{config}",
        "--max-unavailable",
        "101%",
        names=("'--max-unavailable'", "'101%'"),
        id="unavailable-101",
    ),
    # --- 4. paths, URLs, hosts and images -----------------------------------------------------------------------------
    case(
        "render",
        "--output",
        "/dev/null/x",
        names=("'--output'", "/dev/null is not a folder"),
        id="output-under-dev-null",
    ),
    case("render", "--output", "{file}", file=b"x", names=("'--output'", "cannot be a folder"), id="output-a-file"),
    case(
        "render",
        "--output",
        "{file}/sub/dir",
        file=b"x",
        names=("'--output'", "{file} is not a folder"),
        id="output-beside-file",
    ),
    case("render", "--output", "", names=("'--output'", "not a folder path"), id="output-empty"),
    case("render", "--output", "out\nx", names=("'--output'", "'out\\nx'"), id="output-newline"),
    case("render", "--output", "{file}", file=fifo, names=("'--output'", "cannot be a folder"), id="output-a-fifo"),
    case(
        "diagnose",
        "i-0123456789abcdef0",
        "--output",
        "{file}/x",
        file=b"x",
        names=("'--output'", "is not a folder"),
        id="diagnose-output-file",
    ),
    case("--endpoint-url", "not a url", "status", names=("'--endpoint-url'", "not a URL"), id="endpoint-spaces"),
    case("--endpoint-url", "ftp://127.0.0.1", "status", names=("'--endpoint-url'", "http://"), id="endpoint-ftp"),
    case("--endpoint-url", "http://:80", "status", names=("'--endpoint-url'", "names no host"), id="endpoint-no-host"),
    case(
        "--endpoint-url",
        "http://127.0.0.1:99999",
        "status",
        names=("'--endpoint-url'", "Port out of range"),
        id="endpoint-port",
    ),
    case("--endpoint-url", "http://127.0.0.1:0", "status", names=("'--endpoint-url'", "port 0"), id="endpoint-port-0"),
    case("--endpoint-url", "http://[::1", "status", names=("'--endpoint-url'", "not a URL"), id="endpoint-bad-ipv6"),
    case("--endpoint-url", "http://127.0.0.1\n", "status", names=("'--endpoint-url'",), id="endpoint-newline"),
    case(
        "--endpoint-url",
        "http://u:p@127.0.0.1",
        "status",
        names=("'--endpoint-url'", "without a user"),
        id="endpoint-user",
    ),
    case("--endpoint-url", "127.0.0.1:4566", "status", names=("'--endpoint-url'", "http://"), id="endpoint-no-scheme"),
    case(
        "status",
        "-c",
        "{config}",
        env={"AWS_ENDPOINT_URL": "::"},
        names=("AWS_ENDPOINT_URL:", "'::'"),
        id="env-endpoint",
    ),
    case(
        "status",
        "-c",
        "{config}",
        env={"AWS_ENDPOINT_URL": "localhost:4566"},
        names=("AWS_ENDPOINT_URL:",),
        id="env-endpoint-no-scheme",
    ),
    case(
        "doctor",
        "-c",
        "{config}",
        env={"AWS_ENDPOINT_URL_EC2": "x y"},
        names=("AWS_ENDPOINT_URL_EC2:",),
        id="env-endpoint-ec2",
    ),
    case(
        "down",
        "-c",
        "{config}",
        env={"AWS_ENDPOINT_URL": "http://h:0"},
        names=("AWS_ENDPOINT_URL:", "port 0"),
        id="env-endpoint-port-0",
    ),
    case("replace", "", "-c", "{config}", names=("'HOST'", "is empty"), id="replace-empty-host"),
    case("ssh", "", "-c", "{config}", names=("'HOST'", "is empty"), id="ssh-empty-host"),
    case("diagnose", "", "-c", "{config}", names=("'HOST'", "is empty"), id="diagnose-empty-host"),
    case("exec", "", "-c", "{config}", "--", "true", names=("HOSTS", "is empty"), id="exec-empty-host"),
    case("exec", "i-1", "a b", "--", "uptime", names=("HOSTS", "'a b'"), id="exec-host-with-space"),
    case("replace", "i-0123456789abcdef0\n", names=("'HOST'",), id="replace-host-newline"),
    case("ssh", "host;reboot", names=("'HOST'", "'host;reboot'"), id="ssh-host-semicolon"),
    case("diagnose", "--", "-rf", names=("'HOST'", "'-rf'"), id="diagnose-host-dash"),
    case(
        "render", "--heal-manifest", "--image", "a\nb", names=("'--image'", "not a container image"), id="image-newline"
    ),
    case("render", "--heal-manifest", "--image", "Upper/Case:1", names=("'--image'",), id="image-upper-case"),
    case("render", "--heal-manifest", "--image", "heal image", names=("'--image'",), id="image-space"),
    case("render", "--heal-manifest", "--image", "", names=("'--image'",), id="image-empty"),
    case("render", "--heal-manifest", "--image", "a" * 256, names=("'--image'",), id="image-256"),
    case("render", "--heal-manifest", "--image", "heal:1.0@sha256:xyz", names=("'--image'",), id="image-bad-digest"),
    # --- the command line's existing refusals, one line each -----------------------------------------------------
    case("render", "--frobnicate", names=("--frobnicate",), id="unknown-option"),
    case("replace", names=("'HOST'", "Missing argument"), id="missing-host"),
    case("status", "-c", "{config}", "--output", "xml", names=("'--output'", "'xml'"), id="status-output-xml"),
    case("render", "--format", "yml", names=("'--format'", "'yml'"), id="render-format-yml"),
    case("exec", "--all", "-c", "{config}", names=("give the command after --",), id="exec-without-command"),
    case("exec", "i-1", "--all", "-c", "{config}", "--", "true", names=("--all",), id="exec-hosts-and-all"),
    case("render", "--image", "heal:1", names=("--image", "--heal-manifest"), id="image-without-manifest"),
    case(
        "render", "--heal-manifest", "--output", "out", names=("--heal-manifest", "--output"), id="manifest-with-output"
    ),
    case(
        "--sandbox", "status", "-c", "{config}", names=("--sandbox", "no sandbox is running"), id="sandbox-not-running"
    ),
    case(
        "--profile",
        "no-such-profile",
        "status",
        "-c",
        "{config}",
        names=("AWS profile 'no-such-profile'",),
        id="profile",
    ),
    case("frobnicate", names=("No such command 'frobnicate'",), id="unknown-verb"),
]


def materialise(content: bytes | Maker, path: Path, other: Path) -> None:
    if isinstance(content, bytes):
        path.write_bytes(content.replace(b"{file}", bytes(other)))
    else:
        content(path)


@pytest.fixture
def inputs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("inputs")


@pytest.fixture(autouse=True)
def nowhere_to_go(monkeypatch: pytest.MonkeyPatch, inputs: Path) -> None:
    """A case that slipped past its check would reach only a closed port, and a home with nothing in it."""
    monkeypatch.setenv("AWS_ENDPOINT_URL", DEAD_ENDPOINT)
    monkeypatch.setenv("HOME", str(inputs / "home"))
    monkeypatch.delenv("KUBECONFIG", raising=False)
    monkeypatch.delenv("CLUSTER_JOIN_TOKEN", raising=False)


def everything_in(folder: Path) -> list[str]:
    return sorted(str(path.relative_to(folder)) for path in folder.rglob("*"))


@pytest.mark.parametrize("bad", CASES)
def test_bad_input_is_one_line_exit_2_and_leaves_nothing(
    bad: Bad, run_main: Run, in_tmp: Path, inputs: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config, other = inputs / "cluster.toml", inputs / "other"

    def filled(text: str) -> str:
        return text.replace("{config}", str(config)).replace("{file}", str(other))

    materialise(bad.config, config, other)
    if bad.file is not None:
        materialise(bad.file, other, other)
    for name, value in bad.env.items():
        monkeypatch.setenv(name, value)

    outcome = run_main(*(filled(arg) for arg in bad.args))

    assert outcome.code == 2, outcome
    assert outcome.out == "", outcome
    assert outcome.err.endswith("\n") and outcome.err.count("\n") == 1, f"not one line:\n{outcome.err}"
    line = outcome.err.removesuffix("\n")
    assert line.startswith("error: "), line
    assert "\r" not in line and "Traceback" not in line, line
    for name in bad.names:
        assert filled(name) in line, f"{filled(name)!r} not in {line!r}"
    assert everything_in(in_tmp) == [], "something was left in the working folder"


def test_enough_cases_and_each_once() -> None:
    assert len(CASES) >= 90
    ids = [param.id for param in CASES]  # type: ignore[attr-defined]
    assert len(set(ids)) == len(ids)


# --- the other side of the same lines: what must still be accepted ---------------------------------------------------

ACCEPTED = [
    pytest.param(example().set("ssh", "allow_from", '["8.0.0.0/17", "9.0.0.0/17"]'), id="public-16-in-two-halves"),
    pytest.param(
        example().set("ssh", "allow_from", '["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10"]'),
        id="private-ranges-unlimited",
    ),
    pytest.param(example().set("ssh", "allow_from", '["192.168.0.0/15"]'), id="half-private-block-counts-its-half"),
    pytest.param(eks_public('["203.0.113.0/24", "52.94.76.0/22"]'), id="eks-office-and-vpn"),
    pytest.param(tags(45), id="46-tags"),
    pytest.param(example().set("tags", '"clusterx:y"', '"z"').set("tags", '"Names"', '"n"'), id="near-reserved-tags"),
    pytest.param(
        example().set(
            "hosts",
            "labels",
            '{ "node.kubernetes.io/pool" = "a", "pool.kubelet.kubernetes.io/x" = "b", "kubernetes.io/os" = "linux" }',
        ),
        id="labels-the-kubelet-accepts",
    ),
    pytest.param(example().set("control_plane", "api_endpoint", '"api.example.com:65535"'), id="port-65535"),
    pytest.param(example().set("ssh", "bastion", '"ec2-user@bastion.example.com:1"'), id="bastion-port-1"),
]


@pytest.mark.parametrize("edit", ACCEPTED)
def test_what_is_near_the_line_is_accepted(edit: Edit, run_main: Run, inputs: Path) -> None:
    config = inputs / "cluster.toml"
    config.write_bytes(edit.data)

    outcome = run_main("render", "-c", str(config))

    assert (outcome.code, outcome.err) == (0, ""), outcome.err


def test_render_output_under_a_file_leaves_no_folder_behind(run_main: Run, in_tmp: Path) -> None:
    (in_tmp / "plain").write_text("x")

    outcome = run_main("render", "--output", "plain/a/b")

    assert outcome.code == 2
    assert everything_in(in_tmp) == ["plain"]


def test_render_output_that_fails_half_way_leaves_nothing(
    run_main: Run, in_tmp: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The disk fills up (or the folder is taken away) between the template and the user-data: neither the file
    written first nor the folders made for it stay behind."""
    from provision.verbs import render as verb

    write = verb._write_atomically
    calls: list[Path] = []

    def second_fails(path: Path, text: str) -> None:
        calls.append(path)
        if len(calls) == 2:
            raise OSError(28, "No space left on device")
        write(path, text)

    monkeypatch.setattr(verb, "_write_atomically", second_fails)

    outcome = run_main("render", "-c", str(EXAMPLE), "--output", "out/rendered")

    assert outcome.code == 2
    assert outcome.err == "error: --output: cannot write into out/rendered: No space left on device\n"
    assert len(calls) == 2, "the template was written before the user-data failed"
    assert everything_in(in_tmp) == []
