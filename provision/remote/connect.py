"""SSH to a host with paramiko, as OpenSSH would: the user's ~/.ssh/config (HostName, Port, User, IdentityFile,
ProxyJump, ConnectTimeout) looked up by the host's private IP, the configured bastion as a jump host, keys from the
agent, the configured identity file and the usual ~/.ssh/id_* files, and host keys checked against known_hosts.

An unknown host key is refused unless the user asked to accept new keys; a changed or revoked key is always refused
(known_hosts is read by ``known_hosts.py``, markers and patterns included). Whatever paramiko raises becomes one line
naming the host. Nothing here logs or prints key material: only key types and SHA256 fingerprints, which are public.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import paramiko
from paramiko.hostkeys import HostKeyEntry

from provision.clock import Clock, SystemClock
from provision.config.schema import Ssh
from provision.errors import ClusterError, ConfigError
from provision.remote.known_hosts import Entry, KnownHosts
from provision.textfile import MIB, UnreadableFile, read_text_file

# Output kept per command: enough for a journal tail, bounded so a runaway command cannot fill memory.
OUTPUT_LIMIT = 8 * 1024 * 1024
# The most read from known_hosts and ~/.ssh/config: far above real ones (a known_hosts line is about 100 bytes).
KNOWN_HOSTS_LIMIT = 16 * MIB
SSH_CONFIG_LIMIT = 1 * MIB
IDENTITY_LIMIT = 1 * MIB  # a private key file is a few KB; paramiko reads it whole

_known_hosts_lock = threading.Lock()  # threads of one `exec --accept-new-host-key` append to the same file


class SshError(ClusterError):
    """The host could not be reached, logged in to, or trusted. The message names the host and what to do;
    ``reason`` is the same without the host, for tables that name it already."""

    def __init__(self, label: str, reason: str) -> None:
        super().__init__(f"{label}: {reason}")
        self.reason = reason


class HostKeyRefused(SshError):
    pass


@contextmanager
def failures_named(label: str, doing: str) -> Iterator[None]:
    """paramiko raises many types: its own, the socket's, EOFError, and what its key and packet parsers raise
    (ValueError, UnicodeDecodeError, struct.error). Whatever it is, the user gets one line naming the host."""
    try:
        yield
    except ClusterError:
        raise
    except Exception as error:
        raise SshError(label, f"{doing}: {_why(error)}") from None


def _why(error: BaseException) -> str:
    lines = str(error).splitlines()
    return f"{type(error).__name__}: {lines[0]}" if lines else type(error).__name__


@dataclass(frozen=True)
class SshSettings:
    user: str = "ec2-user"
    bastion: str | None = None  # [user@]host[:port]
    known_hosts: Path = Path("~/.ssh/known_hosts")
    identity_file: Path | None = None
    config_file: Path | None = Path("~/.ssh/config")
    connect_timeout: float = 10.0
    accept_new_host_key: bool = False
    source: str = "cluster.toml"  # the configuration these settings come from, named in messages

    @classmethod
    def of(cls, ssh: Ssh, *, accept_new_host_key: bool = False, source: str = "cluster.toml") -> SshSettings:
        identity = Path(ssh.identity_file).expanduser() if ssh.identity_file else None
        if identity is not None:
            # paramiko reads the key itself: it must be a regular file of a key's size (not a FIFO or a device).
            if not identity.exists():
                raise ConfigError(source, "ssh.identity_file", f"no such file: {identity}")
            if not identity.is_file() or identity.stat().st_size > IDENTITY_LIMIT:
                raise ConfigError(source, "ssh.identity_file", f"{identity} is not a private key file")
        return cls(
            user=ssh.user,
            bastion=ssh.bastion,
            known_hosts=Path(ssh.known_hosts).expanduser(),
            identity_file=identity,
            config_file=Path(ssh.config_file).expanduser(),
            connect_timeout=float(ssh.connect_timeout_seconds),
            accept_new_host_key=accept_new_host_key,
            source=source,
        )


@dataclass(frozen=True)
class Endpoint:
    """Where one hop goes, after ~/.ssh/config has had its say."""

    host: str
    port: int
    user: str
    identity_files: tuple[str, ...]
    jumps: tuple[str, ...]  # hops to go through first, outermost first
    timeout: float  # to connect and log in

    @property
    def known_hosts_name(self) -> str:
        return self.host if self.port == 22 else f"[{self.host}]:{self.port}"


@dataclass(frozen=True)
class CommandResult:
    status: int | None  # the exit status; None when the command did not finish in time
    output: bytes  # stdout and stderr as they interleaved
    truncated: bool = False

    @property
    def text(self) -> str:
        return self.output.decode(errors="replace")


class Session:
    """One logged-in connection to a host. ``run`` may be called from one thread at a time."""

    def __init__(self, client: paramiko.SSHClient, label: str, clock: Clock) -> None:
        self.client = client
        self.label = label
        self.clock = clock

    def run(self, command: str, *, timeout: float) -> CommandResult:
        """Run ``command`` in the login user's shell, stdout and stderr combined, for at most ``timeout`` seconds."""
        deadline = self.clock.now() + timeout
        transport = self.client.get_transport()
        if transport is None or not transport.is_active():
            raise SshError(self.label, "the connection was closed")
        with failures_named(self.label, "the host did not start the command"):
            channel = transport.open_session(timeout=timeout)
            channel.set_combine_stderr(True)
            channel.exec_command(command)
        try:
            with failures_named(self.label, "the connection failed during the command"):
                return self._collect(channel, deadline)
        finally:
            channel.close()

    def _collect(self, channel: paramiko.Channel, deadline: float) -> CommandResult:
        output = bytearray()
        truncated = False
        while True:
            remaining = deadline - self.clock.now()
            if remaining <= 0:
                return CommandResult(None, bytes(output), truncated)
            channel.settimeout(remaining)
            try:
                chunk = channel.recv(65536)
            except TimeoutError:
                return CommandResult(None, bytes(output), truncated)
            if not chunk:
                break
            output += chunk
            if len(output) > OUTPUT_LIMIT:  # keep the end: the latest lines say the most
                del output[: len(output) - OUTPUT_LIMIT]
                truncated = True
        # The exit status arrives just before or after the end of the output.
        if not channel.status_event.wait(max(deadline - self.clock.now(), 0.0)):
            return CommandResult(None, bytes(output), truncated)
        return CommandResult(channel.recv_exit_status(), bytes(output), truncated)

    def close(self) -> None:
        self.client.close()


class Connector:
    """Opens sessions to hosts with one set of settings. Jump hosts are logged in to once and shared by every
    session that goes through them (paramiko transports carry many channels, from any thread)."""

    def __init__(self, settings: SshSettings, *, clock: Clock | None = None) -> None:
        self.settings = settings
        self.clock = clock or SystemClock()
        self.config = _read_config(settings.config_file)
        # Read once, here, before any host is tried (and before anything is asked of AWS); keys accepted later
        # (--accept-new-host-key) are added.
        self.known_hosts = _read_known_hosts(settings)
        self._jumps: dict[tuple[str, ...], paramiko.SSHClient] = {}
        self._jump_lock = threading.RLock()  # re-entered by a chain of jump hosts, each through the one before

    def __enter__(self) -> Connector:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def close(self) -> None:
        with self._jump_lock:
            for client in self._jumps.values():
                client.close()
            self._jumps.clear()

    def endpoint(self, address: str) -> Endpoint:
        """The host's endpoint: ~/.ssh/config entries for ``address`` win over cluster.toml's user and bastion."""
        found = self.config.lookup(address)
        proxy_jump = str(found.get("proxyjump", "") or self.settings.bastion or "")
        return Endpoint(
            host=str(found.get("hostname", address)),
            port=int(found.get("port") or 22),
            user=str(found.get("user", self.settings.user)),
            identity_files=self._identities(found),
            jumps=() if proxy_jump.lower() == "none" else tuple(j.strip() for j in proxy_jump.split(",") if j.strip()),
            timeout=self._timeout(found),
        )

    def jump_endpoint(self, spec: str) -> Endpoint:
        """A jump host given as [user@]host[:port]: what the spec says wins over its ~/.ssh/config entry (as on
        OpenSSH's command line); the jump host's own ProxyJump is not followed."""
        user, _, rest = spec.rpartition("@")
        host, _, port = rest.partition(":")
        found = self.config.lookup(host)
        return Endpoint(
            host=str(found.get("hostname", host)),
            port=int(port or found.get("port") or 22),
            user=user or str(found.get("user", self.settings.user)),
            identity_files=self._identities(found),
            jumps=(),
            timeout=self._timeout(found),
        )

    @contextmanager
    def session(self, address: str, *, label: str = "") -> Iterator[Session]:
        opened = self.open(address, label=label)
        try:
            yield opened
        finally:
            opened.close()

    def open(self, address: str, *, label: str = "") -> Session:
        label = label or address
        if not address:
            raise SshError(label, "the host has no private IP address (yet)")
        endpoint = self.endpoint(address)
        sock = self._through(endpoint.jumps, endpoint, label) if endpoint.jumps else None
        return Session(self._login(endpoint, label, sock), label, self.clock)

    def _through(self, jumps: tuple[str, ...], target: Endpoint, label: str) -> paramiko.Channel:
        """A channel to ``target`` opened by the last of ``jumps`` (the equivalent of ProxyJump)."""
        with self._jump_lock:  # one login per jump host, however many threads ask at once
            client = self._jumps.get(jumps)
            if client is None or not _alive(client):
                sock = self._through(jumps[:-1], self.jump_endpoint(jumps[-1]), label) if len(jumps) > 1 else None
                hop = self.jump_endpoint(jumps[-1])
                client = self._login(hop, f"jump host {jumps[-1]} (for {label})", sock)
                self._jumps[jumps] = client
        transport = client.get_transport()
        assert transport is not None  # _alive checked it
        try:
            return transport.open_channel(
                "direct-tcpip", (target.host, target.port), ("127.0.0.1", 0), timeout=target.timeout
            )
        except paramiko.ChannelException as error:
            raise SshError(
                label, f"the jump host {jumps[-1]} cannot reach {target.host}:{target.port} ({error.text})"
            ) from None
        except (paramiko.SSHException, OSError) as error:
            raise SshError(label, f"the jump host {jumps[-1]} did not open a channel: {error or 'timed out'}") from None
        except Exception as error:  # see failures_named
            raise SshError(label, f"the jump host {jumps[-1]} did not open a channel: {_why(error)}") from None

    def _login(self, endpoint: Endpoint, label: str, sock: paramiko.Channel | None) -> paramiko.SSHClient:
        settings = self.settings
        client = paramiko.SSHClient()
        name = endpoint.known_hosts_name  # the name paramiko looks the host up by, as OpenSSH does
        with _known_hosts_lock:
            keys = self.known_hosts.keys_for(name)  # a revoked key is not among them, even where a plain line lists it
        for key in keys:
            client.get_host_keys().add(name, key.get_name(), key)
        client.set_missing_host_key_policy(_Unknown(self.known_hosts, settings.accept_new_host_key, label))
        timeout = endpoint.timeout
        try:
            client.connect(
                endpoint.host,
                port=endpoint.port,
                username=endpoint.user,
                key_filename=list(endpoint.identity_files) or None,  # type: ignore[arg-type]  # a list is documented
                timeout=timeout,
                banner_timeout=timeout,
                auth_timeout=timeout,
                channel_timeout=timeout,
                allow_agent=True,
                look_for_keys=True,
                sock=sock,
            )
        except paramiko.BadHostKeyException as error:
            client.close()
            revoked = self.known_hosts.revoked(name, error.key)
            if revoked is not None:
                raise HostKeyRefused(label, _revoked(name, error.key, self.known_hosts, revoked)) from None
            raise HostKeyRefused(label, _changed(endpoint, error, settings.known_hosts)) from None
        except paramiko.AuthenticationException:
            client.close()
            tried = ", ".join(endpoint.identity_files) or "no identity file"
            raise SshError(
                label,
                f"{endpoint.user}@{endpoint.known_hosts_name} refused every key (tried the agent, {tried} "
                "and ~/.ssh/id_*); set ssh.identity_file or ssh.user, or IdentityFile/User in ~/.ssh/config",
            ) from None
        except ClusterError:  # the host key policy's refusals, already one line
            client.close()
            raise
        except TimeoutError:
            client.close()
            raise SshError(label, f"no answer from {endpoint.known_hosts_name} within {timeout:g}s") from None
        except paramiko.SSHException as error:
            client.close()
            text = str(error)
            # The port accepted but nothing spoke SSH in time: paramiko says so in one of two ways, depending on
            # whether its banner wait or its negotiation wait ran out first.
            if "banner" in text.lower() or text == "No existing session":
                text = f"the SSH handshake did not finish within {timeout:g}s"
            elif text == "No authentication methods available":
                text = (
                    f"no key to log in as {endpoint.user} with: the agent has none and no identity file was found; set "
                    "ssh.identity_file or IdentityFile in ~/.ssh/config, or add a key to the agent (ssh-add)"
                )
            raise SshError(label, f"{endpoint.known_hosts_name}: {text}") from None
        except OSError as error:
            client.close()
            raise SshError(label, f"cannot connect to {endpoint.known_hosts_name}: {error.strerror or error}") from None
        except Exception as error:  # see failures_named: e.g. an identity file paramiko cannot decode
            client.close()
            raise SshError(label, f"{endpoint.known_hosts_name}: SSH failed: {_why(error)}") from None
        return client

    def _timeout(self, found: paramiko.SSHConfigDict) -> float:
        """ConnectTimeout from ~/.ssh/config, else ssh.connect_timeout_seconds."""
        return float(found.get("connecttimeout") or self.settings.connect_timeout)

    def _identities(self, found: paramiko.SSHConfigDict) -> tuple[str, ...]:
        listed = [str(Path(path).expanduser()) for path in found.get("identityfile", [])]
        configured = [str(self.settings.identity_file)] if self.settings.identity_file else []
        return tuple(dict.fromkeys([*listed, *configured]))


class _Unknown(paramiko.MissingHostKeyPolicy):
    """A host key that known_hosts does not list for the host: refused when revoked; refused when unknown, or with
    ``accept`` recorded in known_hosts (as StrictHostKeyChecking accept-new). paramiko itself refuses a key that
    differs from a known one before asking this policy."""

    def __init__(self, known: KnownHosts, accept: bool, label: str) -> None:
        self.known = known
        self.accept = accept
        self.label = label

    def missing_host_key(self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey) -> None:
        revoked = self.known.revoked(hostname, key)
        if revoked is not None:
            raise HostKeyRefused(self.label, _revoked(hostname, key, self.known, revoked))
        offered = f"{key.get_name()} {key.fingerprint}"
        path = self.known.path
        if not self.accept:
            authorities = self.known.authorities_for(hostname)
            if authorities:
                raise HostKeyRefused(
                    self.label,
                    f"{hostname} is trusted through @cert-authority in {path} ({authorities[0].where}), but host "
                    "certificates cannot be checked here (paramiko neither asks for nor verifies them), and its own "
                    f"key ({offered}) is not listed; check that fingerprint and add the key to {path}, or rerun with "
                    "--accept-new-host-key to record it",
                )
            raise HostKeyRefused(
                self.label,
                f"unknown host key for {hostname} ({offered}), not in {path}; check the "
                "fingerprint (the EC2 console output lists it) and rerun with --accept-new-host-key to record it",
            )
        line = HostKeyEntry([hostname], key).to_line() or ""
        with _known_hosts_lock:
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            with path.open("a") as known:
                known.write(line)
            self.known.add(hostname, key)  # the connector's: later logins of this run know the key too
        client.get_host_keys().add(hostname, key.get_name(), key)


def _revoked(name: str, key: paramiko.PKey, known: KnownHosts, entry: Entry) -> str:
    return (
        f"the host key of {name} ({key.get_name()} {key.fingerprint}) is REVOKED in {known.path} ({entry.where}); "
        "refusing to connect: the host must get a new key"
    )


def _changed(endpoint: Endpoint, error: paramiko.BadHostKeyException, known_hosts: Path) -> str:
    name = endpoint.known_hosts_name
    return (
        f"HOST KEY CHANGED for {name}: {known_hosts} has {error.expected_key.get_name()} "
        f"{error.expected_key.fingerprint}, the host offered {error.key.get_name()} {error.key.fingerprint}. Refusing: "
        "someone may be intercepting the connection, or the address now belongs to a new host. If you know it is "
        f"a new host, remove the old key with: ssh-keygen -R '{name}' -f {known_hosts}"
    )


def _read_config(path: Path | None) -> paramiko.SSHConfig:
    if path is None:
        return paramiko.SSHConfig()
    try:
        return paramiko.SSHConfig.from_text(read_text_file(path, limit=SSH_CONFIG_LIMIT))
    except UnreadableFile as error:
        if error.missing:
            return paramiko.SSHConfig()
        raise ConfigError(str(path), "", f"cannot read the SSH client configuration: {error.problem}") from None
    except paramiko.ConfigParseError as error:
        raise ConfigError(str(path), "", f"cannot read the SSH client configuration: {error}") from None


def _read_known_hosts(settings: SshSettings) -> KnownHosts:
    """known_hosts through provision.textfile (paramiko's HostKeys.load would open a FIFO or a device itself), read
    by provision.remote.known_hosts (markers and patterns included)."""
    try:
        text = read_text_file(settings.known_hosts, limit=KNOWN_HOSTS_LIMIT)
    except UnreadableFile as error:
        if not error.missing:
            raise ConfigError(settings.source, "ssh.known_hosts", str(error)) from None
        text = ""  # no host is known yet
    return KnownHosts.parse(settings.known_hosts, text)


def _alive(client: paramiko.SSHClient) -> bool:
    transport = client.get_transport()
    return transport is not None and transport.is_active()
