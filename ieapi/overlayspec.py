"""The WireGuard overlay of a component, free of I/O: validation, the mode an IE uses, and
what the interface must look like.

Shared by the IE API (which applies it) and the hooks (which refuse bad input before any call
and turn the IE's overlay report into the `OverlayReady` condition). The values are the ones
the aerOS HLO fills: a client of a per-service hub (`publicKey`/`endpoint` are the hub's,
`allowedIps` the service's subnet, `dns` the hub's first address).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import ipaddress
import re
from dataclasses import dataclass, field
from enum import StrEnum

from ieapi.contract import NetworkOverlay, OverlayReason

# The interface name a component sees in its container.
INTERFACE = "wg0"
# Keepalive applied when the spec has none: an IE behind NAT is unreachable for the hub until
# it sends, and the liveness of the tunnel is judged from handshakes (WireGuard's own
# recommendation for peers behind NAT is 25 s). 0 in the spec disables it.
DEFAULT_KEEPALIVE_SECONDS = 25
DEFAULT_MTU = 1420  # WireGuard's default: 1500 minus the largest (IPv6) encapsulation
# A WireGuard session key is rejected after 180 s (REJECT_AFTER_TIME); a live tunnel with a
# keepalive re-handshakes every 120 s, so a handshake older than this means the hub is gone.
HANDSHAKE_FRESH_SECONDS = 180
MIN_MTU, MAX_MTU = 1280, 65535  # 1280: the smallest MTU that can carry IPv6

# RFC 1123 host name (labels of letters, digits, hyphens): an endpoint may name the hub.
_HOSTNAME = re.compile(
    r"^(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
    r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?$")
_ENDPOINT = re.compile(r"^(?:\[(?P<v6>[0-9A-Fa-f:.]+)\]|(?P<host>[^:\[\]]+)):(?P<port>[0-9]{1,5})$")

# Schema patterns published in the CRD (the IE and hooks apply the exact checks below).
KEY_PATTERN = r"^[A-Za-z0-9+/]{42}[AEIMQUYcgkosw048]=$"


class Mode(StrEnum):
    """How an IE provides WireGuard (reported by `GET /v1/info` as `wireguard`)."""

    KERNEL = "kernel"        # the kernel module: `ip link add type wireguard`
    USERSPACE = "userspace"  # `wireguard-go` with /dev/net/tun
    NONE = "none"            # neither: an overlay cannot be set up on this IE


class Preference(StrEnum):
    """`IEAPI_WIREGUARD`: what the operator allows."""

    AUTO = "auto"
    KERNEL = "kernel"
    USERSPACE = "userspace"
    OFF = "off"


def choose_mode(preference: Preference, *, kernel: bool, userspace: bool) -> Mode:
    """The mode to use. `auto` prefers the kernel (faster, no process to supervise); a forced
    mode the IE cannot provide is NONE rather than a silent fallback."""
    if preference is Preference.OFF:
        return Mode.NONE
    if preference is Preference.KERNEL:
        return Mode.KERNEL if kernel else Mode.NONE
    if preference is Preference.USERSPACE:
        return Mode.USERSPACE if userspace else Mode.NONE
    if kernel:
        return Mode.KERNEL
    return Mode.USERSPACE if userspace else Mode.NONE


class OverlayInputError(ValueError):
    """A field of networkOverlay that cannot be applied; `reason` says which kind."""

    def __init__(self, field_name: str, message: str, reason: OverlayReason) -> None:
        super().__init__(message)
        self.field = f"networkOverlay.{field_name}"
        self.message = message
        self.reason = reason


@dataclass(frozen=True)
class OverlayConfig:
    """A validated overlay, ready to apply. The private key never shows in repr()."""

    address: ipaddress.IPv4Interface | ipaddress.IPv6Interface
    dns: ipaddress.IPv4Address | ipaddress.IPv6Address | None
    public_key: str
    endpoint: str
    allowed_ips: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]
    mtu: int
    keepalive: int
    private_key: str = field(repr=False)

    def wg_config(self) -> str:
        """The `wg syncconf` text (holds the private key: only ever written to a pipe)."""
        lines = [
            "[Interface]",
            f"PrivateKey = {self.private_key}",
            "",
            "[Peer]",
            f"PublicKey = {self.public_key}",
            f"Endpoint = {self.endpoint}",
            f"AllowedIPs = {', '.join(str(net) for net in self.allowed_ips)}",
        ]
        if self.keepalive:
            lines.append(f"PersistentKeepalive = {self.keepalive}")
        return "\n".join(lines) + "\n"

    def fingerprint(self) -> str:
        """Identifies what is applied (to skip a no-op reconfiguration); reveals nothing."""
        return hashlib.sha256(
            f"{self.wg_config()}|{self.address}|{self.mtu}".encode()).hexdigest()

    def scrub(self, text: str) -> str:
        """`text` (e.g. a tool's error output) with the private key in any spelling removed."""
        raw = base64.b64decode(self.private_key)
        for secret in (self.private_key, raw.hex()):
            text = text.replace(secret, "(hidden)")
        return text


def is_empty(overlay: NetworkOverlay | None) -> bool:
    """`networkOverlay: {}` is what the HLO writes for a service without overlay."""
    return overlay is None or overlay.is_empty()


def _key(value: str | None, name: str) -> str:
    if not value:
        raise OverlayInputError(name, f"networkOverlay.{name} is required",
                                OverlayReason.BAD_KEY)
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raw = b""
    if len(raw) != 32 or base64.b64encode(raw).decode() != value:
        raise OverlayInputError(name, f"networkOverlay.{name} must be a WireGuard key: 32 bytes "
                                "in base64 (44 characters ending with '=')", OverlayReason.BAD_KEY)
    return value


def _endpoint(value: str | None) -> str:
    bad = OverlayInputError("endpoint", "networkOverlay.endpoint must be host:port (a host name, "
                            "an IPv4 address or [IPv6], and a port 1-65535)",
                            OverlayReason.BAD_ENDPOINT)
    match = _ENDPOINT.fullmatch(value or "")
    if match is None or not 1 <= int(match["port"]) <= 65535:
        raise bad
    if match["v6"] is not None:
        try:
            ipaddress.IPv6Address(match["v6"])
        except ValueError:
            raise bad from None
    elif not _HOSTNAME.fullmatch(match["host"]):
        raise bad
    return str(value)


def parse(overlay: NetworkOverlay) -> OverlayConfig:
    """Validate a non-empty overlay; raises OverlayInputError naming the first bad field."""
    bad_address = OverlayReason.BAD_ADDRESS
    if not overlay.internal_ip:
        raise OverlayInputError("internalIp", "networkOverlay.internalIp is required", bad_address)
    try:
        address = ipaddress.ip_interface(overlay.internal_ip.strip())
    except ValueError:
        raise OverlayInputError(
            "internalIp", "networkOverlay.internalIp must be an IP address, optionally with a "
            "prefix (10.8.0.2 or 10.8.0.2/24)", bad_address) from None
    dns = None
    if overlay.dns:
        try:
            dns = ipaddress.ip_address(overlay.dns.strip())
        except ValueError:
            raise OverlayInputError("dns", "networkOverlay.dns must be an IP address",
                                    bad_address) from None
    if not overlay.allowed_ips or not overlay.allowed_ips.strip():
        raise OverlayInputError("allowedIps", "networkOverlay.allowedIps is required",
                                bad_address)
    networks = []
    for item in overlay.allowed_ips.split(","):
        try:
            networks.append(ipaddress.ip_network(item.strip(), strict=False))
        except ValueError:
            raise OverlayInputError(
                "allowedIps", f"networkOverlay.allowedIps: {item.strip()!r} is not a CIDR "
                "(comma-separated, e.g. 10.8.0.0/24)", bad_address) from None
    mtu = overlay.mtu if overlay.mtu is not None else DEFAULT_MTU
    if not MIN_MTU <= mtu <= MAX_MTU:
        raise OverlayInputError("mtu", f"networkOverlay.mtu must be {MIN_MTU}-{MAX_MTU}",
                                OverlayReason.SETUP_FAILED)
    keepalive = overlay.persistent_keepalive
    keepalive = DEFAULT_KEEPALIVE_SECONDS if keepalive is None else keepalive
    if not 0 <= keepalive <= 65535:
        raise OverlayInputError("persistentKeepalive",
                                "networkOverlay.persistentKeepalive must be 0-65535",
                                OverlayReason.SETUP_FAILED)
    private = overlay.private_key.get_secret_value() if overlay.private_key else None
    return OverlayConfig(
        address=address, dns=dns,
        public_key=_key(overlay.public_key, "publicKey"),
        endpoint=_endpoint(overlay.endpoint),
        allowed_ips=tuple(dict.fromkeys(networks)),
        mtu=mtu, keepalive=keepalive,
        private_key=_key(private, "privateKey"))


def handshake_verdict(*, keepalive: int, age_seconds: int | None, since_setup_seconds: float,
                      grace_seconds: float, endpoint: str) -> tuple[bool, OverlayReason, str]:
    """(up, reason, message) of a configured interface from its latest handshake.

    Messages never hold the age itself (it changes on every read): the hooks copy them into a
    status that must not churn."""
    if age_seconds is not None and age_seconds <= HANDSHAKE_FRESH_SECONDS:
        return True, OverlayReason.UP, f"handshake with {endpoint} within the last 3 minutes"
    if keepalive == 0:
        return True, OverlayReason.UP, (
            "configured without persistentKeepalive: the handshake happens on first traffic")
    if age_seconds is not None:
        return False, OverlayReason.ENDPOINT_UNREACHABLE, (
            f"no handshake with {endpoint} for more than 3 minutes")
    if since_setup_seconds < grace_seconds:
        return False, OverlayReason.HANDSHAKE_PENDING, f"waiting for a handshake with {endpoint}"
    return False, OverlayReason.ENDPOINT_UNREACHABLE, (
        f"no handshake with {endpoint} within {grace_seconds:g} s of the setup")


def handshake_age_bucket(age_seconds: int | None) -> str:
    """The handshake age as a CR status can hold it: a few stable buckets instead of a number
    that changes on every sync. A live tunnel (keepalive) always reads `<3m`."""
    if age_seconds is None:
        return "never"
    for limit, label in ((HANDSHAKE_FRESH_SECONDS, "<3m"), (600, "<10m"), (3600, "<1h")):
        if age_seconds <= limit:
            return label
    return ">1h"
