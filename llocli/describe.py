"""`llo-docker describe`: an SCD's phase, conditions, placement, pull progress and failure
tail on one screen (pure: the SCD's JSON in, text out)."""

from __future__ import annotations

from typing import Any

from hooks.resources import read_scd

JSON = dict[str, Any]


def render(scd_json: JSON) -> str:
    scd = read_scd(scd_json)
    s = scd.status
    spec = scd.spec
    lines: list[str] = []

    def row(label: str, value: object) -> None:
        lines.append(f"{label + ':':<13}{value}")

    row("Name", scd.metadata.name)
    row("Namespace", scd.metadata.namespace or "")
    if spec is not None:
        row("Image", spec.image + ("  (job)" if spec.is_job else ""))
        row("Selected IE", f"{spec.selected_ie.hostname}  ({spec.selected_ie.id})")
    else:
        row("Spec", f"invalid: {scd.spec_error}")
    row("Phase", s.phase.value + (f"  ({s.reason})" if s.reason else ""))
    if s.message:
        row("Message", s.message)
    if s.placement is not None:
        p = s.placement
        row("Placement", f"IE {p.ie}, container {p.container}, API {p.api_url}")
    else:
        row("Placement", "none yet")
    if s.migration is not None:
        t = s.migration.to
        row("Migrating", f"to IE {t.ie} ({t.api_url})")
    for cleanup in s.pending_cleanups:
        row("Cleanup", f"IE {cleanup.ie}, container {cleanup.container} ({cleanup.reason})")
    if s.container is not None:
        box = s.container
        parts = [box.state]
        if box.exit_code is not None:
            parts.append(f"exit code {box.exit_code}")
        parts.append(f"restarts {box.restart_count}")
        if box.started_at:
            parts.append(f"started {box.started_at}")
        if box.finished_at:
            parts.append(f"finished {box.finished_at}")
        row("Container", ", ".join(parts))
    if s.pull is not None:
        p2 = s.pull
        row("Pull", f"{p2.layers_done}/{p2.layers_total} layers, "
                    f"{p2.bytes_done}/{p2.bytes_total} bytes  {p2.message}".rstrip())
    if s.broker is not None:
        b = s.broker
        row("Broker", f"{b.state}, reported {b.reported or '-'}" +
            (f": {b.message}" if b.message else ""))
    if s.conditions:
        lines.append("Conditions:")
        width = max(len(c.type) for c in s.conditions)
        for c in s.conditions:
            lines.append(f"  {c.type:<{width}}  {c.status.value:<7}  {c.reason:<20}  "
                         f"{c.last_transition_time}  {c.message}".rstrip())
    if s.failure is not None:
        f = s.failure
        head = f"Last output (exit code {f.exit_code}"
        if f.finished_at:
            head += f", finished {f.finished_at}"
        head += f", restarts {f.restart_count}"
        head += ", older output left out):" if f.last_output_truncated else "):"
        lines.append(head)
        lines.extend(f"  | {line}" for line in f.last_output.splitlines())
        lines.append(f"  (the whole log: llo-docker logs -n {scd.metadata.namespace} "
                     f"{scd.metadata.name})")
    return "\n".join(lines) + "\n"
