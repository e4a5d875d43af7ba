"""The experiments table: registration, incarnations, the phase and bad keys, on the real server."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
import sqlalchemy as sa

from controller.storage import experiments, looks

NOW = datetime(2026, 11, 26, 12, tzinfo=UTC)


def test_an_experiment_created_again_under_the_same_name_starts_fresh(conn: sa.Connection) -> None:
    first = experiments.register_experiment(conn, "ml/ranker", uid="uid-1", spec={"a": 1})
    looks.save_analysis_state(conn, first, {"steps": [{"index": 0}]})
    same = experiments.register_experiment(conn, "ml/ranker", uid="uid-1")
    assert same == first  # the same incarnation
    second = experiments.register_experiment(conn, "ml/ranker", uid="uid-2", spec={"a": 2})
    assert second != first
    new = experiments.get_experiment(conn, "ml/ranker")
    old = experiments.get_experiment(conn, "ml/ranker@uid-1")
    state = looks.freshness_and_state(conn, second)[1]
    assert (new.id, new.uid, new.spec, state) == (second, "uid-2", {"a": 2}, {})
    assert (old.id, old.spec) == (first, {"a": 1})  # the first incarnation is kept, renamed


def test_registering_without_a_spec_keeps_the_stored_one(conn: sa.Connection) -> None:
    exp = experiments.register_experiment(
        conn, "ml/keep", spec={"steps": [1]}, allowed_lateness_seconds=60
    )
    assert experiments.register_experiment(conn, "ml/keep") == exp
    stored = experiments.get_experiment(conn, "ml/keep")
    assert (stored.spec, stored.allowed_lateness_seconds) == ({"steps": [1]}, 60)


def test_the_lateness_follows_the_live_spec_only_until_the_freeze(conn: sa.Connection) -> None:
    exp = experiments.register_experiment(conn, "ml/late", allowed_lateness_seconds=60)
    experiments.register_experiment(conn, "ml/late", allowed_lateness_seconds=90)
    assert experiments.get_experiment(conn, "ml/late").allowed_lateness_seconds == 90
    experiments.freeze_settings(
        conn, "ml/late", {"a": 1}, now=NOW, revenue_cap=3.0, allowed_lateness_seconds=120
    )
    experiments.register_experiment(conn, "ml/late", allowed_lateness_seconds=5)
    stored = experiments.get_experiment(conn, "ml/late")
    assert (stored.id, stored.allowed_lateness_seconds, stored.revenue_cap) == (exp, 120, 3.0)
    assert stored.settings == {"a": 1} and stored.settings_frozen_at == NOW
    assert stored.revenue_cap == 3.0


def test_a_new_incarnation_records_its_own_lateness(conn: sa.Connection) -> None:
    experiments.register_experiment(conn, "ml/again", uid="u1", allowed_lateness_seconds=60)
    experiments.freeze_settings(
        conn, "ml/again", {}, now=NOW, revenue_cap=None, allowed_lateness_seconds=60
    )
    experiments.register_experiment(conn, "ml/again", uid="u2", allowed_lateness_seconds=600)
    fresh = experiments.get_experiment(conn, "ml/again")
    assert (fresh.uid, fresh.allowed_lateness_seconds, fresh.settings_frozen_at) == (
        "u2",
        600,
        None,
    )


def test_set_phase_records_the_phase(conn: sa.Connection) -> None:
    exp = experiments.register_experiment(conn, "ml/phase")
    assert experiments.get_experiment(conn, "ml/phase").phase == "Pending"
    experiments.set_phase(conn, exp, "Progressing", now=NOW)
    stored = experiments.get_experiment(conn, "ml/phase")
    assert (stored.phase, stored.updated_at) == ("Progressing", NOW)


def test_keys_name_the_experiment(conn: sa.Connection) -> None:
    exp = experiments.register_experiment(conn, "ranker")
    assert experiments.experiment_id(conn, "default/ranker") == exp
    with pytest.raises(experiments.UnknownExperimentError, match="ml/nope is not registered"):
        experiments.experiment_id(conn, "ml/nope")
    with pytest.raises(experiments.UnknownExperimentError, match="ml/nope is not registered"):
        experiments.get_experiment(conn, "ml/nope")
    with pytest.raises(ValueError, match="not of the form namespace/name"):
        experiments.parse_key("a/b/c")


@pytest.mark.parametrize(
    ("cap", "lateness", "message"),
    [
        (0.0, 60, "revenue_cap: must be a positive finite number"),
        (float("inf"), 60, "revenue_cap: must be a positive finite number"),
        (None, -1, "allowed_lateness_seconds: must be ≥ 0"),
    ],
)
def test_bad_frozen_values_are_refused(
    conn: sa.Connection, cap: float | None, lateness: int, message: str
) -> None:
    experiments.register_experiment(conn, "ml/bad")
    with pytest.raises(ValueError, match=message):
        experiments.freeze_settings(
            conn, "ml/bad", {}, now=NOW, revenue_cap=cap, allowed_lateness_seconds=lateness
        )
    assert experiments.get_experiment(conn, "ml/bad").settings_frozen_at is None
