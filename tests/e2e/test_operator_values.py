"""What each arm measured, in the metric's unit, in the status the operator writes.

``status.arms`` (revenue per request, error rate, p50/p95/p99 latency per arm),
``status.guardrails[]``'s ``metric``/``champion``/``challenger`` (and a tail's
``thresholdMs``) and ``status.impact`` (revenue per hour at full traffic with bounds), from a
real operator run on simulated traffic whose effect is known.
"""

from __future__ import annotations

import pytest

from canaryctl_demo.world import World, experiment_body
from tests.e2e.test_operator_e2e import BASE, DONE, world

__all__ = ["world"]  # the fixture, shared with the other end-to-end tests


def _guardrail(status: dict, name: str) -> dict:
    return next(g for g in status["guardrails"] if g["name"] == name)


def test_a_slower_challenger_shows_its_share_of_slow_requests_and_its_p99(world: World) -> None:
    world.create(experiment_body("slow"))
    status = world.run("slow", BASE.with_effect(latency_factor=1.3), until=DONE, max_minutes=240)
    assert status["reasonCode"] == "guardrail_failed:latency-p99", status.get("message")
    # the reason says the guardrail's name once (not "… latency-p99 failed: latency-p99: …")
    assert status["message"].startswith("guardrail latency-p99 failed: challenger worse than")
    assert status["message"].count("latency-p99") == 1
    tail = _guardrail(status, "latency-p99")
    assert tail["metric"] == "share_slower" and tail["unit"] == "share"
    assert tail["thresholdMs"] > 0
    assert 0 < tail["champion"] < tail["challenger"] < 1
    arms = status["arms"]
    champion, challenger = arms["champion"]["latencyMs"], arms["challenger"]["latencyMs"]
    assert champion["p50"] < champion["p95"] < champion["p99"]
    # every request 30 % slower: each quantile about 1.3 × (histogram edges are 2 % apart)
    # every request 30 % slower: the body's quantiles about 1.3 × (edges are 2 % apart; the
    # rollback comes after ~1,000 challenger requests, so its p99 rests on ~10 of them)
    assert challenger["p50"] / champion["p50"] == pytest.approx(1.3, rel=0.05)
    assert challenger["p95"] / champion["p95"] == pytest.approx(1.3, rel=0.1)
    assert challenger["p99"] > champion["p99"]
    errors = _guardrail(status, "errors")
    assert errors["metric"] == "error_rate" and 0 <= errors["champion"] < 1


def test_a_revenue_drop_shows_revenue_per_request_and_the_hourly_impact(world: World) -> None:
    world.create(experiment_body("poorer"))
    status = world.run("poorer", BASE.with_effect(revenue_effect=-0.3), until=DONE, max_minutes=240)
    assert status["reasonCode"] == "guardrail_failed:revenue", status.get("message")
    revenue = _guardrail(status, "revenue")
    assert revenue["metric"] == "revenue_per_request" and revenue["unit"] == "revenue"
    assert revenue["challenger"] / revenue["champion"] - 1 == pytest.approx(-0.3, abs=0.1)
    assert status["arms"]["champion"]["revenuePerRequest"] == pytest.approx(revenue["champion"])
    impact = status["impact"]
    assert impact["guardrail"] == "revenue"
    assert impact["lower"] <= impact["revenuePerHour"] <= impact["upper"] < 0
    # the relative estimate × the champion's revenue per request × the requests per hour
    expected = revenue["estimate"] * revenue["champion"] * impact["requestsPerHour"]
    assert impact["revenuePerHour"] == pytest.approx(expected, rel=1e-6)
    # 10,000 requests a minute in both arms together
    assert impact["requestsPerHour"] == pytest.approx(600_000, rel=0.05)
