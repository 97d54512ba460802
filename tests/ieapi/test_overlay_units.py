"""The overlay's pure parts: validation (400 naming the field), the mode an IE picks, the
handshake verdict and its status buckets, the `wg show dump` parser, secrets in repr/errors."""

from __future__ import annotations

import base64
import os
from collections.abc import Sequence
from typing import Any

import pytest

from ieapi import overlay as overlay_io
from ieapi.contract import ContainerSpec, NetworkOverlay, OverlayReason
from ieapi.desired import desired_container
from ieapi.errors import InvalidRequestError
from ieapi.overlay import Overlays, ToolError, host_name, parse_dump
from ieapi.overlayspec import (
    DEFAULT_KEEPALIVE_SECONDS,
    Mode,
    OverlayInputError,
    Preference,
    choose_mode,
    handshake_age_bucket,
    handshake_verdict,
    is_empty,
    parse,
)
from ieapi.settings import Settings

PRIVATE = base64.b64encode(bytes(range(32))).decode()
PUBLIC = base64.b64encode(bytes(range(1, 33))).decode()


def overlay(**changes: Any) -> dict[str, Any]:
    values: dict[str, Any] = {
        "internalIp": "10.8.0.3", "dns": "10.8.0.1", "publicKey": PUBLIC,
        "privateKey": PRIVATE, "endpoint": "hub.example.org:51820", "allowedIps": "10.8.0.0/24"}
    values.update(changes)
    return {k: v for k, v in values.items() if v is not None}


def test_a_valid_overlay_parses_with_defaults() -> None:
    config = parse(NetworkOverlay.model_validate(overlay()))
    assert str(config.address) == "10.8.0.3/32"  # the HLO gives a bare address
    assert [str(n) for n in config.allowed_ips] == ["10.8.0.0/24"]
    assert config.keepalive == DEFAULT_KEEPALIVE_SECONDS
    assert config.mtu == 1420
    text = config.wg_config()
    assert f"PrivateKey = {PRIVATE}" in text
    assert "Endpoint = hub.example.org:51820" in text
    assert PRIVATE not in repr(config)  # a config in a log line or traceback reveals nothing


def test_prefix_ipv6_and_several_cidrs() -> None:
    config = parse(NetworkOverlay.model_validate(overlay(
        internalIp="10.8.0.3/24", allowedIps="10.8.0.0/24, fd00::/64,10.8.0.0/24",
        endpoint="[fd00::1]:51820", persistentKeepalive=0, mtu=1380)))
    assert str(config.address) == "10.8.0.3/24"
    assert [str(n) for n in config.allowed_ips] == ["10.8.0.0/24", "fd00::/64"]
    assert "PersistentKeepalive" not in config.wg_config()
    assert config.mtu == 1380


@pytest.mark.parametrize(("changes", "field", "reason"), [
    ({"privateKey": "not-a-key"}, "privateKey", OverlayReason.BAD_KEY),
    ({"privateKey": base64.b64encode(b"x" * 31).decode()}, "privateKey", OverlayReason.BAD_KEY),
    ({"publicKey": PUBLIC[:-2]}, "publicKey", OverlayReason.BAD_KEY),
    ({"publicKey": None}, "publicKey", OverlayReason.BAD_KEY),
    ({"internalIp": "10.8.0.300"}, "internalIp", OverlayReason.BAD_ADDRESS),
    ({"internalIp": None}, "internalIp", OverlayReason.BAD_ADDRESS),
    ({"dns": "dns.example"}, "dns", OverlayReason.BAD_ADDRESS),
    ({"allowedIps": "10.8.0.0/33"}, "allowedIps", OverlayReason.BAD_ADDRESS),
    ({"allowedIps": "10.8.0.0/24,"}, "allowedIps", OverlayReason.BAD_ADDRESS),
    ({"endpoint": "hub.example.org"}, "endpoint", OverlayReason.BAD_ENDPOINT),
    ({"endpoint": "hub.example.org:0"}, "endpoint", OverlayReason.BAD_ENDPOINT),
    ({"endpoint": "[fd00::zz]:51820"}, "endpoint", OverlayReason.BAD_ENDPOINT),
    ({"endpoint": "bad_host:51820"}, "endpoint", OverlayReason.BAD_ENDPOINT),
    ({"mtu": 576}, "mtu", OverlayReason.SETUP_FAILED),
])
def test_bad_fields_are_named(changes: dict[str, Any], field: str,
                              reason: OverlayReason) -> None:
    with pytest.raises(OverlayInputError) as caught:
        parse(NetworkOverlay.model_validate(overlay(**changes)))
    assert caught.value.field == f"networkOverlay.{field}"
    assert caught.value.reason is reason
    assert PRIVATE not in caught.value.message


def test_the_ie_refuses_a_bad_overlay_with_a_400_naming_the_field() -> None:
    spec = ContainerSpec.model_validate({"image": "busybox", "networkOverlay": overlay(
        privateKey="AAAA")})
    with pytest.raises(InvalidRequestError) as caught:
        desired_container("ns.x", spec, Settings(token="t"))
    assert caught.value.field == "networkOverlay.privateKey"
    assert "AAAA" not in caught.value.message


def test_empty_overlay_means_none_and_the_hash_ignores_the_private_key() -> None:
    assert ContainerSpec.model_validate(
        {"image": "busybox", "networkOverlay": {}}).network_overlay is None
    assert is_empty(None)
    assert is_empty(NetworkOverlay())
    plain = ContainerSpec.model_validate({"image": "busybox"})
    with_empty = ContainerSpec.model_validate({"image": "busybox", "networkOverlay": {}})
    assert plain.spec_hash() == with_empty.spec_hash()
    one = ContainerSpec.model_validate({"image": "busybox", "networkOverlay": overlay()})
    rotated = ContainerSpec.model_validate({"image": "busybox", "networkOverlay": overlay(
        privateKey=base64.b64encode(bytes(32)).decode())})
    moved = ContainerSpec.model_validate({"image": "busybox", "networkOverlay": overlay(
        internalIp="10.8.0.4")})
    assert one.spec_hash() == rotated.spec_hash() != plain.spec_hash()
    assert moved.spec_hash() != one.spec_hash()


def test_plan_sets_dns_and_the_address_label_never_the_key() -> None:
    spec = ContainerSpec.model_validate({"image": "busybox", "networkOverlay": overlay()})
    desired = desired_container("ns.x", spec, Settings(token="t"))
    assert desired.dns == ["10.8.0.1"]
    assert desired.labels["llo.aeros-project.eu/overlay-address"] == "10.8.0.3/32"
    assert PRIVATE not in repr(desired)
    assert all(PRIVATE not in value for value in desired.labels.values())


@pytest.mark.parametrize(("preference", "kernel", "userspace", "mode"), [
    (Preference.AUTO, True, True, Mode.KERNEL),
    (Preference.AUTO, False, True, Mode.USERSPACE),
    (Preference.AUTO, False, False, Mode.NONE),
    (Preference.KERNEL, False, True, Mode.NONE),  # forced: no silent fallback
    (Preference.USERSPACE, True, True, Mode.USERSPACE),
    (Preference.USERSPACE, True, False, Mode.NONE),
    (Preference.OFF, True, True, Mode.NONE),
])
def test_mode_selection(preference: Preference, kernel: bool, userspace: bool,
                        mode: Mode) -> None:
    assert choose_mode(preference, kernel=kernel, userspace=userspace) is mode


@pytest.mark.parametrize(("keepalive", "age", "since", "up", "reason"), [
    (25, 5, 100.0, True, OverlayReason.UP),
    (25, 180, 1000.0, True, OverlayReason.UP),
    (25, 181, 1000.0, False, OverlayReason.ENDPOINT_UNREACHABLE),
    (25, None, 3.0, False, OverlayReason.HANDSHAKE_PENDING),
    (25, None, 31.0, False, OverlayReason.ENDPOINT_UNREACHABLE),
    (0, None, 1000.0, True, OverlayReason.UP),
])
def test_handshake_verdict(keepalive: int, age: int | None, since: float, up: bool,
                           reason: OverlayReason) -> None:
    got = handshake_verdict(keepalive=keepalive, age_seconds=age, since_setup_seconds=since,
                            grace_seconds=30, endpoint="127.0.0.1:1")
    assert got[:2] == (up, reason)
    assert str(age) not in got[2] or age is None  # the message never carries the age


def test_handshake_buckets_are_stable_while_the_tunnel_lives() -> None:
    assert {handshake_age_bucket(age) for age in range(0, 181)} == {"<3m"}
    assert handshake_age_bucket(None) == "never"
    assert handshake_age_bucket(400) == "<10m"
    assert handshake_age_bucket(3000) == "<1h"
    assert handshake_age_bucket(4000) == ">1h"


def test_parse_dump_reads_the_peer_and_skips_the_interface_line() -> None:
    dump = (f"{PRIVATE}\t{PUBLIC}\t40000\toff\n"
            f"{PUBLIC}\t(none)\t127.0.0.1:51820\t10.8.0.0/24\t1700000000\t92\t180\t25\n")
    reading = parse_dump(dump)
    assert reading is not None
    assert (reading.endpoint, reading.latest_handshake, reading.keepalive) == (
        "127.0.0.1:51820", 1700000000, 25)
    assert parse_dump(f"{PRIVATE}\t{PUBLIC}\t40000\toff\n") is None


def test_scrub_removes_the_key_in_base64_and_hex() -> None:
    config = parse(NetworkOverlay.model_validate(overlay()))
    raw_hex = base64.b64decode(PRIVATE).hex()
    assert config.scrub(f"bad {PRIVATE} and {raw_hex}") == "bad (hidden) and (hidden)"


def test_host_side_names_fit_the_kernel_limit() -> None:
    assert len(host_name("f" * 64)) == 15


class RecordingRunner:
    """Stands in for `ieapi.overlay.run`: records every command (argv and stdin) and answers
    like the tools would on an IE with the kernel module (which this machine lacks)."""

    def __init__(self) -> None:
        self.calls: list[tuple[list[str], str | None]] = []
        self.interface_present = False
        self.dump = (f"{PRIVATE}\t{PUBLIC}\t51000\toff\n"
                     f"{PUBLIC}\t(none)\t192.0.2.1:51820\t10.8.0.0/24\t0\t0\t148\t25\n")

    def __call__(self, argv: Sequence[str], *, stdin: str | None = None,
                 timeout: float = 10.0) -> str:
        argv = list(argv)
        self.calls.append((argv, stdin))
        tail = argv[argv.index("--") + 1:] if "--" in argv else argv
        if tail[:3] == ["ip", "link", "show"]:
            if tail[-1] == "wg0" and self.interface_present:
                return ""
            raise ToolError("Device does not exist")
        if tail[:3] == ["ip", "link", "set"] and "name" in tail:
            self.interface_present = True
        if tail[:2] == ["wg", "show"]:
            return self.dump
        return ""

    def commands(self) -> list[str]:
        return [" ".join(argv) for argv, _ in self.calls]


def test_kernel_mode_creates_outside_moves_in_and_keeps_the_key_off_argv(
        monkeypatch: pytest.MonkeyPatch) -> None:
    runner = RecordingRunner()
    monkeypatch.setattr(overlay_io, "run", runner)
    overlays = Overlays(Settings(token="t"), mode=Mode.KERNEL)
    container_id = "c" * 64
    pid = os.getpid()  # a live process: its /proc/<pid>/ns/net exists
    attrs = {"Id": container_id, "State": {"Running": True, "Pid": pid}}
    config = parse(NetworkOverlay.model_validate(overlay()))
    ns = f"nsenter --net=/proc/{pid}/ns/net --"
    link = host_name(container_id)

    status = overlays.ensure("ns.web", attrs, config)

    assert runner.commands() == [
        f"{ns} ip link show dev wg0",
        f"ip link show dev {link}",                  # nothing half-made to discard
        f"ip link add {link} type wireguard",        # in the IE's namespace: its UDP socket too
        f"wg syncconf {link} /dev/stdin",
        f"ip link set dev {link} netns {pid}",
        f"{ns} ip link set dev {link} name wg0",
        f"{ns} ip link set dev wg0 mtu 1420 up",
        f"{ns} ip address replace 10.8.0.3/32 dev wg0",
        f"{ns} ip route replace 10.8.0.0/24 dev wg0",
        f"{ns} wg show wg0 dump",                    # the kernel's interface: read in its netns
    ]
    assert all(PRIVATE not in command for command in runner.commands())
    assert [stdin for _, stdin in runner.calls if stdin] == [config.wg_config()]
    assert (status.mode, status.state.value, status.reason) == (
        "kernel", "pending", OverlayReason.HANDSHAKE_PENDING)

    # The same config again: only looked at. A rotated key: applied in place, in the netns.
    runner.calls.clear()
    overlays.ensure("ns.web", attrs, config)
    assert runner.commands() == [f"{ns} ip link show dev wg0", f"{ns} wg show wg0 dump"]
    runner.calls.clear()
    rotated = parse(NetworkOverlay.model_validate(overlay(
        privateKey=base64.b64encode(bytes(32)).decode())))
    overlays.ensure("ns.web", attrs, rotated)
    assert runner.commands()[1] == f"{ns} wg syncconf wg0 /dev/stdin"
    assert overlays.wanted("ns.web") is rotated


def test_a_failed_setup_is_reported_scrubbed_and_cleaned(
        monkeypatch: pytest.MonkeyPatch) -> None:
    runner = RecordingRunner()

    def failing(argv: Sequence[str], *, stdin: str | None = None, timeout: float = 10.0) -> str:
        if list(argv)[:2] == ["wg", "syncconf"]:
            runner.calls.append((list(argv), stdin))
            raise ToolError(f"wg syncconf: Line unrecognized: `PrivateKey={PRIVATE}'")
        return runner(argv, stdin=stdin, timeout=timeout)

    monkeypatch.setattr(overlay_io, "run", failing)
    overlays = Overlays(Settings(token="t"), mode=Mode.KERNEL)
    attrs = {"Id": "d" * 64, "State": {"Running": True, "Pid": os.getpid()}}
    status = overlays.ensure("ns.web", attrs, parse(NetworkOverlay.model_validate(overlay())))
    assert (status.state.value, status.reason) == ("down", OverlayReason.SETUP_FAILED)
    assert PRIVATE not in status.message
    assert f"ip link show dev {host_name('d' * 64)}" in runner.commands()
    assert runner.commands()[-1].endswith("ip link del dev wg0")  # nothing left half-made


def test_without_wireguard_or_a_running_container_nothing_is_run(
        monkeypatch: pytest.MonkeyPatch) -> None:
    runner = RecordingRunner()
    monkeypatch.setattr(overlay_io, "run", runner)
    config = parse(NetworkOverlay.model_validate(overlay()))
    none = Overlays(Settings(token="t"), mode=Mode.NONE).ensure(
        "ns.web", {"Id": "e" * 64, "State": {"Running": True, "Pid": 1}}, config)
    assert (none.state.value, none.reason) == ("down", OverlayReason.UNSUPPORTED)
    stopped = Overlays(Settings(token="t"), mode=Mode.KERNEL).ensure(
        "ns.web", {"Id": "e" * 64, "State": {"Running": False, "Pid": 0}}, config)
    assert (stopped.state.value, stopped.reason) == (
        "pending", OverlayReason.CONTAINER_NOT_RUNNING)
    assert runner.calls == []
