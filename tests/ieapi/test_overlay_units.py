"""The overlay's pure parts: validation (400 naming the field), the mode an IE picks, the
handshake verdict and its status buckets, the `wg show dump` parser, secrets in repr/errors."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from ieapi.contract import ContainerSpec, NetworkOverlay, OverlayReason
from ieapi.desired import desired_container
from ieapi.errors import InvalidRequestError
from ieapi.overlay import host_name, parse_dump
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
