"""The status patch removes what the new status no longer has (a merge patch keeps the rest)."""

from __future__ import annotations

from canaryctl_demo.kube.store import merge_patch
from controller.operate.executor import merge_patch_to


def test_a_key_the_new_status_drops_is_removed_by_the_patch() -> None:
    old = {
        "phase": "Progressing",
        "srm": {"enabled": True, "pValue": 1.0, "waiting": {"have": 0, "need": 100}},
        "forecast": {"likely": True},
        "guardrails": [{"name": "revenue", "waiting": {"have": 1, "need": 200}}],
    }
    new = {
        "phase": "Progressing",
        "srm": {"enabled": True, "pValue": 0.9},
        "guardrails": [{"name": "revenue"}],
    }
    patch = merge_patch_to(old, new)
    assert patch["srm"]["waiting"] is None and patch["forecast"] is None
    # applied as the API server applies a merge patch, the result is exactly the new status
    assert merge_patch(old, patch) == new


def test_an_unchanged_status_patches_to_nothing() -> None:
    status = {"phase": "Baseline", "srm": {"enabled": False}, "conditions": [{"type": "A"}]}
    assert merge_patch_to(status, dict(status)) == {}
    # a None in the new status is an absent key, as it is once stored
    assert merge_patch_to(status, {**status, "verdict": None}) == {}


def test_the_patch_holds_only_what_changed() -> None:
    old = {
        "phase": "Progressing",
        "lastAnalysisAt": "2026-11-26T08:01:00Z",
        "srm": {"enabled": True, "pValue": 1.0, "observedShare": 0.1},
        "conditions": [{"type": "A", "status": "True"}, {"type": "B", "status": "False"}],
    }
    new = {
        "phase": "Progressing",
        "lastAnalysisAt": "2026-11-26T08:02:00Z",
        "srm": {"enabled": True, "pValue": 0.8, "observedShare": 0.1},
        "conditions": [{"type": "A", "status": "True"}, {"type": "B", "status": "True"}],
    }
    patch = merge_patch_to(old, new)
    assert patch == {
        "lastAnalysisAt": "2026-11-26T08:02:00Z",
        "srm": {"pValue": 0.8},
        "conditions": new["conditions"],  # a list is replaced whole
    }
    assert merge_patch(old, patch) == new
