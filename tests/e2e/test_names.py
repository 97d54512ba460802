"""Names the aerOS HLO makes (issue 10, point 3): `aeros-` + an NGSI-LD id, often longer than 63
characters, with dots when the id has them. They run, and peers find them on the service
network through Docker's real embedded DNS: by the CR name when DNS can carry it, else by the
alias the status shows (hooks/names.py)."""

from __future__ import annotations

import pytest

from hooks.names import container_key, dns_alias
from testbed.stack import IE, JSON, NAMESPACE, Stack
from tests.e2e.helpers import assert_one_container_per, container_of, delete_and_wait, finish_job

pytestmark = [pytest.mark.e2e, pytest.mark.docker]

PORT = 8080
SERVICE = "Service_demo.app"
DOTTED = "aeros-service-demo.app-component-db.v1"             # labels fit: its own alias
LONG = "aeros-service-demo-app-component-" + "cache" * 8       # one 73-character label


def _httpd(name: str, ie: IE, image: str, component: str) -> JSON:
    return Stack.scd(name, ie, image, service=SERVICE, component=component, cliArgs=[
        {"key": "httpd"}, {"key": "-f"}, {"key": "-p", "value": str(PORT)},
        {"key": "-h", "value": "/www"}])


def _fetch(name: str, ie: IE, image: str, hosts: list[str], tries: int) -> JSON:
    """A job that fetches every host's page; exits 0 only when all answered."""
    urls = " ".join(f"http://{h}:{PORT}/" for h in hosts)
    script = (f"for u in {urls}; do ok=1; for i in $(seq {tries}); do "
              "wget -q -O- $u >/dev/null && ok=0 && break; sleep 1; done; "
              "[ $ok = 0 ] || exit 1; done")
    return Stack.scd(name, ie, image, service=SERVICE, component=f"Service_demo.app_{name}",
                     isJob=True, cliArgs=[{"key": "sh"}, {"key": "-c", "value": script}])


def test_hlo_names_run_and_peers_find_them(stack: Stack, ie: IE, busybox_image: str) -> None:
    stack.driver.apply(_httpd(DOTTED, ie, busybox_image, "Service_demo.app_Component_db.v1"))
    stack.driver.apply(_httpd(LONG, ie, busybox_image, "Service_demo-app_Component_cache"))
    stack.driver.run_until(lambda: stack.phase(DOTTED) == "Running"
                           and stack.phase(LONG) == "Running", timeout=60)

    dotted, long_ = stack.scd_status(DOTTED), stack.scd_status(LONG)
    assert dotted["names"] == {"container": f"{NAMESPACE}.{DOTTED}", "alias": DOTTED}
    alias = dns_alias(NAMESPACE, LONG)
    assert alias != LONG
    assert long_["names"] == {"container": container_key(NAMESPACE, LONG), "alias": alias}
    assert container_of(stack, DOTTED).name == f"{ie.prefix}-{NAMESPACE}.{DOTTED}"
    network = dotted["container"]["network"]
    assert network == long_["container"]["network"]
    for name, expected in ((DOTTED, DOTTED), (LONG, alias)):
        attrs = container_of(stack, name).attrs
        assert expected in attrs["NetworkSettings"]["Networks"][network]["Aliases"]

    # A peer reaches the dotted component by its CR name and the long one by its alias...
    stack.driver.apply(_fetch("probe-ok", ie, busybox_image, [DOTTED, alias], tries=10))
    assert finish_job(stack, "probe-ok")["container"]["exitCode"] == 0
    # ...but not by the long CR name: a DNS label longer than 63 cannot be asked for.
    stack.driver.apply(_fetch("probe-long-name", ie, busybox_image, [LONG], tries=2))
    assert finish_job(stack, "probe-long-name")["container"]["exitCode"] == 1

    live = [DOTTED, LONG, "probe-ok", "probe-long-name"]
    assert_one_container_per(stack, live)
    for name in live:
        delete_and_wait(stack, name)
    assert_one_container_per(stack, [])
