"""A private Docker Engine for tests, started and stopped by PID.

Several test sessions may run at once on one machine (each engineer, CI), so every private
dockerd owns a *slot*: an flock'ed file that hands it its own bridge (`llo-d<n>`) and its own
address range (10.<160+n>.0.0/16) for the default bridge and every user-defined network.
Two daemons with the same default pools would give two host bridges the same subnet, and a
published port could then be proxied into the other daemon's container.

Registry traffic is sent to a dead loopback proxy, so a pull fails at once and locally.

The daemon runs with `--iptables=false`: published ports still work through docker-proxy on
127.0.0.1, embedded DNS still works on user-defined networks, and nothing is written to the
host's shared iptables chains (which a second dockerd would flush at its start).

If `DOCKER_HOST` is set and answers, it is used as is and nothing is started.
"""

from __future__ import annotations

import contextlib
import fcntl
import ipaddress
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import docker
import requests
from docker.errors import DockerException

from ieapi.contract import LABEL_MANAGED

# The Engine API version every test client pins: dockerd 20.10 speaks at most 1.41.
DOCKER_API_VERSION = "1.41"

SLOT_DIR = Path(tempfile.gettempdir()) / "llo-dockerd-slots"
SLOT_COUNT = 64
_FIRST_OCTET = 160
# Port 9 (discard) on loopback: nothing listens there, so a proxied connection is refused.
_DEAD_PROXY = "http://127.0.0.1:9"


class DockerdNotInstalledError(RuntimeError):
    """No dockerd binary and no reachable DOCKER_HOST: docker tests cannot run here."""


class DockerdStartError(RuntimeError):
    """dockerd was found but did not come up; the message carries its log tail."""


@dataclass
class Dockerd:
    """A Docker Engine the tests may use: `url` is what DOCKER_HOST should say."""

    url: str
    pid: int | None = None
    root: Path | None = None
    log_path: Path | None = None
    bridge: str | None = None
    subnet: ipaddress.IPv4Network | None = None
    _process: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    _slot_fd: int | None = field(default=None, repr=False)
    _argv: list[str] = field(default_factory=list, repr=False)

    @property
    def external(self) -> bool:
        """True when the engine was found via DOCKER_HOST and is not ours to stop."""
        return self._process is None

    def log_tail(self, lines: int = 40) -> str:
        """The last lines of the daemon's log, for failure reports."""
        if self.log_path is None or not self.log_path.exists():
            return ""
        text = self.log_path.read_text(errors="replace").splitlines()
        return "\n".join(text[-lines:])


def remove_managed(client: docker.DockerClient, instance_id: str) -> None:
    """Remove every container and network an IE API instance manages (its managed-by label):
    what a test leaves behind on the shared dockerd, whatever state the test ended in."""
    label = {"label": f"{LABEL_MANAGED}={instance_id}"}
    for container in client.containers.list(all=True, filters=label):
        container.remove(force=True)
    for network in client.networks.list(filters=label):
        network.remove()


def ping(url: str, timeout: float = 2.0) -> bool:
    """True when a Docker Engine answers /_ping at `url`."""
    try:
        client = docker.APIClient(base_url=url, version=DOCKER_API_VERSION, timeout=timeout)
    except DockerException:
        return False
    try:
        return bool(client.ping())
    except (DockerException, requests.RequestException, OSError):
        return False
    finally:
        client.close()


def external_docker_host(env: Mapping[str, str] | None = None) -> str | None:
    """DOCKER_HOST from the environment when it is set and the engine there answers."""
    url = (env if env is not None else os.environ).get("DOCKER_HOST", "").strip()
    if url and ping(url):
        return url
    return None


@contextlib.contextmanager
def docker_engine(log_path: Path | None = None) -> Iterator[Dockerd]:
    """The engine for a test session: DOCKER_HOST if reachable, else a private dockerd."""
    url = external_docker_host()
    if url is not None:
        yield Dockerd(url=url)
        return
    engine = start_dockerd(log_path=log_path)
    try:
        yield engine
    finally:
        stop_dockerd(engine)


def start_dockerd(
    *, log_path: Path | None = None, startup_timeout: float = 30.0, binary: str = "dockerd",
) -> Dockerd:
    """Start a private dockerd under a short temp dir and wait until it answers."""
    executable = shutil.which(binary)
    if executable is None:
        raise DockerdNotInstalledError(f"{binary} not found on PATH and DOCKER_HOST is not usable")
    # A short path: the socket must stay under the 108-byte unix socket limit.
    root = Path(tempfile.mkdtemp(prefix="llod", dir="/tmp"))
    try:
        slot, slot_fd = _acquire_slot(root)
    except BaseException:
        shutil.rmtree(root, ignore_errors=True)
        raise
    subnet = _slot_subnet(slot)
    bridge = f"llo-d{slot}"
    log_path = log_path or root / "dockerd.log"
    engine = Dockerd(url=f"unix://{root}/docker.sock", root=root, log_path=log_path,
                     bridge=bridge, subnet=subnet, _slot_fd=slot_fd)
    try:
        _create_bridge(bridge, subnet)
        (root / "daemon.json").write_text("{}")  # hermetic: ignore /etc/docker/daemon.json
        argv = [
            executable,
            "-H", engine.url,
            "--data-root", str(root / "data"),
            "--exec-root", str(root / "exec"),
            "--pidfile", str(root / "pid"),
            "--config-file", str(root / "daemon.json"),
            "--storage-driver", "overlay2",
            "--bridge", bridge,
            "--default-address-pool", f"base={_pool(subnet)},size=24",
            "--iptables=false", "--ip-masq=false", "--ip-forward=false",
            "--shutdown-timeout", "2",
        ]
        log_path.parent.mkdir(parents=True, exist_ok=True)
        engine._argv = argv
        _spawn(engine)
        _wait_until_up(engine, startup_timeout)
    except BaseException:
        stop_dockerd(engine)
        raise
    return engine


def _spawn(engine: Dockerd) -> None:
    assert engine.log_path is not None
    with engine.log_path.open("ab") as log:
        engine._process = subprocess.Popen(
            _die_with_parent(engine._argv), stdin=subprocess.DEVNULL, stdout=log,
            stderr=subprocess.STDOUT, env=_daemon_env(), start_new_session=True)
    engine.pid = engine._process.pid


def restart_dockerd(engine: Dockerd, *, while_down: Callable[[], object] | None = None,
                    timeout: float = 30.0) -> None:
    """Stop a private dockerd by PID (SIGTERM, as a service manager would) and start it again
    with the same data root, socket, bridge and slot: images, containers and networks survive,
    as after a daemon restart on an IE. `while_down` runs while the daemon is stopped."""
    process = engine._process
    if process is None or engine.root is None:
        raise ValueError("only a private dockerd started by start_dockerd can be restarted")
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout)
    if while_down is not None:
        while_down()
    _spawn(engine)
    _wait_until_up(engine, timeout)


def stop_dockerd(engine: Dockerd, *, timeout: float = 20.0) -> None:
    """Stop a private dockerd by PID and remove everything it left behind."""
    if engine.root is None:
        return  # external engine: not ours
    process = engine._process
    if process is not None and process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout)
    _kill_processes_under(engine.root)
    _unmount_under(engine.root)
    if engine.bridge is not None and engine.subnet is not None:
        _remove_bridges(engine.subnet, engine.bridge)
    shutil.rmtree(engine.root, ignore_errors=True)
    if engine._slot_fd is not None:
        os.close(engine._slot_fd)  # releases the slot's flock
        engine._slot_fd = None


def _die_with_parent(argv: list[str]) -> list[str]:
    """argv that makes the kernel SIGTERM dockerd when the test process dies (even by SIGKILL),
    so a killed session leaves no daemon running; its files are cleaned by the next holder of
    the slot. setpriv (util-linux) sets that, then execs dockerd under the same PID. The signal
    follows the *thread* that started it: start dockerd from the main thread."""
    setpriv = shutil.which("setpriv")
    return [setpriv, "--pdeathsig", "TERM", "--", *argv] if setpriv else argv


def _daemon_env() -> dict[str, str]:
    """dockerd's environment: every registry connection goes to a closed loopback port.

    A pull (tests try unpullable images on purpose, fuzzers invent registry names and IP
    addresses) then fails at once with Docker's own 500, and never sends a packet, not even a
    DNS query, beyond this machine."""
    env = {key: value for key, value in os.environ.items()
           if key.lower() not in ("http_proxy", "https_proxy", "no_proxy", "all_proxy")}
    env.update(HTTP_PROXY=_DEAD_PROXY, HTTPS_PROXY=_DEAD_PROXY, NO_PROXY="")
    return env


def _wait_until_up(engine: Dockerd, timeout: float) -> None:
    assert engine._process is not None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if engine._process.poll() is not None:
            raise DockerdStartError(
                f"dockerd exited with {engine._process.returncode}:\n{engine.log_tail()}")
        if ping(engine.url, timeout=1.0):
            return
        time.sleep(0.05)
    raise DockerdStartError(f"dockerd did not answer within {timeout}s:\n{engine.log_tail()}")


# --------------------------------------------------------------------------- slots & networking


def _slot_subnet(slot: int) -> ipaddress.IPv4Network:
    return ipaddress.IPv4Network(f"10.{_FIRST_OCTET + slot}.0.0/16")


def _pool(subnet: ipaddress.IPv4Network) -> str:
    """User-defined networks come from the lower half; the default bridge sits in the top /24."""
    return str(next(subnet.subnets(new_prefix=17)))


def _bridge_address(subnet: ipaddress.IPv4Network) -> str:
    top = list(subnet.subnets(new_prefix=24))[-1]
    return f"{top.network_address + 1}/24"


def _acquire_slot(root: Path) -> tuple[int, int]:
    """Lock the first usable slot and record `root` in it; a slot whose previous holder died
    is cleaned first, unless that holder's dockerd still runs (then the slot is skipped)."""
    SLOT_DIR.mkdir(mode=0o755, exist_ok=True)
    for slot in range(SLOT_COUNT):
        fd = os.open(SLOT_DIR / f"{slot}.lock", os.O_CREAT | os.O_RDWR, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            continue
        subnet = _slot_subnet(slot)
        previous = os.pread(fd, 4096, 0).decode(errors="replace").strip()
        if Path(f"/sys/class/net/llo-d{slot}").exists():
            if previous and _processes_under(Path(previous)):
                os.close(fd)  # an orphaned dockerd of a dead session still uses it
                continue
            # Our bridge outlived its session: its networks' bridges and its files are ours.
            _remove_bridges(subnet, f"llo-d{slot}")
            if previous.startswith("/tmp/llod"):
                _unmount_under(Path(previous))
                shutil.rmtree(previous, ignore_errors=True)
        if _route_overlaps(subnet):
            os.close(fd)
            continue
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(root).encode(), 0)
        return slot, fd
    raise DockerdStartError(f"no free dockerd slot among {SLOT_COUNT} in {SLOT_DIR}")


def _ip_json(*args: str) -> list[dict[str, object]]:
    out = subprocess.run(["ip", "-j", *args], check=True, capture_output=True, text=True).stdout
    parsed: list[dict[str, object]] = json.loads(out or "[]")
    return parsed


def _route_overlaps(subnet: ipaddress.IPv4Network) -> bool:
    for route in _ip_json("-4", "route", "show"):
        dst = str(route.get("dst", "default"))
        if dst == "default":
            continue
        with contextlib.suppress(ValueError):
            if ipaddress.IPv4Network(dst, strict=False).overlaps(subnet):
                return True
    return False


def _create_bridge(name: str, subnet: ipaddress.IPv4Network) -> None:
    subprocess.run(["ip", "link", "add", "name", name, "type", "bridge"], check=True)
    subprocess.run(["ip", "addr", "add", _bridge_address(subnet), "dev", name], check=True)
    subprocess.run(["ip", "link", "set", name, "up"], check=True)


def _remove_bridges(subnet: ipaddress.IPv4Network, own_bridge: str) -> None:
    """Delete our bridge and every bridge (br-<id> of user-defined networks) in our range."""
    doomed = {own_bridge}
    for link in _ip_json("-4", "addr", "show"):
        ifname = str(link.get("ifname", ""))
        infos = link.get("addr_info")
        for info in infos if isinstance(infos, list) else []:
            with contextlib.suppress(ValueError, KeyError, TypeError):
                if ipaddress.IPv4Address(info["local"]) in subnet:
                    doomed.add(ifname)
    for ifname in sorted(doomed):
        if Path(f"/sys/class/net/{ifname}/bridge").exists():
            subprocess.run(["ip", "link", "del", ifname], check=False, capture_output=True)


# --------------------------------------------------------------------------- leftovers


def _processes_under(root: Path) -> list[int]:
    """PIDs whose argv names `root`: our dockerd and what it spawned (containerd, shims)."""
    marker = str(root).encode()
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes()
        except OSError:
            continue
        if marker in cmdline:
            pids.append(int(proc.name))
    return pids


def _kill_processes_under(root: Path) -> None:
    """SIGKILL what our dockerd spawned and left behind (containerd, shims)."""
    for pid in _processes_under(root):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)


def _unmount_under(root: Path) -> None:
    """Lazily unmount overlay and nsfs mounts below `root`, deepest first."""
    prefix = str(root)
    mounts: list[str] = []
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/mountinfo").read_text().splitlines():
            fields = line.split(" ")
            if len(fields) > 4:
                point = fields[4].encode().decode("unicode_escape")  # \040 for spaces
                if point == prefix or point.startswith(prefix + "/"):
                    mounts.append(point)
    for point in sorted(mounts, key=len, reverse=True):
        subprocess.run(["umount", "-l", point], check=False, capture_output=True)
