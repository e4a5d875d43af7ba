"""The frozen settings: built once, one versioned JSON codec, and what the engine will use."""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

import analysis
from controller.experiment import defaults, frozen, spec, validation
from controller.operate import evaluate

EXAMPLES = sorted((Path(__file__).parents[2] / "manifests" / "examples").glob("*.yaml"))
AT = datetime(2026, 11, 26, 9, 0, tzinfo=UTC)


def _spec(path: Path) -> spec.ExperimentSpec:
    return validation.parse_experiment(yaml.safe_load(path.read_text()))


def _freeze(s: spec.ExperimentSpec) -> frozen.FrozenSettings:
    tails = {g.name: 130.0 for g in s.analysis.guardrails if isinstance(g, spec.TailGuardrail)}
    return frozen.freeze(s, AT, derived_cap=4.5, derived_thresholds_ms=tails)


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_the_codec_round_trips(path: Path) -> None:
    settings = _freeze(_spec(path))
    assert frozen.from_json(frozen.to_json(settings), frozen_at=AT) == settings


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_each_test_records_the_alpha_the_engine_uses(path: Path) -> None:
    s = _spec(path)
    settings = _freeze(s)
    engine = analysis.AnalysisSettings(alpha=s.analysis.alpha, srm_check=s.analysis.srm_enabled)
    each = engine.alpha_each(len(s.analysis.guardrails))
    assert [g.alpha for g in settings.guardrails] == [each] * len(s.analysis.guardrails)
    assert settings.srm.alpha == (each if s.analysis.srm_enabled else 0.0)
    total = sum(g.alpha for g in settings.guardrails) + settings.srm.alpha
    assert total == pytest.approx(s.analysis.alpha)


def test_a_disabled_srm_check_gives_its_share_to_the_guardrails() -> None:
    raw = yaml.safe_load(EXAMPLES[0].read_text())
    raw["spec"]["analysis"]["srm"] = {"enabled": False}
    settings = _freeze(validation.parse_experiment(raw))
    n = len(settings.guardrails)
    assert settings.srm == frozen.SrmTest(False, 0.0)
    assert all(g.alpha == pytest.approx(settings.family_alpha / n) for g in settings.guardrails)


def test_scales_and_margin_lines() -> None:
    by_name = {g.name: g for g in _freeze(_spec(EXAMPLES[0])).guardrails}
    revenue, latency = by_name["revenue"], by_name["latency-p99"]
    assert (revenue.scale, revenue.margin_line, revenue.null_line) == (
        frozen.Scale.RELATIVE,
        -revenue.margin,  # type: ignore[operator]
        0.0,
    )
    assert (latency.scale, latency.margin_line, latency.null_line) == (
        frozen.Scale.RATIO,
        latency.kappa,
        1.0,
    )


def test_derived_values_are_recorded_with_their_source() -> None:
    raw = yaml.safe_load(EXAMPLES[0].read_text())
    a = raw["spec"]["analysis"]
    a["baseline"] = {"duration": "15m"}
    a["revenueCap"] = {"fromBaseline": {"quantile": 0.999}}
    for g in a["guardrails"]:
        if g["kind"] == "tail":
            g.pop("thresholdMs", None)
            g["thresholdFromBaseline"] = {"quantile": 0.99, "margin": 0.1}
    settings = _freeze(validation.parse_experiment(raw))
    assert settings.revenue_cap == 4.5
    assert settings.revenue_cap_source == "baseline p99.9 of the champion"
    tail = next(g for g in settings.guardrails if g.kind is spec.GuardrailKind.TAIL)
    assert (tail.threshold_ms, tail.threshold_source) == (130.0, "baseline")


def test_the_unversioned_shape_of_version_0_1_is_read() -> None:
    s = _spec(EXAMPLES[0])
    tails = {g.name: 130.0 for g in s.analysis.guardrails if isinstance(g, spec.TailGuardrail)}
    old: dict[str, Any] = {
        "analysis": frozen.analysis_to_raw(s.analysis),
        "derived": {"revenueCap": 4.5, "thresholdsMs": tails},
        "routing": frozen.routing_to_raw(s),
        "revenueCap": 4.5,
    }
    read = frozen.from_json(old, frozen_at=AT)
    new = _freeze(s)
    assert read.guardrails == new.guardrails
    assert (read.analysis, read.srm, read.routing) == (new.analysis, new.srm, new.routing)
    assert read.revenue_cap == new.revenue_cap


def test_a_newer_version_is_refused_in_one_line() -> None:
    data = frozen.to_json(_freeze(_spec(EXAMPLES[0])))
    data["version"] = frozen.VERSION + 1
    with pytest.raises(ValueError, match="newer than this canaryctl reads"):
        frozen.from_json(data, frozen_at=AT)


def test_unknown_guardrail_names_are_refused_naming_the_known_ones() -> None:
    settings = _freeze(_spec(EXAMPLES[0]))
    with pytest.raises(KeyError, match="revenue"):
        settings.guardrail("nope")


def test_the_json_is_plain_data() -> None:
    data = frozen.to_json(_freeze(_spec(EXAMPLES[1])))
    assert copy.deepcopy(data) == yaml.safe_load(yaml.safe_dump(data))
    assert dataclasses.is_dataclass(frozen.from_json(data, frozen_at=AT))


def test_a_replayed_freeze_writes_the_same_json() -> None:
    """A transition re-decided after a crash freezes again, later: the record must not differ."""
    s = _spec(EXAMPLES[0])
    later = AT.replace(minute=7)
    assert frozen.to_json(_freeze(s)) == frozen.to_json(
        frozen.freeze(
            s,
            later,
            derived_cap=4.5,
            derived_thresholds_ms={
                g.name: 130.0 for g in s.analysis.guardrails if isinstance(g, spec.TailGuardrail)
            },
        )
    )


def test_the_time_of_the_freeze_is_needed_to_read_the_record() -> None:
    with pytest.raises(ValueError, match="frozen_at"):
        frozen.from_json(frozen.to_json(_freeze(_spec(EXAMPLES[0]))))


def _before_eligibility(data: dict[str, Any]) -> dict[str, Any]:
    """A record as canaryctl wrote it before per-test eligibility: burnIn had two keys, and
    the digest hashed exactly those."""
    old = copy.deepcopy(data)
    burn_in = old["analysis"]["burnIn"]
    for key in ("minEvents", "minSrmRequests"):
        del burn_in[key]
    text = json.dumps(old["analysis"], sort_keys=True, separators=(",", ":"))
    old["digest"] = "sha256:" + hashlib.sha256(text.encode()).hexdigest()
    return old


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_a_record_from_before_per_test_eligibility_is_read_with_the_new_defaults(
    path: Path,
) -> None:
    s = _spec(path)
    old = _before_eligibility(frozen.to_json(_freeze(s)))
    read = frozen.from_json(old, frozen_at=AT)
    b = read.analysis.burn_in
    # the recorded values keep their meaning for the mean (revenue) test they were set for
    assert (b.min_requests, b.min_non_zero_revenue) == (
        old["analysis"]["burnIn"]["minRequests"],
        old["analysis"]["burnIn"]["minNonZeroRevenue"],
    )
    assert (b.min_events, b.min_srm_requests) == (
        defaults.BURN_IN_MIN_EVENTS,
        defaults.BURN_IN_MIN_SRM_REQUESTS,
    )
    # the live spec (unchanged) still matches the record: no false "settings edited"
    assert frozen.digest(s.analysis) == read.digest == old["digest"]
    engine = evaluate.settings_for(read)
    assert (engine.burn_in_requests, engine.burn_in_nonzero) == (
        b.min_requests,
        b.min_non_zero_revenue,
    )
    assert (engine.min_events, engine.srm_min_requests) == (b.min_events, b.min_srm_requests)


def test_setting_an_eligibility_minimum_changes_the_digest() -> None:
    s = _spec(EXAMPLES[0])
    edited = dataclasses.replace(
        s.analysis, burn_in=dataclasses.replace(s.analysis.burn_in, min_events=50)
    )
    assert frozen.digest(edited) != frozen.digest(s.analysis)
    back = frozen.from_json(frozen.to_json(frozen.freeze_analysis(edited, AT, None)), frozen_at=AT)
    assert back.analysis.burn_in.min_events == 50


def test_the_spec_defaults_are_the_engines() -> None:
    engine = analysis.AnalysisSettings()
    assert (
        engine.burn_in_requests,
        engine.burn_in_nonzero,
        engine.min_events,
        engine.srm_min_requests,
    ) == (
        defaults.BURN_IN_MIN_REQUESTS,
        defaults.BURN_IN_MIN_NON_ZERO_REVENUE,
        defaults.BURN_IN_MIN_EVENTS,
        defaults.BURN_IN_MIN_SRM_REQUESTS,
    )
