"""``counts.log_e_counts`` computes repeated rows once: the same values as element by element."""

import numpy as np

from analysis import counts


def test_rows_carried_down_equal_rows_computed() -> None:
    rng = np.random.default_rng(4)
    rows, steps = 400, 3
    # cumulative counts that stop growing (a closed step) or have not started, as in a replay
    grow = rng.poisson(3.0, size=(rows, steps, 2)).astype(float)
    grow[:150, 1:] = 0.0
    grow[150:, 0] = 0.0
    grow[300:, 1] = 0.0
    events = grow.cumsum(axis=0)
    pi0 = np.broadcast_to(np.array([0.05, 0.2, 0.5]), (rows, steps))
    a = np.where(np.arange(rows)[:, None] < 200, 2.0, 3.0) * np.ones((rows, steps))
    for harm in (True, False):
        got = counts.log_e_counts(events[..., 1], events[..., 0], pi0, harm=harm, a=a, b=30.0)
        each = np.array(
            [
                [
                    counts.log_e_counts(
                        events[i, j, 1], events[i, j, 0], pi0[i, j], harm=harm, a=a[i, j], b=30.0
                    )
                    for j in range(steps)
                ]
                for i in range(rows)
            ]
        )
        np.testing.assert_array_equal(got, each)
        assert np.isfinite(got).all() and (got != 0).any()
