"""Results → `benchmarks.md` (tables, targets) and PNG plots (matplotlib, Agg backend)."""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

R = dict[str, Any]

# The targets of issue #5, checked against the results.
TP_RATIO_TARGET = 0.8
TP_P99_TARGET_MS = 50.0
RSS_TARGET_MB = 120.0
DEAD_RATIO_TARGET = 1.2
IEAPI_RATIO_TARGET = 1.2
E2E_P50_TARGET_MS = 1500.0
NATS_P50_RATIO_TARGET = 1.2
BURST_FLOOR_RATIO_TARGET = 2.0  # issue #16: within 2x ieapi's own floor at the shipped flags
# "flat": at the largest N a sync costs at most this much more than at the smallest N
FLAT_TOLERANCE = 1.25


def _yes(ok: bool) -> str:
    return "met" if ok else "**missed**"


# --------------------------------------------------------------------------- plots


def _plot_throughput(tp: R, path: Path) -> None:
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    for name, style in (("hooks", "o-"), ("floor", "s--")):
        rows = tp[name]
        c = [r["concurrency"] for r in rows]
        left.plot(c, [r["rate"] for r in rows], style, label=name)
        right.plot(c, [r["p50_ms"] for r in rows], style, label=f"{name} p50")
        right.plot(c, [r["p99_ms"] for r in rows], style, alpha=0.5, label=f"{name} p99")
    left.set(xscale="log", xlabel="concurrent requests", ylabel="steady syncs / s",
             title="Throughput")
    right.axhline(TP_P99_TARGET_MS, color="grey", lw=0.8, ls=":", label="p99 target")
    right.set(xscale="log", yscale="log", xlabel="concurrent requests", ylabel="ms",
              title="Latency")
    for ax in (left, right):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _plot_scale(sc: R, path: Path) -> None:
    fig, (a, b, c) = plt.subplots(1, 3, figsize=(13, 4))
    for ies in sorted({cell["ies"] for cell in sc["cells"]}):
        cells = [x for x in sc["cells"] if x["ies"] == ies]
        n = [x["scds"] for x in cells]
        a.plot(n, [x["cpu_ms_per_request"] for x in cells], "o-", label=f"{ies} IEs")
        b.plot(n, [x["rate"] for x in cells], "o-", label=f"sustained, {ies} IEs")
        c.plot(n, [x["max_worker_rss_mb"] for x in cells], "o-", label=f"{ies} IEs")
    ns = sorted({x["scds"] for x in sc["cells"]})
    b.plot(ns, [n / sc["resync_period_seconds"] for n in ns], "k:", label="required (N/60 s)")
    a.set(xscale="log", xlabel="SCDs", ylabel="CPU ms per sync", title="Cost per steady sync")
    a.set_ylim(bottom=0)
    b.set(xscale="log", yscale="log", xlabel="SCDs", ylabel="syncs / s",
          title="One replica: sustained vs required")
    c.axhline(RSS_TARGET_MB, color="grey", lw=0.8, ls=":", label="target")
    c.set(xscale="log", xlabel="SCDs", ylabel="MB", title="RSS per worker")
    c.set_ylim(bottom=0)
    for ax in (a, b, c):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _plot_dead(dead: R, path: Path) -> None:
    runs = dead["runs"]
    fig, axes = plt.subplots(1, len(runs), figsize=(6 * len(runs), 4), squeeze=False)
    for ax, run in zip(axes[0], runs, strict=True):
        series = run["healthy_series"]
        ax.scatter([t for t, _ in series], [v for _, v in series], s=3, alpha=0.5,
                   label="healthy-IE syncs")
        ax.axhline(run["baseline_p99_ms"], color="green", lw=1,
                   label=f"p99 without bad IEs ({run['baseline_p99_ms']} ms)")
        ax.axvline(dead["detection_seconds"], color="grey", lw=0.8, ls=":",
                   label="end of the detection transient")
        ax.set(yscale="log", xlabel="seconds since the IEs failed", ylabel="ms",
               title=run["model"].split(" (")[0] + f", {dead['rate']:g} syncs/s")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _plot_ieapi(ie: R, path: Path) -> None:
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4))
    cyc = ie["cycle"]
    keys = ["create_start", "inspect", "stop_remove", "total"]
    x = range(len(keys))
    a.bar([i - 0.2 for i in x], [cyc["sdk_ms"][k] for k in keys], 0.4, label="docker SDK")
    a.bar([i + 0.2 for i in x], [cyc["ieapi_ms"][k] for k in keys], 0.4, label="ieapi (HTTP)")
    a.set_xticks(list(x), ["create+start", "inspect", "stop+remove", "total"])
    a.set(ylabel="ms (median)", title=f"One container, {cyc['cycles']} cycles")
    for name, burst in (("ieapi", ie["burst"]["ieapi"]), ("docker SDK", ie["burst"]["sdk"])):
        times = burst["running_over_time"]
        b.step(times, range(1, len(times) + 1), where="post",
               label=f"{name} ({burst['threads']} threads)")
    b.set(xlabel="seconds", ylabel="containers running",
          title=f"Burst of {ie['burst']['ieapi']['containers']}, one service")
    for ax in (a, b):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _plot_e2e(e2e: R, path: Path) -> None:
    fig, ax = plt.subplots(figsize=(6, 3.5))
    lat = e2e["latencies_ms"]
    ax.plot(range(1, len(lat) + 1), lat, "o-", label="apply → Running (sorted)")
    ax.axhline(E2E_P50_TARGET_MS, color="grey", lw=0.8, ls=":", label="p50 target")
    ax.axhline(e2e["intent_pause_ms"], color="orange", lw=0.8, ls="--", label="intent pause")
    ax.set(xlabel="apply", ylabel="ms", title="End to end, local image")
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _plot_nats(nats: R, path: Path) -> None:
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4))
    names = ("http", "nats")
    labels = ("HTTP", "NATS")
    for ax, part, title in ((a, nats["sync"], f"Steady sync, {nats['workers']} workers"),
                            (b, nats["ensure"], "Ensure (IE client, one caller)")):
        x = range(len(names))
        ax.bar([i - 0.2 for i in x], [part[n]["p50_ms"] for n in names], 0.4, label="p50")
        ax.bar([i + 0.2 for i in x], [part[n]["p99_ms"] for n in names], 0.4, label="p99")
        ax.set_xticks(list(x), labels)
        ax.set(ylabel="ms", title=title)
        ax.grid(alpha=0.3, axis="y")
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# --------------------------------------------------------------------------- markdown


def _plot_burst(b: R, path: Path) -> None:
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for ax, part, title in ((axes[0], "service", "one service"), (axes[1], "burst", "burst")):
        floor = b["floor"][part]
        times = floor["running_over_time"]
        ax.step(times, range(1, len(times) + 1), where="post", color="black", ls="--",
                label="ieapi floor")
        for label, run in b["runs"].items():
            r = run[part]
            times = r["running_over_time"]
            ax.step(times, range(1, len(times) + 1), where="post",
                    label=f"{label} ({_flags(run['flags'])})")
        ax.set(xlabel="seconds after the apply", ylabel="SCDs Running",
               title=f"{floor['containers']} SCDs, {title} on {floor['ies']} IE(s)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _flags(f: R) -> str:
    return f"qps {f['qps']:g}, burst {f['burst']}, workers {f['workers']}"


def _row(*cells: object) -> str:
    return "| " + " | ".join(str(c) for c in cells) + " |"


def _growth(cells: list[R]) -> dict[int, float]:
    """Per IE count: CPU per sync at the largest N over that at the smallest N."""
    out = {}
    for ies in sorted({c["ies"] for c in cells}):
        mine = sorted((c for c in cells if c["ies"] == ies), key=lambda c: c["scds"])
        if len(mine) > 1:
            out[ies] = mine[-1]["cpu_ms_per_request"] / mine[0]["cpu_ms_per_request"]
    return out


def _targets(res: R) -> list[str]:
    lines = ["| target | measured | |", "|---|---|---|"]
    tp = res.get("throughput")
    if tp:
        pairs = list(zip(tp["hooks"], tp["floor"], strict=True))
        rate_ratio = statistics.median(h["rate"] / f["rate"] for h, f in pairs)
        cpu_ratio = statistics.median(f["cpu_ms_per_request"] / h["cpu_ms_per_request"]
                                      for h, f in pairs)
        lines.append(_row("steady sync throughput ≥ 0.8 x floor",
                          f"{rate_ratio:.2f} x throughput (median over the concurrency levels); "
                          f"{cpu_ratio:.2f} x by CPU per request, which bounds the saturated "
                          "throughput (judged on the lower of the two)",
                          _yes(min(rate_ratio, cpu_ratio) >= TP_RATIO_TARGET)))
        top = tp["hooks"][-1]
        lines.append(_row(f"p99 ≤ 50 ms at {top['concurrency']} concurrent",
                          f"{top['p99_ms']} ms (floor: {tp['floor'][-1]['p99_ms']} ms)",
                          _yes(top["p99_ms"] <= TP_P99_TARGET_MS)))
    sc = res.get("scale")
    if sc:
        costs = [c["cpu_ms_per_request"] for c in sc["cells"]]
        growth = _growth(sc["cells"])
        lines.append(_row("flat cost per sync, 10 → 10,000 SCDs",
                          "CPU per sync at the largest N / at the smallest N, per IE count: "
                          + ", ".join(f"{ies} IEs {g:.2f}" for ies, g in growth.items())
                          + f" (all cells: {min(costs):.2f}-{max(costs):.2f} ms, run-to-run "
                          "noise included)",
                          _yes(all(g <= FLAT_TOLERANCE for g in growth.values()))))
        rss = max(c["max_worker_rss_mb"] for c in sc["cells"])
        lines.append(_row("hooks RSS per worker ≤ 120 MB", f"{rss:.0f} MB (largest seen)",
                          _yes(rss <= RSS_TARGET_MB)))
        keeps = all(c["rate"] >= c["required_rate"] for c in sc["cells"])
        tight = min(sc["cells"], key=lambda c: c["headroom"])
        lines.append(_row("one replica keeps up at a 60 s resync",
                          f"lowest headroom {tight['headroom']}x ({tight['rate']:.0f} sustained vs "
                          f"{tight['required_rate']:.0f} required syncs/s at {tight['scds']} SCDs, "
                          f"{tight['ies']} IEs)", _yes(keeps)))
    dead = res.get("dead_ie")
    if dead:
        for run in dead["runs"]:
            lines.append(_row(f"healthy-IE p99 ≤ 1.2x with a dead IE — {run['model']}",
                              f"{run['p99_ratio']}x after detection "
                              f"({run['with_bad_ies']['p99_ms']} vs "
                              f"{run['without_bad_ies']['p99_ms']} ms); first "
                              f"{dead['detection_seconds']:g} s: p99 "
                              f"{run['detection']['p99_ms']} ms",
                              _yes((run["p99_ratio"] or 99) <= DEAD_RATIO_TARGET)))
    ie = res.get("ieapi")
    if ie:
        r = ie["cycle"]["ratio"]
        lines.append(_row("ieapi ≤ 1.2x the docker SDK",
                          f"{r:.2f}x ({ie['cycle']['ieapi_ms']['total']} vs "
                          f"{ie['cycle']['sdk_ms']['total']} ms per cycle)",
                          _yes(r <= IEAPI_RATIO_TARGET)))
    nats = res.get("nats")
    if nats:
        worst = max(nats["sync_p50_ratio"], nats["ensure_p50_ratio"])
        lines.append(_row("NATS ≤ 1.2x HTTP latency at p50",
                          f"steady sync {nats['sync_p50_ratio']:.2f}x "
                          f"({nats['sync']['nats']['p50_ms']} vs {nats['sync']['http']['p50_ms']}"
                          f" ms), ensure {nats['ensure_p50_ratio']:.2f}x "
                          f"({nats['ensure']['nats']['p50_ms']} vs "
                          f"{nats['ensure']['http']['p50_ms']} ms)",
                          _yes(worst <= NATS_P50_RATIO_TARGET)))
    e2e = res.get("e2e")
    if e2e:
        lines.append(_row("apply → Running ≤ 1.5 s p50", f"{e2e['p50_ms']} ms",
                          _yes(e2e["p50_ms"] <= E2E_P50_TARGET_MS)))
    b = res.get("burst")
    if b and "shipped" in b["runs"]:
        svc, floor = b["runs"]["shipped"]["service"], b["floor"]["service"]
        ratio = svc["seconds_to_all_running"] / floor["seconds_to_all_running"]
        lines.append(_row(f"{svc['scds']}-component service Running ≤ 2x ieapi's floor "
                          "(shipped Metacontroller flags)",
                          f"{ratio:.2f}x ({svc['seconds_to_all_running']} vs "
                          f"{floor['seconds_to_all_running']} s)",
                          _yes(ratio <= BURST_FLOOR_RATIO_TARGET)))
        burst, floor = b["runs"]["shipped"]["burst"], b["floor"]["burst"]
        ratio = burst["seconds_to_all_gone"] / floor["seconds_to_all_gone"]
        lines.append(_row(f"deletion of {burst['scds']} ≤ 2x ieapi's floor (shipped flags)",
                          f"{ratio:.2f}x ({burst['seconds_to_all_gone']} vs "
                          f"{floor['seconds_to_all_gone']} s)",
                          _yes(ratio <= BURST_FLOOR_RATIO_TARGET)))
    return lines


def _burst_section(b: R, rel: Path) -> list[str]:
    runs = b["runs"]
    md = ["## 7. Bursts under Metacontroller's API rate limit", "",
          f"Measured on {b['date']}, load average {b['load_average_start']} at the start and "
          f"{b['load_average_end']} at the end (this part ran on its own; the machine was "
          "shared, so compare the ratios, measured side by side in one run). The real hooks "
          "(production resync settings), two IEs (an ieapi each, one private dockerd), the "
          "Metacontroller-faithful driver on a real clock with client-go's token bucket "
          "(`--client-go-qps`, `--client-go-burst`) spent on every API request Metacontroller "
          "makes for a parent (the GET before each finalizer or status update, and the update; "
          "`testbed/ratelimit.py`) and `--workers` syncs at a time. Each burst is applied "
          "at once, then deleted at once. The floor is ieapi alone: every `PUT` at once, "
          "then every `DELETE`.", "",
          _row("burst", "Metacontroller flags", "all Running s", "x floor", "all gone s",
               "x floor", "requests (writes) per SCD to Running",
               "requests (writes) per SCD to gone"),
          _row(*["---"] * 8)]
    for part in ("service", "burst"):
        floor = b["floor"][part]
        size = floor.get("service_size")
        title = ("one service, 1 IE" if part == "service"
                 else f"services of {size}, 2 IEs" if size else "2 IEs")
        md.append(_row(f"{floor['containers']} SCDs, {title}", "ieapi floor",
                       floor["seconds_to_all_running"], "1.00", floor["seconds_to_all_gone"],
                       "1.00", "-", "-"))
        for label, run in runs.items():
            r = run[part]
            md.append(_row(
                f"{r['scds']} SCDs, {title}", f"{label}: {_flags(run['flags'])}",
                r["seconds_to_all_running"],
                f"{r['seconds_to_all_running'] / floor['seconds_to_all_running']:.2f}",
                r["seconds_to_all_gone"],
                f"{r['seconds_to_all_gone'] / floor['seconds_to_all_gone']:.2f}",
                f"{r['apply']['requests_mean']:g} ({r['apply']['writes_mean']:g})",
                f"{r['delete']['requests_mean']:g} ({r['delete']['writes_mean']:g})"))
    if {"defaults", "shipped"} <= set(runs):
        d, s = runs["defaults"], runs["shipped"]
        md += ["", "Shipped vs default flags, same run: "
               + "; ".join(f"{d[p]['scds']} SCDs {w} {d[p][k] / s[p][k]:.1f}x faster"
                           for p in ("service", "burst")
                           for w, k in (("to Running", "seconds_to_all_running"),
                                        ("to gone", "seconds_to_all_gone"))) + "."]
    md += ["", f"![bursts]({rel}/bench-burst.png)", ""]
    return md


def write(res: R, out_md: Path, img_dir: Path, *, command: str,
          notes: list[str] | None = None) -> None:
    img_dir.mkdir(parents=True, exist_ok=True)
    rel = Path("img") if img_dir == out_md.parent / "img" else img_dir
    m = res["machine"]
    md = ["# Benchmarks", "",
          f"Reproduce: `{command}` (writes this page and `docs/img/bench-*.png`; `--quick` is a "
          "smoke run of a few seconds per part). Raw results: `docs/img/bench-results.json`.", "",
          "## Machine and run", "",
          f"- {m['date']}; {m['cpus']} x {m['cpu_model']}, {m['memory_gb']} GB RAM, "
          f"Linux {m['kernel']}, Python {m['python']}",
          f"- load average (1/5/15 min) at start {m['load_average_start']}, at end "
          f"{res.get('load_average_end')}: the machine is shared, so absolute numbers are noisy;"
          " the ratios were measured side by side in one run",
          f"- hooks: gunicorn gthread, {m['hooks_workers']} workers x {m['hooks_threads']} "
          f"threads (the defaults in `hooks/settings.py`); packages {m['packages']}",
          f"- commit {m['commit']}" + (" plus uncommitted changes in hooks/ or ieapi/"
                                       if m["uncommitted_changes"] else ""),
          "- load generator, fake upstreams and servers share the same cores; the load "
          "generator's own CPU per request is in the raw results", ""]
    md += ["## Targets", "", *_targets(res), ""]
    md += [*(notes or []), ""]

    tp = res.get("throughput")
    if tp:
        _plot_throughput(tp, img_dir / "bench-throughput.png")
        md += ["## 1. Steady syncs: hooks vs floor", "",
               f"{tp['scds']} SCDs over {tp['ies']} fake IEs, every SCD steady (placed, running, "
               "broker told Running), so each sync is one `PUT` to its IE and no broker call "
               f"(broker calls seen during these windows: {tp['broker_calls_during_steady_syncs']}"
               f"). Closed loop; each point is the median (by CPU per request) of "
               f"{tp.get('windows_per_point', 1)} windows of {tp['window_seconds']:g} s, hooks "
               "and floor alternating window by window (every window is in the raw results). "
               "The floor (`bench/floor.py`) is the same gunicorn/Flask stack and "
               "config receiving the same bodies and making the same `PUT` via a requests "
               "Session, with no other work.", "",
               _row("concurrency", "hooks syncs/s", "floor req/s", "ratio", "hooks p50 / p99 ms",
                    "floor p50 / p99 ms", "hooks CPU ms/sync", "floor CPU ms/req"),
               _row(*["---"] * 8)]
        for h, f in zip(tp["hooks"], tp["floor"], strict=True):
            md.append(_row(h["concurrency"], h["rate"], f["rate"],
                           f"{h['rate'] / f['rate']:.2f}", f"{h['p50_ms']} / {h['p99_ms']}",
                           f"{f['p50_ms']} / {f['p99_ms']}", h["cpu_ms_per_request"],
                           f["cpu_ms_per_request"]))
        md += ["", f"![throughput]({rel}/bench-throughput.png)", ""]
    sc = res.get("scale")
    if sc:
        _plot_scale(sc, img_dir / "bench-scale.png")
        md += ["## 2. Scale: one replica at a 60 s resync", "",
               f"For each (SCDs, IEs): converge every SCD, then steady syncs at "
               f"{sc['concurrency']} concurrent requests (the replica's capacity), median of "
               f"{sc.get('windows_per_point', 1)} windows of {sc['window_seconds']:g} s."
               " Required rate = SCDs / 60 s. Cores needed = required rate x CPU per sync.", "",
               _row("SCDs", "IEs", "sustained syncs/s", "required/s", "headroom",
                    "CPU ms/sync", "cores needed", "RSS/worker MB", "p99 ms"),
               _row(*["---"] * 9)]
        for c in sc["cells"]:
            md.append(_row(c["scds"], c["ies"], c["rate"], c["required_rate"],
                           f"{c['headroom']}x", c["cpu_ms_per_request"],
                           c["cores_at_required_rate"], c["max_worker_rss_mb"], c["p99_ms"]))
        md += ["", f"![scale]({rel}/bench-scale.png)", ""]
    dead = res.get("dead_ie")
    if dead:
        _plot_dead(dead, img_dir / "bench-dead-ie.png")
        md += ["## 3. A dead and a refusing IE", "",
               f"Open-loop arrivals at {dead['rate']:g} syncs/s (every SCD cycled through), "
               "about 10% of them for SCDs on two IEs that fail after their containers were "
               "running: one accepts connections and never answers, one refuses them. Healthy-IE "
               "latency is compared with a run without the bad IEs at the same healthy rate. The "
               "first calls to the dead IE end only with the 5 s read timeout, so the first "
               f"{dead['detection_seconds']:g} s after the failure (timeout + draining the "
               f"backlog) are reported apart from the {dead['window_seconds']:g} s after.", "",
               _row("load model", "without: p50 / p99 ms", "with, after detection: p50 / p99 ms",
                    "p99 ratio", "detection transient: p99 / max ms", "bad-IE syncs p50 ms"),
               _row(*["---"] * 6)]
        for run in dead["runs"]:
            md.append(_row(run["model"],
                           f"{run['without_bad_ies']['p50_ms']} / "
                           f"{run['without_bad_ies']['p99_ms']}",
                           f"{run['with_bad_ies']['p50_ms']} / {run['with_bad_ies']['p99_ms']}",
                           f"{run['p99_ratio']}x",
                           f"{run['detection']['p99_ms']} / {run['detection']['max_ms']}",
                           run["bad_ie_syncs"]["p50_ms"]))
        md += ["", f"![dead IE]({rel}/bench-dead-ie.png)", ""]
    ie = res.get("ieapi")
    if ie:
        _plot_ieapi(ie, img_dir / "bench-ieapi.png")
        cyc, burst = ie["cycle"], ie["burst"]
        md += ["## 4. ieapi vs the docker SDK", "",
               f"Same private dockerd, local busybox image, {cyc['cycles']} cycles alternating. "
               "ieapi: `PUT` (create+start+inspect), `GET`, `DELETE` (stop+remove) over HTTP to "
               "its gunicorn; SDK: the same Docker calls with the low-level client.", "",
               _row("step", "docker SDK ms (median)", "ieapi ms (median)", "ratio"),
               _row("---", "---", "---", "---")]
        for k, label in (("create_start", "create + start (+inspect)"), ("inspect", "inspect"),
                         ("stop_remove", "stop + remove"), ("total", "**cycle**")):
            md.append(_row(label, cyc["sdk_ms"][k], cyc["ieapi_ms"][k],
                           f"{cyc['ieapi_ms'][k] / cyc['sdk_ms'][k]:.2f}"))
        md += ["", f"Burst: {burst['ieapi']['containers']} containers of one service (shared "
               f"network, DNS aliases) requested at once: all running after "
               f"**{burst['ieapi']['seconds_to_all_running']} s** through ieapi "
               f"({burst['ieapi']['seconds_to_all_removed']} s to delete them all); the SDK with "
               f"{burst['sdk']['threads']} threads (ieapi's thread count): "
               f"{burst['sdk']['seconds_to_all_running']} s "
               f"({burst['sdk']['seconds_to_all_removed']} s to delete).", "",
               f"![ieapi]({rel}/bench-ieapi.png)", ""]
    e2e = res.get("e2e")
    if e2e:
        _plot_e2e(e2e, img_dir / "bench-e2e.png")
        md += ["## 5. End to end: apply → Running", "",
               f"{e2e['applies']} SCDs applied one after the other through the "
               "Metacontroller-faithful driver (real clock) with the real hooks, ieapi, dockerd "
               "and the Orion-LD double; local busybox image. The hooks record the placement "
               f"first and act on the next sync, {e2e['intent_pause_ms']:g} ms later "
               f"(`LLO_RESYNC_INTENT_SECONDS`); {e2e['hook_calls_per_apply']:g} hook calls per "
               "apply (customize, intent sync, create sync).", "",
               f"p50 **{e2e['p50_ms']} ms**, min {e2e['min_ms']} ms, max {e2e['max_ms']} ms.", "",
               f"![e2e]({rel}/bench-e2e.png)", ""]
    nats = res.get("nats")
    if nats:
        _plot_nats(nats, img_dir / "bench-nats.png")
        md += _nats_section(nats, rel)
    b = res.get("burst")
    if b:
        _plot_burst(b, img_dir / "bench-burst.png")
        md += _burst_section(b, rel)
    out_md.parent.mkdir(parents=True, exist_ok=True)
    out_md.write_text("\n".join(md) + "\n")


def _nats_section(nats: R, rel: Path) -> list[str]:
    run = nats.get("run")
    when = (f" Measured in its own run ({run['machine']['date']}, load average at start "
            f"{run['machine']['load_average_start']}, at end {run['load_average_end']}, commit "
            f"{run['machine']['commit']})." if run else "")
    md = ["## 6. IEs behind NAT: NATS vs direct HTTP", "",
          f"One private dockerd, two IEs on it: the real ieapi under gunicorn (HTTP) and the real "
          f"NATS agent behind a real nats-server, {nats['scds_per_ie']} steady SCDs each, the "
          f"same hooks (production settings) for both. Steady sync: closed loop at "
          f"Metacontroller's default {nats['workers']} workers, median (by p50) of "
          f"{nats['windows_per_point']} windows of {nats['window_seconds']:g} s, HTTP and NATS "
          "alternating; each sync is one ensure to its IE. CPU per sync: the hooks, and the IE "
          "side (ieapi; agent + nats-server). Ensure: the hooks' IE client in the benchmark "
          "process ensuring an unchanged container, HTTP and NATS calls interleaved one by "
          f"one; throughput with {nats['workers']} threads." + when, "",
          _row("", "HTTP", "NATS", "NATS / HTTP"), _row("---", "---", "---", "---")]
    sync, ensure = nats["sync"], nats["ensure"]
    for label, part, key in (("sync p50 ms", sync, "p50_ms"), ("sync p99 ms", sync, "p99_ms"),
                             ("syncs/s", sync, "rate"),
                             ("hooks CPU ms/sync", sync, "hooks_cpu_ms_per_sync"),
                             ("IE-side CPU ms/sync", sync, "ie_cpu_ms_per_sync"),
                             ("ensure p50 ms", ensure, "p50_ms"),
                             ("ensure p99 ms", ensure, "p99_ms"),
                             (f"ensures/s ({nats['workers']} threads)", ensure, "rate")):
        h, n = part["http"][key], part["nats"][key]
        md.append(_row(label, h, n, f"{n / h:.2f}" if h else "-"))
    md += ["", f"![nats]({rel}/bench-nats.png)", ""]
    return md
