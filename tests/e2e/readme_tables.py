"""README.md sections generated from the code, so the user's guide cannot drift from it: the
`LLO_*` settings (hooks/settings.py), every condition reason (hooks/reasons.py) and the output
of `python -m ieapi --help`. Hand-written cells (what a setting means, what to do about a
reason) are kept from the current README by their key; a new key gets `TODO`.

Rewrite README.md:  .venv/bin/python -m tests.e2e.readme_tables
tests/e2e/test_readme.py fails while README.md differs from what this writes or has a TODO.
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hooks.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
REASONS_SOURCE = ROOT / "hooks" / "reasons.py"
TODO = "TODO"
_MEMBER = re.compile(r'^\s+([A-Z_]+) = "([A-Za-z]+)"\s*(?:#\s*(?:noqa: \S+ - )?(.*))?$')
_GROUP = re.compile(r"^\s+# ---- (.+)$")


@dataclass(frozen=True)
class ReasonDoc:
    group: str
    value: str
    comment: str


def reason_docs(source: Path = REASONS_SOURCE) -> list[ReasonDoc]:
    """Every Reason member with its group heading and trailing comment, in source order."""
    docs: list[ReasonDoc] = []
    group = ""
    for line in source.read_text().splitlines():
        if heading := _GROUP.match(line):
            group = heading.group(1)
        elif member := _MEMBER.match(line):
            docs.append(ReasonDoc(group, member.group(2), (member.group(3) or "").strip()))
    return docs


def _cells(row: str) -> list[str]:
    return [c.strip() for c in row.strip().strip("|").split("|")]


def kept_cells(section: str) -> dict[str, list[str]]:
    """Rows of the tables in `section`, keyed by their first cell without backticks."""
    rows: dict[str, list[str]] = {}
    for line in section.splitlines():
        if line.startswith("| `"):
            cells = _cells(line)
            rows[cells[0].strip("`")] = cells
    return rows


def _row(cells: list[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def _kept(rows: dict[str, list[str]], key: str, column: int) -> str:
    cells = rows.get(key)
    return cells[column] if cells is not None and len(cells) > column and cells[column] else TODO


def reasons_section(old: str) -> str:
    rows = kept_cells(old)
    out: list[str] = []
    group = None
    for doc in reason_docs():
        if doc.group != group:
            group = doc.group
            out += ["", f"**{group[0].upper()}{group[1:]}**", "",
                    "| reason | meaning | what to do |", "|---|---|---|"]
        meaning = doc.comment or _kept(rows, doc.value, 1)
        out.append(_row([f"`{doc.value}`", meaning, _kept(rows, doc.value, 2)]))
    return "\n".join(out[1:])


def _default_text(value: Any) -> str:
    if value is None:
        return "unset"
    if value in ("", {}):
        return "empty"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, float):
        return f"`{value:g}`"
    return f"`{value}`"


def settings_section(old: str) -> str:
    rows = kept_cells(old)
    out = ["| variable | default | meaning |", "|---|---|---|"]
    for name, field in Settings.model_fields.items():
        env = Settings.env_name(name)
        default = _default_text(field.get_default(call_default_factory=True))
        out.append(_row([f"`{env}`", default, _kept(rows, env, 2)]))
    return "\n".join(out)


def ieapi_help_section(old: str) -> str:
    del old  # wholly generated
    text = subprocess.run([sys.executable, "-m", "ieapi", "--help"], check=True,
                          capture_output=True, text=True, cwd=ROOT, timeout=60).stdout
    return "```text\n" + text.rstrip() + "\n```"


SECTIONS: dict[str, Callable[[str], str]] = {
    "settings": settings_section,
    "reasons": reasons_section,
    "ieapi-help": ieapi_help_section,
}


def _markers(name: str) -> tuple[str, str]:
    return (f"<!-- generated:{name} (python -m tests.e2e.readme_tables) -->",
            f"<!-- end generated:{name} -->")


def section(text: str, name: str) -> str:
    begin, end = _markers(name)
    start, stop = text.index(begin) + len(begin), text.index(end)
    return text[start:stop].strip("\n")


def render(text: str) -> str:
    """`text` (README.md) with every generated section rewritten."""
    for name, build in SECTIONS.items():
        begin, end = _markers(name)
        start, stop = text.index(begin) + len(begin), text.index(end)
        text = text[:start] + "\n" + build(section(text, name)) + "\n" + text[stop:]
    return text


def main() -> int:
    text = README.read_text()
    new = render(text)
    if new != text:
        README.write_text(new)
        print("README.md rewritten")
    todo = new.count(TODO)
    if todo:
        print(f"README.md: {todo} cells say {TODO}: write them", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
