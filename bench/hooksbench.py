"""Parts 1-3: the hooks under their documented gunicorn configuration, against fast local
upstreams (bench.fakes), compared with the floor (bench.floor) in the same run.

1. throughput and latency of steady syncs at increasing concurrency, hooks vs floor;
2. scale: cost per steady sync and RSS for 10 … 10,000 SCDs over 1, 10 and 100 IEs, and whether
   one replica keeps up with a 60 s resync period;
3. one IE that never answers and one that refuses connections: latency of the healthy syncs with
   and without them.
"""

from __future__ import annotations

import json
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.bodies import JSON, check_steady, converge, move_ie, render, sync_bodies
from bench.loadgen import Result, closed_loop, open_loop, percentile
from bench.servers import (
    cpu_seconds,
    hooks_env,
    own_cpu_seconds,
    serving,
    upstreams,
    worker_rss,
)
from testbed.procs import ServerProcess, free_port

RESYNC_PERIOD_SECONDS = 60.0


@dataclass(frozen=True)
class Plan:
    """How much of each part to run: `full` for publishing, `quick` for a smoke run."""

    tp_scds: int
    tp_ies: int
    tp_levels: tuple[int, ...]
    tp_window: float
    tp_warmup: float
    scale_ns: tuple[int, ...]
    scale_ies: tuple[int, ...]
    scale_window: float
    scale_concurrency: int
    repeats: int
    dead_healthy_scds: int
    dead_bad_scds: int
    dead_rate: float
    dead_window: float


FULL = Plan(tp_scds=1000, tp_ies=10, tp_levels=(1, 5, 10, 50, 100), tp_window=6.0, tp_warmup=1.0,
            scale_ns=(10, 100, 1000, 10000), scale_ies=(1, 10, 100), scale_window=5.0,
            scale_concurrency=32, repeats=3, dead_healthy_scds=180, dead_bad_scds=20,
            dead_rate=100.0, dead_window=20.0)
QUICK = Plan(tp_scds=100, tp_ies=2, tp_levels=(1, 10), tp_window=1.0, tp_warmup=0.2,
             scale_ns=(10, 100), scale_ies=(1, 10), scale_window=1.0, scale_concurrency=16,
             repeats=1, dead_healthy_scds=45, dead_bad_scds=5, dead_rate=40.0, dead_window=4.0)


def _ms(seconds: float) -> float:
    return round(seconds * 1e3, 2)


def _measure(server: ServerProcess, requests: list[bytes], *, concurrency: int,
             duration: float) -> dict[str, Any]:
    """One closed-loop window: rate, latency percentiles, CPU per request of the server."""
    cpu0, own0 = cpu_seconds(server.pid), own_cpu_seconds()
    result = closed_loop("127.0.0.1", server.port, requests, concurrency=concurrency,
                         duration=duration)
    cpu1, own1 = cpu_seconds(server.pid), own_cpu_seconds()
    if result.errors or result.non_200():
        raise RuntimeError(f"{server.name}: {result.errors} errors, {result.non_200()} non-200")
    n = max(1, result.count)
    return {"concurrency": concurrency, "requests": result.count,
            "rate": round(result.rate, 1),
            "p50_ms": _ms(percentile(result.latencies, 50)),
            "p90_ms": _ms(percentile(result.latencies, 90)),
            "p99_ms": _ms(percentile(result.latencies, 99)),
            "cpu_ms_per_request": round((cpu1 - cpu0) / n * 1e3, 3),
            "server_cores": round((cpu1 - cpu0) / result.elapsed, 2),
            "loadgen_cpu_ms_per_request": round((own1 - own0) / n * 1e3, 3)}


def _median_row(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Of repeated windows, the one with the median CPU per request (a whole, consistent row),
    with every window's rate and CPU kept: other load on a shared machine hits single windows."""
    ordered = sorted(rows, key=lambda r: r["cpu_ms_per_request"])
    row = dict(ordered[(len(ordered) - 1) // 2])
    row["windows"] = len(rows)
    row["rate_all"] = [r["rate"] for r in rows]
    row["cpu_ms_all"] = [r["cpu_ms_per_request"] for r in rows]
    return row


def _broker_calls(broker_url: str) -> int:
    with urllib.request.urlopen(broker_url + "/stats", timeout=5) as answer:  # noqa: S310
        counts: dict[str, int] = json.loads(answer.read())
    return sum(v for k, v in counts.items() if k.startswith("broker"))


def _steady(bodies: list[JSON], port: int) -> int:
    rounds = converge(bodies, port)
    check_steady(bodies)
    return rounds


# --------------------------------------------------------------------------- part 1


def throughput(workdir: Path, plan: Plan, log: Any = print) -> dict[str, Any]:
    """Steady syncs at each concurrency level, hooks and floor interleaved."""
    with upstreams(workdir, plan.tp_ies) as up:
        env = hooks_env(up.token_dir, up.fakes.broker_url)
        with serving(workdir, env) as hooks, serving(workdir, env, floor=True) as floor:
            bodies = sync_bodies(plan.tp_scds, up.ie_urls)
            _steady(bodies, hooks.port)
            broker_before = _broker_calls(up.fakes.broker_url)
            rows: dict[str, list[dict[str, Any]]] = {"hooks": [], "floor": []}
            servers = (("hooks", hooks), ("floor", floor))
            reqs = {name: render(bodies, server.port) for name, server in servers}
            for level in plan.tp_levels:
                windows: dict[str, list[dict[str, Any]]] = {"hooks": [], "floor": []}
                for _ in range(plan.repeats):  # hooks and floor alternate, window by window
                    for name, server in servers:
                        closed_loop("127.0.0.1", server.port, reqs[name], concurrency=level,
                                    duration=plan.tp_warmup)
                        windows[name].append(_measure(server, reqs[name], concurrency=level,
                                                      duration=plan.tp_window))
                for name, _ in servers:
                    row = _median_row(windows[name])
                    rows[name].append(row)
                    log(f"  {name:5s} c={level:<3d} {row['rate']:7.1f} req/s  "
                        f"p50 {row['p50_ms']:6.1f} ms  p99 {row['p99_ms']:6.1f} ms  "
                        f"cpu {row['cpu_ms_per_request']:.2f} ms/req  (windows: "
                        f"{row['rate_all']} req/s, {row['cpu_ms_all']} ms)")
            broker_during = _broker_calls(up.fakes.broker_url) - broker_before
            rss = [round(r / 2**20, 1) for r in worker_rss(hooks.pid)]
    return {"scds": plan.tp_scds, "ies": plan.tp_ies, "window_seconds": plan.tp_window,
            "windows_per_point": plan.repeats,
            "hooks": rows["hooks"], "floor": rows["floor"],
            "broker_calls_during_steady_syncs": broker_during, "hooks_worker_rss_mb": rss}


# --------------------------------------------------------------------------- part 2


def scale(workdir: Path, plan: Plan, log: Any = print) -> dict[str, Any]:
    """Cost per steady sync and memory at each (SCDs, IEs); a fresh hooks server per IE count."""
    cells = []
    for ies in plan.scale_ies:
        with upstreams(workdir, ies) as up:
            env = hooks_env(up.token_dir, up.fakes.broker_url)
            with serving(workdir, env) as hooks:
                for n in plan.scale_ns:
                    if ies > n:
                        continue
                    bodies = sync_bodies(n, up.ie_urls)
                    started = time.monotonic()
                    _steady(bodies, hooks.port)
                    converge_s = time.monotonic() - started
                    reqs = render(bodies, hooks.port)
                    row = _median_row([_measure(hooks, reqs, concurrency=plan.scale_concurrency,
                                                duration=plan.scale_window)
                                       for _ in range(plan.repeats)])
                    rss = worker_rss(hooks.pid)
                    required = n / RESYNC_PERIOD_SECONDS
                    row.update({
                        "scds": n, "ies": ies, "required_rate": round(required, 2),
                        "headroom": round(row["rate"] / required, 1),
                        "cores_at_required_rate": round(
                            required * row["cpu_ms_per_request"] / 1e3, 3),
                        "worker_rss_mb": [round(r / 2**20, 1) for r in rss],
                        "max_worker_rss_mb": round(max(rss) / 2**20, 1),
                        "converge_seconds": round(converge_s, 1)})
                    cells.append(row)
                    log(f"  N={n:<6d} IEs={ies:<4d} {row['rate']:7.1f} req/s "
                        f"(need {required:7.2f})  cpu {row['cpu_ms_per_request']:.2f} ms/sync  "
                        f"rss {row['max_worker_rss_mb']:.0f} MB/worker")
    return {"resync_period_seconds": RESYNC_PERIOD_SECONDS, "windows_per_point": plan.repeats,
            "concurrency": plan.scale_concurrency, "window_seconds": plan.scale_window,
            "cells": cells}


# --------------------------------------------------------------------------- part 3


def _latency_summary(result: Result, tags: set[int], after: float = 0.0,
                     before: float = float("inf")) -> dict[str, Any]:
    lat = [lat for lat, tag, t0 in zip(result.latencies, result.tags, result.starts, strict=True)
           if tag in tags and after <= t0 < before]
    return {"requests": len(lat), "p50_ms": _ms(percentile(lat, 50)),
            "p90_ms": _ms(percentile(lat, 90)), "p99_ms": _ms(percentile(lat, 99)),
            "max_ms": _ms(max(lat) if lat else 0.0)}


def _ratio(a: float, b: float) -> float | None:
    return round(a / b, 2) if b else None


# The first calls to a dead IE end only with the read timeout (5 s by default): until then the
# hooks cannot know, and the calls admitted meanwhile hold their threads (and Metacontroller's
# workers). Latency is reported separately for this transient (timeout + draining the backlog)
# and for the steady state after it.
DETECTION_SECONDS = 10.0
MODELS = (("open loop (Metacontroller --workers >= hook threads)", 512),
          ("5 Metacontroller workers (its default --workers)", 5))


def dead_ie(workdir: Path, plan: Plan, log: Any = print) -> dict[str, Any]:
    """Healthy-IE latency at a fixed arrival rate, without and with a dead and a refusing IE."""
    healthy_ies = 10
    runs = []
    with upstreams(workdir, healthy_ies + 2, blackholes=1) as up:
        env = hooks_env(up.token_dir, up.fakes.broker_url)
        for model, inflight in MODELS:
            with serving(workdir, env) as hooks:
                run = _dead_ie_run(hooks, up.ie_urls, up.fakes.blackhole_ports[0], plan,
                                   healthy_ies=healthy_ies, inflight=inflight)
            run["model"], run["max_in_flight"] = model, inflight
            runs.append(run)
            log(f"  {model}: healthy p50/p99 without bad IEs {run['without_bad_ies']['p50_ms']}/"
                f"{run['without_bad_ies']['p99_ms']} ms; with them, after detection "
                f"{run['with_bad_ies']['p50_ms']}/{run['with_bad_ies']['p99_ms']} ms "
                f"(p99 ratio {run['p99_ratio']}); during detection p99 "
                f"{run['detection']['p99_ms']} ms max {run['detection']['max_ms']} ms; bad-IE "
                f"syncs p50 {run['bad_ie_syncs']['p50_ms']} ms {run['bad_ie_reasons']}")
    return {"rate": plan.dead_rate, "window_seconds": plan.dead_window,
            "detection_seconds": DETECTION_SECONDS, "runs": runs}


def _dead_ie_run(hooks: ServerProcess, ie_urls: list[str], blackhole_port: int, plan: Plan, *,
                 healthy_ies: int, inflight: int) -> dict[str, Any]:
    healthy = sync_bodies(plan.dead_healthy_scds, ie_urls[:healthy_ies])
    bad = sync_bodies(plan.dead_bad_scds, ie_urls[healthy_ies:healthy_ies + 2],
                      first=plan.dead_healthy_scds, first_ie=healthy_ies)
    _steady(healthy + bad, hooks.port)
    # Mixed order: every k-th request goes to a (soon) bad IE.
    every = max(2, round((len(healthy) + len(bad)) / len(bad)))
    mixed: list[JSON] = []
    rest_healthy, rest_bad = list(reversed(healthy)), list(reversed(bad))
    for k in range(len(healthy) + len(bad)):
        take_bad = (k % every == every - 1 and rest_bad) or not rest_healthy
        mixed.append((rest_bad if take_bad else rest_healthy).pop())
    healthy_ids = {id(b) for b in healthy}
    mixed_tags = {i for i, b in enumerate(mixed) if id(b) in healthy_ids}
    share = 1 - len(mixed_tags) / len(mixed)
    healthy_rate = plan.dead_rate * (1 - share)
    base = open_loop("127.0.0.1", hooks.port, render(healthy, hooks.port),
                     rate=healthy_rate, duration=plan.dead_window, max_inflight=inflight)
    # Now the two IEs fail: one accepts and never answers, one refuses connections.
    blackhole = f"http://127.0.0.1:{blackhole_port}"
    refused = f"http://127.0.0.1:{free_port()}"
    for i, body in enumerate(bad):
        move_ie(body, blackhole if i % 2 == 0 else refused)
    with_bad = open_loop("127.0.0.1", hooks.port, render(mixed, hooks.port),
                         rate=plan.dead_rate, duration=DETECTION_SECONDS + plan.dead_window,
                         max_inflight=inflight)
    answers = closed_loop("127.0.0.1", hooks.port, render(bad[:2], hooks.port),
                          concurrency=1, keep_bodies=True)
    base_s = _latency_summary(base, set(range(len(healthy))))
    steady = _latency_summary(with_bad, mixed_tags, after=DETECTION_SECONDS)
    detection = _latency_summary(with_bad, mixed_tags, before=DETECTION_SECONDS)
    bad_only = _latency_summary(with_bad, set(range(len(mixed))) - mixed_tags,
                                after=DETECTION_SECONDS)
    return {"healthy_rate": round(healthy_rate, 1), "bad_share": round(share, 3),
            "healthy_scds": len(healthy), "bad_scds": len(bad),
            "without_bad_ies": base_s, "with_bad_ies": steady, "detection": detection,
            "bad_ie_syncs": bad_only, "errors": base.errors + with_bad.errors,
            "non_200": base.non_200() + with_bad.non_200(),
            "bad_ie_reasons": [json.loads(b)["status"].get("reason") for b in answers.bodies],
            "healthy_series": [(round(t0, 3), _ms(lat)) for lat, tag, t0 in zip(
                with_bad.latencies, with_bad.tags, with_bad.starts, strict=True)
                if tag in mixed_tags][::max(1, len(with_bad.latencies) // 3000)],
            "baseline_p99_ms": base_s["p99_ms"],
            "p99_ratio": _ratio(steady["p99_ms"], base_s["p99_ms"]),
            "p50_ratio": _ratio(steady["p50_ms"], base_s["p50_ms"])}
