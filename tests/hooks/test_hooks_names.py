"""hooks/names.py: the container name and DNS alias an SCD gets on its IE (issue 10, point 3).

Any Kubernetes object name must run: up to 253 characters, dots allowed. The rules are checked
here on the pure functions; tests/hlo runs such names through the CRD API server, the IE API
and Docker's embedded DNS.
"""

from __future__ import annotations

import itertools
import re

import pytest
from pydantic import ValidationError

from hooks.names import DNS_LABEL_MAX, DNS_NAME_MAX, alias_fits, container_key, dns_alias
from ieapi.contract import ContainerSpec, is_valid_container_name

DNS_1123_SUBDOMAIN = re.compile(
    r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")

NAMES = [
    "web",
    "service-1-mongo",
    "a" * 63,
    "aeros-service-demo.app-component-web.v1",          # an NGSI-LD id with dots
    "aeros-service-my-app-component-" + "x" * 40,       # 71: the HLO's long names
    "b." + "c" * 100 + ".d",                            # one overlong label among short ones
    ".".join(["e" * 63] * 4)[:253].rstrip("."),          # 253, every label fits
    "f" * 253,                                           # 253, one label
    "g" * 200,
]


@pytest.mark.parametrize("name", NAMES)
def test_derived_names_fit_docker_and_dns(name: str) -> None:
    assert DNS_1123_SUBDOMAIN.match(name)  # a valid object name
    assert len(name) <= 253
    key = container_key("default", name)
    assert is_valid_container_name(key)
    alias = dns_alias("default", name)
    assert alias_fits(alias)
    assert len(alias) <= DNS_NAME_MAX
    assert all(len(label) <= DNS_LABEL_MAX for label in alias.split("."))
    ContainerSpec(image="busybox:1", service="s", alias=alias)  # the IE API takes it
    assert container_key("default", name) == key  # deterministic
    assert dns_alias("default", name) == alias


def test_names_that_fit_are_kept_exactly() -> None:
    """Every SCD valid before (a DNS label) keeps its container name and alias, and a dotted
    name whose labels fit is its own alias: peers find it by the CR name."""
    assert container_key("default", "service-1-mongo") == "default.service-1-mongo"
    assert dns_alias("default", "service-1-mongo") == "service-1-mongo"
    dotted = "aeros-service-demo.app-component-web.v1"
    assert dns_alias("default", dotted) == dotted
    every_label_fits = ".".join(["e" * 63] * 4)[:253].rstrip(".")
    assert dns_alias("default", every_label_fits) == every_label_fits


def test_cut_names_keep_a_readable_head_and_a_hash() -> None:
    name = "aeros-service-my-app-component-" + "x" * 40
    alias = dns_alias("default", name)
    assert alias.startswith("aeros-service-my-app-component-xxxx")
    assert re.fullmatch(r"[-a-z0-9]{1,54}-[0-9a-f]{8}", alias)
    key = container_key("default", "f" * 253)
    assert len(key) == 200
    assert key.startswith("default.ffff")
    assert re.fullmatch(r"default\.f+_[0-9a-f]{10}", key)
    assert container_key("default", "g" * 192) == "default." + "g" * 192  # 200: fits
    assert "_" in container_key("default", "g" * 193)


def test_no_two_scds_share_a_name() -> None:
    """Distinct (namespace, name) pairs give distinct container names, and distinct names in
    one namespace give distinct aliases, also when they only differ beyond the cut."""
    long_a = "h" * 240 + "-a"
    long_b = "h" * 240 + "-b"
    names = [*NAMES, long_a, long_b, "h" * 242, "x" * 70 + "1", "x" * 70 + "2"]
    pairs = list(itertools.product(["default", "demo"], names))
    keys = {container_key(ns, n) for ns, n in pairs}
    assert len(keys) == len(pairs)
    aliases = {dns_alias("default", n) for n in names}
    assert len(aliases) == len(names)


def test_a_cut_container_name_never_equals_an_uncut_one() -> None:
    """Cut names carry `_`, which no Kubernetes name or namespace has."""
    cut = container_key("default", "f" * 253)
    assert "_" in cut
    assert all("_" not in container_key("default", n) for n in NAMES if len(n) <= 190)


@pytest.mark.parametrize("alias", ["a" * 64, "b." + "c" * 64, "x" * 254, "a..b", ".a", "a b"])
def test_the_ie_api_refuses_aliases_dns_cannot_carry(alias: str) -> None:
    with pytest.raises(ValidationError):
        ContainerSpec(image="busybox:1", service="s", alias=alias)
