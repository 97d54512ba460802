"""What README's "Upgrading: what changed for existing objects" says, on a real API server:
an SCD stored while the CRD defaulted exposePorts to true keeps `exposePorts: true` after the
CRD is upgraded, the README's commands find it and turn it off, and a new SCD defaults to false.
The earlier CRD is today's with the old default (the one difference that matters here).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.hlo.test_hlo_shapes import SHAPES
from tests.support.crdserver import CrdApiServer

pytestmark = pytest.mark.k8s

ROOT = Path(__file__).resolve().parents[2]
SCD_CRD = ROOT / "crds" / "servicecomponentdockers.yaml"


def _old_crd() -> str:
    doc: dict[str, Any] = yaml.safe_load(SCD_CRD.read_text())
    spec = doc["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    assert spec["properties"]["exposePorts"]["default"] is False
    spec["properties"]["exposePorts"]["default"] = True
    return yaml.safe_dump(doc)


def _readme_block() -> list[str]:
    """The commands of README's upgrade note (the `bash` block after "List them")."""
    text = (ROOT / "README.md").read_text()
    section = text[text.index("### Upgrading: what changed for existing objects"):]
    block = re.search(r"```bash\n(.*?)```", section, re.DOTALL)
    assert block is not None
    return block.group(1).strip().split("\n  kubectl -n")


@pytest.fixture
def api() -> Iterator[CrdApiServer]:
    with CrdApiServer() as server:
        yield server


def _create(api: CrdApiServer, name: str) -> None:
    obj = json.loads(json.dumps(SHAPES["not-exposed"].object))  # the HLO did not expose it
    obj["metadata"]["name"] = name
    api.kubectl("create", "-f", "-", input=json.dumps(obj))


def _exposed(api: CrdApiServer, name: str) -> Any:
    return json.loads(api.kubectl("get", "scd", name, "-o", "json").stdout)["spec"].get(
        "exposePorts")


@pytest.mark.skipif(shutil.which("jq") is None, reason="jq not installed (Debian package jq)")
def test_stored_objects_keep_the_old_default_until_patched(api: CrdApiServer) -> None:
    api.kubectl("apply", "-f", "-", input=_old_crd())
    api.kubectl("wait", "--for=condition=Established", "--timeout=30s", "crd", "--all")
    _create(api, "stored-before")
    assert _exposed(api, "stored-before") is True  # the old default, written into the object

    api.kubectl("apply", "-f", str(SCD_CRD))  # the upgrade
    assert _exposed(api, "stored-before") is True  # still: it is stored, not defaulted on read
    _create(api, "created-after")
    assert _exposed(api, "created-after") is False

    listing, patch = _readme_block()
    kubectl = f"kubectl --kubeconfig={api.kubeconfig} --cache-dir={api.workdir}/kubectl-cache"
    found = subprocess.run(["bash", "-o", "pipefail", "-c", listing.replace("kubectl", kubectl)],
                           capture_output=True, text=True, check=True, timeout=60).stdout
    assert found.split() == ["default/stored-before"]
    patch = "kubectl -n" + patch.replace("NAME", "stored-before")
    subprocess.run(["bash", "-c", patch.replace("kubectl", kubectl, 1)], capture_output=True,
                   text=True, check=True, timeout=60)
    assert _exposed(api, "stored-before") is False
