"""`python -m bench [--quick] [--parts ...] [--out DIR]`: run the benchmarks, write
DIR/benchmarks.md, DIR/img/bench-*.png and DIR/img/bench-results.json (DIR defaults to docs/).

Everything it needs it starts itself, as processes it stops by PID: the fake upstreams, the
hooks and floor under gunicorn, ieapi, and a private dockerd (testbed/dockerd.py; an
answering DOCKER_HOST is used instead) for the ieapi and end-to-end parts.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import burstbench, e2ebench, hooksbench, ieapibench, machine, natsbench, report

PARTS = ("throughput", "scale", "dead", "ieapi", "e2e", "nats", "burst")
ANALYSIS = Path(__file__).with_name("analysis.md")


def wait_for_quiet(max_wait: float, threshold: float) -> list[float]:
    """Poll the 1-min load average (bounded) until it is below `threshold`."""
    deadline = time.monotonic() + max_wait
    while True:
        load = machine.load_average()
        if load[0] < threshold or time.monotonic() >= deadline:
            return load
        print(f"waiting for a quieter machine: load {load}", flush=True)
        time.sleep(20)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="smoke run: a few seconds per part")
    parser.add_argument("--parts", default=",".join(PARTS),
                        help=f"comma-separated subset of {','.join(PARTS)}")
    parser.add_argument("--out", type=Path, default=machine.ROOT / "docs",
                        help="directory for benchmarks.md and img/ (default: docs/)")
    parser.add_argument("--wait-for-quiet", type=float, default=0.0, metavar="SECONDS",
                        help="first wait up to this long for the 1-min load average to drop "
                             "below --quiet-load")
    parser.add_argument("--quiet-load", type=float, default=1.0)
    parser.add_argument("--keep", action="store_true", help="keep the work directory (logs)")
    parser.add_argument("--merge", action="store_true",
                        help="keep the results of the parts not run now from "
                             "OUT/img/bench-results.json (each part records its own machine "
                             "and load)")
    parser.add_argument("--render-only", action="store_true",
                        help="run nothing: render the page and plots again from "
                             "OUT/img/bench-results.json")
    args = parser.parse_args(argv)
    parts = [p.strip() for p in args.parts.split(",") if p.strip()]
    unknown = set(parts) - set(PARTS)
    if unknown:
        parser.error(f"unknown parts: {sorted(unknown)}")
    for name in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
        os.environ.pop(name, None)  # docs/design.md §3: requests would ignore explicit CAs

    img = args.out / "img"
    if args.render_only:
        render(json.loads((img / "bench-results.json").read_text()), args.out)
        return 0
    if args.wait_for_quiet:
        wait_for_quiet(args.wait_for_quiet, args.quiet_load)
    workdir = Path(tempfile.mkdtemp(prefix="llo-bench-"))
    print(f"work directory {workdir}", flush=True)
    results: dict[str, Any] = {"machine": machine.describe(), "quick": args.quick,
                               "parts": parts}
    try:
        run_parts(parts, args.quick, workdir, results)
    finally:
        results["load_average_end"] = machine.load_average()
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    img.mkdir(parents=True, exist_ok=True)
    if args.merge and (img / "bench-results.json").exists():
        results = merged(json.loads((img / "bench-results.json").read_text()), results)
    (img / "bench-results.json").write_text(json.dumps(results, indent=1) + "\n")
    render(results, args.out)
    return 0


RESULT_KEYS = {"throughput": "throughput", "scale": "scale", "dead": "dead_ie",
               "ieapi": "ieapi", "e2e": "e2e", "nats": "nats", "burst": "burst"}


def merged(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """`old` with the parts run now replaced by `new`'s; a part run now records the machine and
    load it ran under, since the page's machine section describes the older run."""
    out = dict(old)
    for part in new["parts"]:
        key = RESULT_KEYS[part]
        out[key] = {**new[key], "run": {"machine": new["machine"],
                                        "load_average_end": new.get("load_average_end")}}
    out["parts"] = sorted(set(old.get("parts", [])) | set(new["parts"]), key=PARTS.index)
    return out


def render(results: dict[str, Any], out: Path) -> None:
    img = out / "img"
    quick = bool(results.get("quick"))
    command = "./scripts/bench.sh" + (" --quick" if quick else "")
    notes = ANALYSIS.read_text().splitlines() if ANALYSIS.exists() and not quick else []
    report.write(results, out / "benchmarks.md", img, command=command, notes=notes)
    print(f"wrote {out / 'benchmarks.md'} and {img}/bench-*.png", flush=True)


def run_parts(parts: list[str], quick: bool, workdir: Path, results: dict[str, Any]) -> None:
    hp = hooksbench.QUICK if quick else hooksbench.FULL
    if "throughput" in parts:
        print("1. steady syncs: hooks vs floor", flush=True)
        results["throughput"] = hooksbench.throughput(workdir / "tp", hp)
    if "scale" in parts:
        print("2. scale", flush=True)
        results["scale"] = hooksbench.scale(workdir / "scale", hp)
    if "dead" in parts:
        print("3. a dead and a refusing IE", flush=True)
        results["dead_ie"] = hooksbench.dead_ie(workdir / "dead", hp)
    if {"ieapi", "e2e", "nats", "burst"} & set(parts):
        import docker

        from testbed.dockerd import DOCKER_API_VERSION, docker_engine
        from testbed.images import ensure_busybox

        with docker_engine(log_path=workdir / "dockerd.log") as engine:
            client = docker.DockerClient(base_url=engine.url, version=DOCKER_API_VERSION,
                                         timeout=60)
            client.api.trust_env = False
            image = ensure_busybox(client)
            client.close()
            if "ieapi" in parts:
                print("4. ieapi vs docker SDK", flush=True)
                results["ieapi"] = ieapibench.run(
                    workdir / "ieapi", engine.url, image,
                    ieapibench.QUICK if quick else ieapibench.FULL)
            if "e2e" in parts:
                print("5. end to end", flush=True)
                results["e2e"] = e2ebench.run(
                    workdir / "e2e", engine.url, image,
                    e2ebench.QUICK if quick else e2ebench.FULL)
            if "nats" in parts:
                print("6. NATS vs HTTP to the IE", flush=True)
                results["nats"] = natsbench.run(
                    workdir / "nats", engine.url, image,
                    natsbench.QUICK if quick else natsbench.FULL)
            if "burst" in parts:
                print("7. bursts under Metacontroller's API rate limit", flush=True)
                results["burst"] = burstbench.run(
                    workdir / "burst", engine.url, image,
                    burstbench.QUICK if quick else burstbench.FULL)


if __name__ == "__main__":
    sys.exit(main())
