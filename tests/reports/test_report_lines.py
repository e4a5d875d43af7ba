"""The line each guardrail's estimate is judged against, from a frozen snapshot (pure)."""

from __future__ import annotations

import copy

import pytest

from controller.reports import view
from tests.specs import MINIMAL


@pytest.mark.parametrize(
    ("guardrail", "derived", "expected"),
    [
        (
            {
                "name": "rev",
                "kind": "mean",
                "direction": "higherIsBetter",
                "margin": {"relative": 0.02},
            },
            {},
            ("relative", -0.02, 0.0, None),
        ),
        (
            {
                "name": "cost",
                "kind": "mean",
                "direction": "lowerIsBetter",
                "margin": {"relative": 0.1},
            },
            {},
            ("relative", 0.1, 0.0, None),
        ),
        (
            {
                "name": "rev",
                "kind": "mean",
                "direction": "higherIsBetter",
                "margin": {"absolute": 0.5},
            },
            {},
            ("absolute", -0.5, 0.0, None),
        ),
        (
            {
                "name": "p99",
                "kind": "tail",
                "kappa": 1.2,
                "thresholdFromBaseline": {"quantile": 0.99},
            },
            {"thresholdsMs": {"p99": 250.0}},
            ("ratio", 1.2, 1.0, 250.0),
        ),
        ({"name": "errors", "kind": "rate", "kappa": 1.5}, {}, ("ratio", 1.5, 1.0, None)),
    ],
)
def test_margin_lines(guardrail: dict, derived: dict, expected: tuple) -> None:  # type: ignore[type-arg]
    from datetime import UTC, datetime

    from controller.experiment import frozen

    record = {"analysis": {"guardrails": [guardrail]}, "derived": derived}  # 0.1's shape
    at = datetime(2026, 1, 1, tzinfo=UTC)
    (info,) = view.guardrail_infos(frozen.from_json(record, frozen_at=at))
    assert (info.scale, info.margin_line, info.null_line, info.threshold_ms) == expected


def test_the_view_shows_the_alpha_recorded_at_the_freeze_not_a_recomputed_one() -> None:
    """A reader displays what the engine used: change the recorded split and the view follows."""
    import dataclasses
    from datetime import UTC, datetime

    from controller.experiment import frozen, validation
    from controller.storage import models

    raw = copy.deepcopy(MINIMAL)
    raw["analysis"]["alpha"] = 0.01
    raw["analysis"]["guardrails"] = raw["analysis"]["guardrails"][:1]
    fs = frozen.freeze(validation.validate_spec(raw), datetime(2026, 1, 1, tzinfo=UTC))
    odd = dataclasses.replace(
        fs, guardrails=tuple(dataclasses.replace(g, alpha=0.004) for g in fs.guardrails)
    )
    exp = models.Experiment(
        settings=frozen.to_json(odd),
        settings_frozen_at=fs.frozen_at,
        spec=raw,
        analysis_state={},
    )
    settings = view._settings(exp, view.settings_of(exp), None)
    assert settings.alpha_each == 0.004 != fs.guardrails[0].alpha
    assert (settings.alpha, settings.n_tests) == (0.01, 2)


def test_a_view_is_built_from_rows_without_a_database() -> None:
    """``view.from_rows`` is pure: an experiment that never ran still gives a view."""
    from datetime import UTC, datetime

    from controller.storage import models

    raw = copy.deepcopy(MINIMAL)
    raw["analysis"]["guardrails"] = raw["analysis"]["guardrails"][2:]
    exp = models.Experiment(
        namespace="ml",
        name="new",
        phase="Pending",
        spec=raw,
        settings=None,
        analysis_state={},
        created_at=datetime(2026, 1, 1, tzinfo=UTC),
    )
    report = view.from_rows(exp, [], [], None, [])
    assert (report.name, report.n_steps, report.outcome, report.failure) == ("new", 2, None, None)
    assert [g.name for g in report.guardrails] == ["errors"]
    assert report.settings.n_tests == 2  # the guardrail and the SRM check, as it would freeze
