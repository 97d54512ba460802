"""README.md, the user's guide, agrees with the code: its generated tables are current, and
every name a user would copy from it (variables, annotations, finalizers, paths) exists.
No Docker needed: these guard the guide the end-to-end tier's behaviour is described in."""

from __future__ import annotations

import re

import yaml

from hooks.reasons import Reason
from hooks.resources import (
    ANNOTATION_ABANDON,
    ANNOTATION_API_READY,
    ANNOTATION_ENTITY_ID,
    ANNOTATION_FORCE_DELETE,
)
from hooks.settings import Settings
from ieapi.agent.settings import AGENT_ENV_HELP
from ieapi.settings import ENV_HELP
from testbed.metacontroller import FINALIZER_PREFIX, MANIFESTS_DIR
from tests.e2e.readme_tables import README, ROOT, TODO, kept_cells, reason_docs, render, section

TEXT = README.read_text()


def test_generated_sections_are_current() -> None:
    assert render(TEXT) == TEXT, "run: .venv/bin/python -m tests.e2e.readme_tables"
    assert TODO not in TEXT


def test_every_reason_is_documented_once() -> None:
    assert [d.value for d in reason_docs()] == [r.value for r in Reason]
    rows = kept_cells(section(TEXT, "reasons"))
    assert set(rows) == {r.value for r in Reason}
    for reason, (_, meaning, todo) in rows.items():
        assert meaning, reason
        assert todo, reason


def test_every_setting_is_documented_with_its_default() -> None:
    rows = kept_cells(section(TEXT, "settings"))
    assert set(rows) == {Settings.env_name(f) for f in Settings.model_fields}
    assert rows["LLO_RESYNC_INTENT_SECONDS"][1] == "`0.2`"
    assert rows["LLO_BROKER_URL"][1] == "empty"
    named = set(re.findall(r"\bLLO_[A-Z_]+[A-Z]\b", TEXT))
    assert named <= set(rows), named - set(rows)


def test_ieapi_variables_exist() -> None:
    named = set(re.findall(r"\bIEAPI_[A-Z_]+[A-Z]\b", TEXT))
    assert named
    known = ENV_HELP + AGENT_ENV_HELP  # the HTTP server's and the NATS agent's
    assert named <= set(re.findall(r"\bIEAPI_[A-Z_]+[A-Z]\b", known))


def test_quick_start_block_comes_first() -> None:
    first = re.search(r"```bash\n(.*?)```", TEXT, re.DOTALL)
    assert first is not None
    commands = [line.split("#")[0].strip() for line in first.group(1).splitlines()]
    assert commands == ["./scripts/run.sh", "./scripts/test.sh"]


def test_names_a_user_copies_are_real() -> None:
    for annotation in (ANNOTATION_ABANDON, ANNOTATION_FORCE_DELETE, ANNOTATION_ENTITY_ID):
        assert annotation in TEXT
    assert f'{ANNOTATION_API_READY}: "false"' in TEXT
    for manifest in MANIFESTS_DIR.glob("compositecontroller-*.yaml"):
        name = yaml.safe_load(manifest.read_text())["metadata"]["name"]
        assert FINALIZER_PREFIX + name in TEXT


def test_paths_exist() -> None:
    paths = set(re.findall(
        r"(?<![\w/.-])((?:samples|crds|metacontroller|scripts|hooks|ieapi|tests)/[\w./-]*\w"
        r"|Dockerfile(?:\.ieapi)?)", TEXT))
    assert "samples/local/hooks/scd-sync-placed.json" in paths
    missing = sorted(p for p in paths if not (ROOT / p).exists() and "*" not in p)
    assert missing == []
