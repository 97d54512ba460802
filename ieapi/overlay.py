"""WireGuard interfaces in containers' network namespaces: every command that touches them.

One mechanism for both modes: the interface is created in the IE's own namespace under a name
unique to the container (`wgl` + 12 hex digits of its id), configured there with
`wg syncconf` (the private key travels through a pipe: never argv, environment or a file),
then moved into the container's namespace and renamed `wg0`, where its MTU, address and
routes are set. WireGuard keeps its UDP socket in the namespace the interface was created in,
so the encrypted traffic uses the IE's network and the container sees only `wg0`; the image
needs no WireGuard tool and no capability.

- kernel: `ip link add ... type wireguard`.
- userspace: `wireguard-go` started in the IE's namespace creates a TUN device, which moves
  like any link; wireguard-go follows the device's up/down state through its file descriptor
  (that is how it supports namespaces), and its control socket keeps the creation name
  (`/var/run/wireguard/wgl….sock`, so `wg show wgl…` works on the IE).

Lifetime: when a container stops, Docker destroys its namespace, which destroys the interface
(kernel: with its socket; userspace: wireguard-go reads EBADFD and exits; we reap it). Nothing
is left on the IE. When it starts again, `StartWatcher` sees Docker's `start` event and the
engine sets the overlay up again in the new namespace from the configuration kept in memory.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ieapi.contract import OverlayReason, OverlayState, OverlayStatus
from ieapi.overlayspec import (
    INTERFACE,
    Mode,
    OverlayConfig,
    Preference,
    choose_mode,
    handshake_verdict,
)
from ieapi.settings import Settings

log = logging.getLogger(__name__)

COMMAND_TIMEOUT_SECONDS = 10.0
SOCKET_WAIT_SECONDS = 5.0
PROCESS_EXIT_WAIT_SECONDS = 5.0
USERSPACE_SOCKET_DIR = Path("/var/run/wireguard")  # where wireguard-go and wg meet
_RESOLUTION_FAILED = re.compile(
    r"Name or service not known|Temporary failure in name resolution|Unable to resolve|"
    r"No address associated|nodename nor servname", re.IGNORECASE)


class ToolError(Exception):
    """A command failed; `message` is safe to show (the caller scrubs the key)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def run(argv: Sequence[str], *, stdin: str | None = None,
        timeout: float = COMMAND_TIMEOUT_SECONDS) -> str:
    """Run a command; its stdout, or ToolError with its stderr (argv never holds a secret)."""
    try:
        done = subprocess.run(list(argv), input=stdin, capture_output=True, text=True,
                              timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        raise ToolError(f"{argv[0]} timed out after {timeout:g} s") from None
    except OSError as exc:
        raise ToolError(f"{argv[0]}: {exc.strerror}") from None
    if done.returncode != 0:
        detail = [line.strip() for line in (done.stderr or done.stdout).splitlines()
                  if line.strip()][-3:]
        raise ToolError(f"{' '.join(argv[:4])}: {'; '.join(detail) or done.returncode}")
    return done.stdout


def host_name(container_id: str) -> str:
    """The interface's name in the IE's namespace (15 characters, the kernel's limit)."""
    return f"wgl{container_id[:12]}"


def in_netns(pid: int, *argv: str) -> list[str]:
    return ["nsenter", f"--net=/proc/{pid}/ns/net", "--", *argv]


def kernel_available() -> bool:
    """True when `ip link add type wireguard` works here (probe link removed at once)."""
    probe = f"wglprobe{os.getpid() % 100000}"
    try:
        run(["ip", "link", "add", probe, "type", "wireguard"])
    except ToolError:
        return False
    with contextlib.suppress(ToolError):
        run(["ip", "link", "del", probe])
    return True


def detect(settings: Settings) -> Mode:
    """The mode this IE offers (`/v1/info` `wireguard`)."""
    preference = Preference(settings.wireguard)
    if preference is Preference.OFF or not all(
            shutil.which(tool) for tool in ("wg", "ip", "nsenter")):
        return Mode.NONE
    kernel = preference in (Preference.AUTO, Preference.KERNEL) and kernel_available()
    userspace = (shutil.which(settings.wireguard_go) is not None
                 and os.path.exists("/dev/net/tun"))
    return choose_mode(preference, kernel=kernel, userspace=userspace)


@dataclass(frozen=True)
class _Applied:
    pid: int
    fingerprint: str
    set_up_at: float  # time.monotonic()


@dataclass(frozen=True)
class Reading:
    """What `wg show dump` says about the single peer (keys left out on purpose)."""

    endpoint: str | None
    latest_handshake: int  # epoch seconds, 0 = never
    keepalive: int


def parse_dump(text: str) -> Reading | None:
    """The peer line of `wg show <if> dump` (first line is the interface and its key)."""
    lines = text.strip().splitlines()
    for line in lines[1:]:
        cols = line.split("\t")
        if len(cols) >= 8:
            endpoint = None if cols[2] == "(none)" else cols[2]
            keepalive = 0 if cols[7] == "off" else int(cols[7])
            return Reading(endpoint, int(cols[4]), keepalive)
    return None


class Overlays:
    """The overlays of one IE API process. Calls for one container are serialized by the
    engine's per-name lock; this object's own lock guards its tables."""

    def __init__(self, settings: Settings, mode: Mode | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self._settings = settings
        self.mode = mode if mode is not None else detect(settings)
        self._clock = clock
        self._lock = threading.Lock()
        self._wanted: dict[str, OverlayConfig] = {}     # by name: what to restore on a start
        self._applied: dict[str, _Applied] = {}         # by container id
        self._procs: dict[str, subprocess.Popen[bytes]] = {}  # by container id (userspace)
        log.info("WireGuard overlays: %s", self.mode.value)

    # ------------------------------------------------------------------ what is wanted

    def wanted(self, name: str) -> OverlayConfig | None:
        with self._lock:
            return self._wanted.get(name)

    def forget(self, name: str) -> None:
        with self._lock:
            self._wanted.pop(name, None)

    # ------------------------------------------------------------------ ensure / observe

    def _running_pid_or_why_not(self, attrs: dict[str, Any], address: str) -> int | OverlayStatus:
        """The container's PID when an overlay can be worked on now, else the status that
        says why not (no WireGuard on this IE, or the container is not running)."""
        if self.mode is Mode.NONE:
            return self._status(address, OverlayState.DOWN, OverlayReason.UNSUPPORTED,
                                "this IE has neither the WireGuard kernel module nor "
                                "wireguard-go (see GET /v1/info)")
        pid = _running_pid(attrs)
        if pid is None:
            return self._status(address, OverlayState.PENDING,
                                OverlayReason.CONTAINER_NOT_RUNNING,
                                "set up when the container runs")
        return pid

    def ensure(self, name: str, attrs: dict[str, Any], config: OverlayConfig) -> OverlayStatus:
        """Make the container's `wg0` match `config`; the status says how far it got."""
        with self._lock:
            self._wanted[name] = config
        address = str(config.address)
        pid = self._running_pid_or_why_not(attrs, address)
        if isinstance(pid, OverlayStatus):
            return pid
        container_id = str(attrs["Id"])
        try:
            with self._lock:
                applied = self._applied.get(container_id)
            present = self._has_interface(pid)
            fingerprint = config.fingerprint()
            if not present:
                self._create(container_id, pid, config)
            elif applied is None or applied.pid != pid or applied.fingerprint != fingerprint:
                self._configure(container_id, pid, config)
            if not present or applied is None or applied.pid != pid:
                applied = _Applied(pid, fingerprint, time.monotonic())
            else:
                applied = _Applied(pid, fingerprint, applied.set_up_at)
            with self._lock:
                self._applied[container_id] = applied
            return self._report(container_id, pid, address, applied)
        except ToolError as exc:
            message = config.scrub(exc.message)
            reason = (OverlayReason.ENDPOINT_UNREACHABLE if _RESOLUTION_FAILED.search(message)
                      else OverlayReason.SETUP_FAILED)
            log.warning("overlay of %s: %s", name, message)
            return self._status(address, OverlayState.DOWN, reason, message)

    def observe(self, attrs: dict[str, Any], address: str) -> OverlayStatus:
        """Read-only report (GET): what the container's `wg0` looks like now."""
        pid = self._running_pid_or_why_not(attrs, address)
        if isinstance(pid, OverlayStatus):
            return pid
        container_id = str(attrs["Id"])
        with self._lock:
            applied = self._applied.get(container_id)
        try:
            if not self._has_interface(pid):
                return self._status(address, OverlayState.PENDING, OverlayReason.SETUP_FAILED,
                                    "no overlay interface in the container yet")
            if applied is None or applied.pid != pid:  # set up by an earlier process
                applied = _Applied(pid, "", time.monotonic())
                with self._lock:
                    self._applied[container_id] = applied
            return self._report(container_id, pid, address, applied)
        except ToolError as exc:
            return self._status(address, OverlayState.DOWN, OverlayReason.SETUP_FAILED,
                                _scrub_dump(exc.message))

    def released(self, container_id: str) -> None:
        """The container is gone: its namespace took the interface; make sure the userspace
        process followed (it exits by itself within a moment) and forget the record."""
        with self._lock:
            self._applied.pop(container_id, None)
            proc = self._procs.pop(container_id, None)
        if proc is not None:
            _stop(proc)

    # ------------------------------------------------------------------ commands

    def _has_interface(self, pid: int) -> bool:
        try:
            run(in_netns(pid, "ip", "link", "show", "dev", INTERFACE))
        except ToolError:
            if not Path(f"/proc/{pid}/ns/net").exists():
                raise ToolError("the container's network namespace is gone") from None
            return False
        return True

    def _create(self, container_id: str, pid: int, config: OverlayConfig) -> None:
        name = host_name(container_id)
        self._discard(container_id, name)  # leftovers of an attempt that failed half-way
        try:
            if self.mode is Mode.KERNEL:
                run(["ip", "link", "add", name, "type", "wireguard"])
            else:
                self._start_userspace(container_id, name)
            run(["wg", "syncconf", name, "/dev/stdin"], stdin=config.wg_config())
            run(["ip", "link", "set", "dev", name, "netns", str(pid)])
            run(in_netns(pid, "ip", "link", "set", "dev", name, "name", INTERFACE))
            self._address_and_routes(pid, config)
        except ToolError:
            self._discard(container_id, name)
            with contextlib.suppress(ToolError):
                run(in_netns(pid, "ip", "link", "del", "dev", INTERFACE))
            raise
        log.info("overlay %s (%s) set up in container %s as %s", config.address,
                 self.mode.value, container_id[:12], INTERFACE)

    def _configure(self, container_id: str, pid: int, config: OverlayConfig) -> None:
        """Apply `config` to an existing interface (e.g. a rotated key, or after a restart of
        the IE API): `syncconf` changes only what differs, keeping a live session."""
        run(self._wg(container_id, pid, "syncconf", "/dev/stdin"), stdin=config.wg_config())
        self._address_and_routes(pid, config)

    def _address_and_routes(self, pid: int, config: OverlayConfig) -> None:
        run(in_netns(pid, "ip", "link", "set", "dev", INTERFACE, "mtu", str(config.mtu), "up"))
        run(in_netns(pid, "ip", "address", "replace", str(config.address), "dev", INTERFACE))
        for network in config.allowed_ips:
            run(in_netns(pid, "ip", "route", "replace", str(network), "dev", INTERFACE))

    def _wg(self, container_id: str, pid: int, *args: str) -> list[str]:
        """`wg <args>` aimed at the container's interface: kernel through netlink in its
        namespace; userspace through the control socket named at creation."""
        if self.mode is Mode.KERNEL:
            return in_netns(pid, "wg", args[0], INTERFACE, *args[1:])
        return ["wg", args[0], host_name(container_id), *args[1:]]

    def _start_userspace(self, container_id: str, name: str) -> None:
        env = {"PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
               "LOG_LEVEL": "error", "WG_PROCESS_FOREGROUND": "1"}
        try:
            proc = subprocess.Popen(
                [self._settings.wireguard_go, "-f", name], env=env, stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        except OSError as exc:
            raise ToolError(f"{self._settings.wireguard_go}: {exc.strerror}") from None
        with self._lock:
            self._procs[container_id] = proc
        threading.Thread(target=self._reap, args=(container_id, proc), daemon=True,
                         name=f"wireguard-go {name}").start()
        socket = USERSPACE_SOCKET_DIR / f"{name}.sock"
        deadline = time.monotonic() + SOCKET_WAIT_SECONDS
        while not socket.exists():
            if proc.poll() is not None:
                raise ToolError(f"wireguard-go exited with code {proc.returncode} at start")
            if time.monotonic() > deadline:
                raise ToolError(f"wireguard-go made no control socket in {SOCKET_WAIT_SECONDS:g} s")
            time.sleep(0.02)

    def _reap(self, container_id: str, proc: subprocess.Popen[bytes]) -> None:
        """Wait for a wireguard-go (it exits when its container's namespace goes)."""
        code = proc.wait()
        with self._lock:
            if self._procs.get(container_id) is proc:
                del self._procs[container_id]
        log.info("wireguard-go of container %s exited (%s)", container_id[:12], code)

    def _discard(self, container_id: str, name: str) -> None:
        """Remove a half-made interface still in the IE's namespace, and its process."""
        with contextlib.suppress(ToolError):
            run(["ip", "link", "show", "dev", name])
            run(["ip", "link", "del", "dev", name])
        with self._lock:
            proc = self._procs.pop(container_id, None)
        if proc is not None:
            _stop(proc)

    def _report(self, container_id: str, pid: int, address: str,
                applied: _Applied) -> OverlayStatus:
        reading = parse_dump(_scrub_dump(run(self._wg(container_id, pid, "show", "dump"))))
        if reading is None:
            return self._status(address, OverlayState.DOWN, OverlayReason.SETUP_FAILED,
                                "the interface has no peer")
        now = self._clock()
        age = None
        latest = None
        if reading.latest_handshake > 0:
            age = max(0, int(now - reading.latest_handshake))
            latest = datetime.fromtimestamp(reading.latest_handshake, UTC).isoformat().replace(
                "+00:00", "Z")
        endpoint = reading.endpoint or "(none)"
        up, reason, message = handshake_verdict(
            keepalive=reading.keepalive, age_seconds=age,
            since_setup_seconds=time.monotonic() - applied.set_up_at,
            grace_seconds=self._settings.overlay_handshake_grace_seconds, endpoint=endpoint)
        state = OverlayState.UP if up else (
            OverlayState.PENDING if reason is OverlayReason.HANDSHAKE_PENDING
            else OverlayState.DOWN)
        return OverlayStatus(mode=self.mode.value, address=address, state=state, reason=reason,
                             message=message, endpoint=reading.endpoint, latest_handshake=latest,
                             handshake_age_seconds=age)

    def _status(self, address: str, state: OverlayState, reason: OverlayReason,
                message: str) -> OverlayStatus:
        return OverlayStatus(mode=self.mode.value, address=address, state=state, reason=reason,
                             message=message)


def _running_pid(attrs: dict[str, Any]) -> int | None:
    state = attrs.get("State") or {}
    pid = int(state.get("Pid") or 0)
    return pid if state.get("Running") and pid > 0 else None


def _scrub_dump(text: str) -> str:
    """`wg show dump` starts with the private key: drop that line before anything else."""
    lines = text.splitlines(keepends=True)
    return "(interface)\n" + "".join(lines[1:]) if lines else text


def _stop(proc: subprocess.Popen[bytes]) -> None:
    try:
        proc.wait(PROCESS_EXIT_WAIT_SECONDS)
        return
    except subprocess.TimeoutExpired:
        pass
    proc.terminate()
    try:
        proc.wait(PROCESS_EXIT_WAIT_SECONDS)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


class StartWatcher:
    """Follows Docker's `start` events of managed containers (restart policy, daemon restart,
    manual start) and hands each container id to `on_start`. Reconnects after any error."""

    def __init__(self, events: Callable[..., Any], filters: dict[str, Any],
                 on_start: Callable[[str], None]) -> None:
        self._events = events
        self._filters = {**filters, "type": "container", "event": "start"}
        self._on_start = on_start
        self._stopped = threading.Event()
        self._stream: Any = None
        self._thread = threading.Thread(target=self._loop, daemon=True,
                                        name="overlay start watcher")

    def start(self) -> StartWatcher:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopped.set()
        stream = self._stream
        if stream is not None:
            with contextlib.suppress(Exception):
                stream.close()

    def _loop(self) -> None:
        since = int(time.time())
        seen = 0  # timeNano of the last event handled: a reconnect replays its second
        while not self._stopped.is_set():
            try:
                self._stream = self._events(decode=True, filters=self._filters, since=since)
                for event in self._stream:
                    if self._stopped.is_set():
                        return
                    stamp = int(event.get("timeNano") or 0)
                    if stamp and stamp <= seen:
                        continue
                    seen = max(seen, stamp)
                    since = int(event.get("time") or since)
                    container_id = str(event.get("id") or "")
                    if container_id:
                        try:
                            self._on_start(container_id)
                        except Exception:  # a watcher must survive anything
                            log.exception("overlay restore for %s failed", container_id[:12])
            except Exception as exc:
                if self._stopped.is_set():
                    return
                log.debug("docker events interrupted (%s); reconnecting", exc)
                self._stopped.wait(1.0)
