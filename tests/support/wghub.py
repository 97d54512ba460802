"""A WireGuard hub like the one the aerOS HLO runs per service (service-overlay-network): a
WireGuard peer on the service's /24 at `.1`, forwarding between its clients, and a DNS
(dnsmasq) on the same address that knows every client's name.

Everything is real and stays on this machine: the hub lives in a network namespace the test
creates (`ip netns add`) and removes; its interface is made by `wireguard-go` in the host
namespace and moved into the hub's, so its UDP socket listens on the host (endpoint
`127.0.0.1:<port>`), exactly as the IE API does for components. Clients are the containers
under test; the hub forwards between them (`ip_forward` set in its own namespace only).
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import secrets
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

WG_SOCKET_DIR = Path("/var/run/wireguard")


def missing_tools() -> list[str]:
    """What this machine lacks for real overlays (the tests skip with this list)."""
    missing = [tool for tool in ("wireguard-go", "wg", "dnsmasq", "ip", "nsenter")
               if shutil.which(tool) is None]
    if not os.path.exists("/dev/net/tun"):
        missing.append("/dev/net/tun")
    if os.geteuid() != 0:
        missing.append("root")
    return missing


needs_wireguard = pytest.mark.skipif(bool(missing_tools()),
                                     reason=f"no real WireGuard here: missing {missing_tools()}")


def leftovers(container_id: str) -> list[str]:
    """Anything of a container's overlay still on the IE: its link in the IE's namespace, a
    wireguard-go process, a control socket (ieapi names them `wgl` + 12 hex of the id)."""
    name = f"wgl{container_id[:12]}"
    found = []
    if subprocess.run(["ip", "link", "show", "dev", name], capture_output=True,
                      check=False).returncode == 0:
        found.append(f"link {name}")
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if name.encode() in cmdline.read_bytes():
                found.append(f"process {cmdline.parent.name}")
        except OSError:
            continue
    if (WG_SOCKET_DIR / f"{name}.sock").exists():
        found.append(f"socket {name}.sock")
    return found


def genkey() -> tuple[str, str]:
    """(private, public) WireGuard keys made by `wg`."""
    private = subprocess.run(["wg", "genkey"], capture_output=True, text=True,
                             check=True).stdout.strip()
    public = subprocess.run(["wg", "pubkey"], input=private, capture_output=True, text=True,
                            check=True).stdout.strip()
    return private, public


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=10)


@dataclass
class Hub:
    """One service's hub. `client()` allocates a component's networkOverlay (like the HLO)."""

    workdir: Path
    netns: str = field(default_factory=lambda: f"llohub{secrets.token_hex(3)}")
    subnet: ipaddress.IPv4Network = field(default_factory=lambda: ipaddress.IPv4Network(
        f"10.{200 + secrets.randbelow(50)}.{secrets.randbelow(256)}.0/24"))
    port: int = field(default_factory=free_udp_port)
    link: str = field(default_factory=lambda: f"wglhub{secrets.token_hex(3)}")
    private_key: str = ""
    public_key: str = ""
    names: dict[str, str] = field(default_factory=dict)
    _wg: subprocess.Popen[bytes] | None = None
    _dns: subprocess.Popen[bytes] | None = None
    _next_host: int = 2

    @property
    def address(self) -> str:
        return str(self.subnet.network_address + 1)

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def hosts_file(self) -> Path:
        return self.workdir / "hosts"

    def start(self) -> Hub:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.hosts_file.write_text("")
        self.private_key, self.public_key = genkey()
        _ip("netns", "add", self.netns)
        try:
            _ip("-n", self.netns, "link", "set", "lo", "up")
            subprocess.run(["ip", "netns", "exec", self.netns, "sysctl", "-qw",
                            "net.ipv4.ip_forward=1"], check=True, timeout=10)
            self._wg = subprocess.Popen(
                ["wireguard-go", "-f", self.link], stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
                env={**os.environ, "LOG_LEVEL": "error"})
            sock = WG_SOCKET_DIR / f"{self.link}.sock"
            deadline = time.monotonic() + 10
            while not sock.exists():
                if time.monotonic() > deadline or self._wg.poll() is not None:
                    raise RuntimeError("the hub's wireguard-go did not start")
                time.sleep(0.05)
            subprocess.run(["wg", "set", self.link, "listen-port", str(self.port),
                            "private-key", "/dev/stdin"], input=self.private_key.encode(),
                           check=True, capture_output=True, timeout=10)
            _ip("link", "set", "dev", self.link, "netns", self.netns)
            _ip("-n", self.netns, "address", "add", f"{self.address}/{self.subnet.prefixlen}",
                "dev", self.link)
            _ip("-n", self.netns, "link", "set", "dev", self.link, "up")
            self._dns = subprocess.Popen(
                ["ip", "netns", "exec", self.netns, "dnsmasq", "--keep-in-foreground",
                 "--conf-file=/dev/null", "--no-resolv", "--no-hosts", "--user=root",
                 f"--addn-hosts={self.hosts_file}", f"--listen-address={self.address}",
                 "--bind-interfaces", f"--pid-file={self.workdir / 'dnsmasq.pid'}",
                 "--log-facility=-"],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                stderr=(self.workdir / "dnsmasq.log").open("ab"), start_new_session=True)
            # dnsmasq writes its pid file once its signal handlers are set: a SIGHUP (new
            # names) before that would kill it.
            deadline = time.monotonic() + 10
            while not (self.workdir / "dnsmasq.pid").exists():
                if time.monotonic() > deadline or self._dns.poll() is not None:
                    raise RuntimeError("the hub's dnsmasq did not start")
                time.sleep(0.05)
        except BaseException:
            self.stop()
            raise
        return self

    def add_peer(self, name: str, public_key: str) -> str:
        """Admit a component with its own key pair (as the HLO does); its overlay address,
        with `name` known to the hub's DNS."""
        ip = str(self.subnet.network_address + self._next_host)
        self._next_host += 1
        subprocess.run(["wg", "set", self.link, "peer", public_key, "allowed-ips", f"{ip}/32"],
                       check=True, capture_output=True, timeout=10)
        self.names[name] = ip
        self.hosts_file.write_text("".join(f"{a} {n}\n" for n, a in self.names.items()))
        if self._dns is None or self._dns.poll() is not None:
            raise RuntimeError("the hub's dnsmasq is not running")
        # dnsmasq re-reads --addn-hosts on SIGHUP; it runs under `ip netns exec`, which execs
        # it, so the PID is dnsmasq's own.
        os.kill(self._dns.pid, signal.SIGHUP)
        return ip

    def client(self, name: str, **extra: Any) -> dict[str, Any]:
        """A networkOverlay for a new component `name` (keys made, peer added, name in DNS)."""
        private, public = genkey()
        ip = self.add_peer(name, public)
        return {"internalIp": ip, "dns": self.address, "publicKey": self.public_key,
                "privateKey": private, "endpoint": self.endpoint,
                "allowedIps": str(self.subnet), **extra}

    def latest_handshakes(self) -> dict[str, int]:
        """Peer public key → latest handshake (epoch seconds, 0 = never), from the hub."""
        out = subprocess.run(["wg", "show", self.link, "latest-handshakes"], check=True,
                             capture_output=True, text=True, timeout=10).stdout
        return {key: int(stamp) for key, stamp in
                (line.split("\t") for line in out.strip().splitlines() if line)}

    def stop(self) -> None:
        """Stop both processes by PID and remove the namespace (its interface goes with it)."""
        for proc in (self._dns, self._wg):
            if proc is not None and proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(10)
        with contextlib.suppress(subprocess.CalledProcessError, subprocess.TimeoutExpired):
            _ip("netns", "del", self.netns)
        with contextlib.suppress(subprocess.CalledProcessError, subprocess.TimeoutExpired):
            _ip("link", "del", "dev", self.link)  # only if it never reached the namespace
