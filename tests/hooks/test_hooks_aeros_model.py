"""The aerOS model's defaults, as the HLO → LLO API chain delivers them (issue 10, points 1-2).

The LLO API marshals with Go's `omitempty`: `false` never arrives, and an unset registry or
overlay arrives as an empty object. These tests pin what such a spec means to the hooks and to
the IE API; tests/hlo runs the same shapes through the whole stack.
"""

from __future__ import annotations

from typing import Any

import pytest

from hooks.resources import SCDSpec, read_scd
from hooks.servicecomponent import build_container_spec
from ieapi.contract import ContainerSpec, NetworkOverlay, RegistryAuth, dump_for_ie
from ieapi.desired import desired_container
from ieapi.errors import InvalidRequestError
from ieapi.settings import Settings as IEApiSettings

SELECTED = {"id": "urn:ngsi-ld:InfrastructureElement:X:1", "hostname": "ie-x"}


def _scd(**spec: Any) -> dict[str, Any]:
    return {"metadata": {"name": "web", "namespace": "default",
                         "labels": {"app.kubernetes.io/part-of": "Service_1"}},
            "spec": {"selectedIE": SELECTED, "image": "busybox:1", **spec}}


def test_absent_expose_ports_publishes_nothing() -> None:
    """exposePorts absent is false everywhere: SCD model, IE contract, Docker bindings."""
    assert SCDSpec.model_validate({"selectedIE": SELECTED, "image": "x"}).expose_ports is False
    spec = ContainerSpec.model_validate({"image": "busybox:1", "ports": [{"number": 80}]})
    assert spec.expose_ports is False
    desired = desired_container("ns.web", spec, IEApiSettings(token="t", ie_id="ie"))
    assert desired.port_bindings == {}
    sent = build_container_spec(read_scd(_scd(ports=[{"number": 80, "protocol": "TCP"}])))
    assert dump_for_ie(sent)["exposePorts"] is False  # always sent explicitly to the IE


def test_expose_ports_true_publishes() -> None:
    sent = build_container_spec(read_scd(_scd(ports=[{"number": 80}], exposePorts=True)))
    desired = desired_container("ns.web", sent, IEApiSettings(token="t", ie_id="ie"))
    assert desired.port_bindings == {"80/tcp": 80}


@pytest.mark.parametrize("field", ["imageRegistry", "networkOverlay"])
def test_empty_object_is_absent(field: str) -> None:
    scd = read_scd(_scd(**{field: {}}))
    assert scd.spec is not None
    assert scd.spec.image_registry is None
    assert scd.spec.network_overlay is None
    body = dump_for_ie(build_container_spec(scd))
    assert "registryAuth" not in body
    assert "networkOverlay" not in body


def test_empty_objects_sent_to_the_ie_mean_nothing_either() -> None:
    """A direct caller of the IE API gets the same rule: no anonymous-credential login, no
    overlay warning."""
    spec = ContainerSpec.model_validate({"image": "busybox:1", "registryAuth": {},
                                         "networkOverlay": {}, "service": "s", "alias": "a"})
    assert spec.registry_auth is None
    assert spec.network_overlay is None
    desired = desired_container("ns.web", spec, IEApiSettings(token="t", ie_id="ie"))
    assert desired.auth is None
    assert desired.warnings == []


def test_non_empty_objects_are_kept() -> None:
    scd = read_scd(_scd(imageRegistry={"username": "u", "password": "p"},
                        networkOverlay={"internalIp": "10.8.0.2/24"}))
    assert scd.spec is not None
    assert scd.spec.image_registry is not None
    assert scd.spec.image_registry.username == "u"
    assert scd.spec.network_overlay == NetworkOverlay(internal_ip="10.8.0.2/24")
    spec = build_container_spec(scd)
    assert spec.network_overlay is not None
    assert spec.registry_auth is not None
    # A non-empty overlay is applied, so the IE refuses an incomplete one, naming the field
    # (issue 11; the hooks refuse it first, with OverlayReady=False BadAddress).
    with pytest.raises(InvalidRequestError) as refused:
        desired_container("ns.web", spec, IEApiSettings(token="t", ie_id="ie"))
    assert refused.value.field == "networkOverlay.allowedIps"
    without_overlay = spec.model_copy(update={"network_overlay": None})
    desired = desired_container("ns.web", without_overlay, IEApiSettings(token="t", ie_id="ie"))
    assert desired.auth == {"username": "u", "password": "p"}  # the HLO sends no url


def test_is_empty_sees_every_field() -> None:
    assert RegistryAuth().is_empty()
    for auth in (RegistryAuth(url="r"), RegistryAuth(username="u"), RegistryAuth(password="p")):
        assert not auth.is_empty()
    assert NetworkOverlay().is_empty()
    for name in NetworkOverlay.model_fields:
        value: object = 0 if name in ("mtu", "persistent_keepalive") else "x"
        assert not NetworkOverlay.model_validate({name: value}).is_empty(), name
