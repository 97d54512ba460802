"""Table tests of the pure decisions: every case in tests/hooks/fixtures/*.json."""

from __future__ import annotations

import pytest

from tests.hooks.cases import Case, load_cases, run_case

CASES = load_cases()


def test_fixtures_are_there() -> None:
    assert len(CASES) >= 30


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_case(case: Case) -> None:
    run_case(case)
