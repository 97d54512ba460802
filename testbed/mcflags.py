"""Metacontroller's flags that bound its pace: upstream's defaults, and the values LLO Docker
ships in ``metacontroller/upstream/flags.yaml`` (read from there, so the driver and the
benchmark run what a user installs)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from testbed.manifests import MANIFESTS_DIR

FLAGS_PATCH = MANIFESTS_DIR / "upstream" / "flags.yaml"


@dataclass(frozen=True)
class MetacontrollerFlags:
    """``--client-go-qps``, ``--client-go-burst``, ``--workers`` (v4.17.2 defaults)."""

    qps: float = 5.0
    burst: int = 10
    workers: int = 5

    def describe(self) -> str:
        return f"--client-go-qps={self.qps:g} --client-go-burst={self.burst} " \
               f"--workers={self.workers}"


DEFAULTS = MetacontrollerFlags()


def container_args(patch: dict[str, Any]) -> list[str]:
    """The args of the ``metacontroller`` container in a StatefulSet (patch)."""
    containers = patch["spec"]["template"]["spec"]["containers"]
    container = next(c for c in containers if c["name"] == "metacontroller")
    return [str(a) for a in container["args"]]


def parse_args(args: list[str]) -> MetacontrollerFlags:
    """Go ``flag`` semantics for the three flags: ``--name=value``, the last one wins."""
    values: dict[str, str] = {}
    for arg in args:
        name, sep, value = arg.lstrip("-").partition("=")
        if sep:
            values[name] = value
    return MetacontrollerFlags(
        qps=float(values.get("client-go-qps", DEFAULTS.qps)),
        burst=int(values.get("client-go-burst", DEFAULTS.burst)),
        workers=int(values.get("workers", DEFAULTS.workers)))


def shipped(path: Path = FLAGS_PATCH) -> MetacontrollerFlags:
    """The flags ``metacontroller/upstream/`` installs Metacontroller with."""
    return parse_args(container_args(yaml.safe_load(path.read_text())))
