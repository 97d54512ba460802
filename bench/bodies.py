"""Realistic Metacontroller v2 sync requests for N distinct SCDs spread over IEs.

Each body is the project's sample `samples/hooks/scd-sync.json` (controller, an Orion-LD SCD
with ports and CLI args, its related DIE) with its own name, uid, component label and IE. Its
status starts empty; `converge` then plays Metacontroller (send, write the returned status back
with observedGeneration, send again) until the hooks answer every status unchanged: steady state,
placement recorded, container running, broker told Running.
"""

from __future__ import annotations

import copy
import json
import uuid
from pathlib import Path
from typing import Any

from bench.loadgen import closed_loop, render_post

JSON = dict[str, Any]
ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "samples" / "hooks" / "scd-sync.json"
DIE_KEY = "DockerInfrastructureElement.llo.aeros-project.eu/v1alpha1"
SYNC_PATH = "/scd/sync"


def ie_name(j: int) -> str:
    return f"ie-{j:03d}"


def sync_bodies(n: int, ie_urls: list[str], *, first: int = 0, first_ie: int = 0) -> list[JSON]:
    """N sync requests; SCD `first + i` sits on IE `first_ie + i mod len(ie_urls)`."""
    sample = json.loads(SAMPLE.read_text())
    die_template = next(iter(sample["related"][DIE_KEY].values()))
    dies = []
    for j, url in enumerate(ie_urls, start=first_ie):
        die = copy.deepcopy(die_template)
        die["metadata"]["name"] = ie_name(j)
        die["metadata"]["uid"] = str(uuid.uuid5(uuid.NAMESPACE_URL, f"die-{j}"))
        die["spec"]["id"] = die["status"]["ieId"] = f"urn:ngsi-ld:InfrastructureElement:{j}"
        die["spec"]["hostname"] = ie_name(j)
        die["spec"]["api"]["url"] = url
        die["spec"]["api"]["tokenKey"] = ie_name(j)
        dies.append(die)
    bodies = []
    for i in range(first, first + n):
        die = dies[(i - first) % len(ie_urls)]
        body = copy.deepcopy(sample)
        meta = body["parent"]["metadata"]
        meta["name"] = f"scd-{i:05d}"
        meta["uid"] = str(uuid.uuid5(uuid.NAMESPACE_URL, f"scd-{i}"))
        meta["labels"]["app.kubernetes.io/name"] = f"component-{i}"
        service = f"urn_ngsi-ld_Service_{i // 10}"
        meta["labels"]["app.kubernetes.io/instance"] = f"{service}_Component_{i}"
        meta["labels"]["app.kubernetes.io/part-of"] = service
        hostname = die["metadata"]["name"]
        body["parent"]["spec"]["selectedIE"] = {"id": die["spec"]["id"], "hostname": hostname}
        body["related"] = {DIE_KEY: {hostname: die}}
        bodies.append(body)
    return bodies


def render(bodies: list[JSON], port: int) -> list[bytes]:
    return [render_post("127.0.0.1", port, SYNC_PATH, json.dumps(b).encode()) for b in bodies]


def converge(bodies: list[JSON], port: int, *, concurrency: int = 32, rounds: int = 8) -> int:
    """Drive every body to its steady status (in place). Returns the number of rounds."""
    for round_no in range(1, rounds + 1):
        result = closed_loop("127.0.0.1", port, render(bodies, port), concurrency=concurrency,
                             keep_bodies=True)
        if result.errors or result.non_200():
            raise RuntimeError(f"converge: {result.errors} errors, {result.non_200()} non-200")
        changed = 0
        for index, raw in zip(result.tags, result.bodies, strict=True):
            parent = bodies[index]["parent"]
            status = json.loads(raw)["status"]
            status["observedGeneration"] = parent["metadata"]["generation"]
            if status != parent.get("status"):
                parent["status"] = status
                changed += 1
        if changed == 0:
            return round_no
    raise RuntimeError(f"not steady after {rounds} rounds")


def check_steady(bodies: list[JSON]) -> None:
    """Every SCD runs on its IE and the broker has been told Running."""
    for body in bodies:
        status = body["parent"]["status"]
        broker = status.get("broker") or {}
        if status.get("phase") != "Running" or broker.get("reported") != "Running" or \
                not status.get("placement"):
            raise RuntimeError(f"{body['parent']['metadata']['name']} not steady: "
                               f"{status.get('phase')} {status.get('reason')} {broker}")


def move_ie(body: JSON, url: str) -> None:
    """Point an SCD's IE (its DIE and its recorded placement) at another URL: the IE died
    after the container had been running there."""
    for die in body["related"][DIE_KEY].values():
        die["spec"]["api"]["url"] = url
    body["parent"]["status"]["placement"]["apiUrl"] = url
