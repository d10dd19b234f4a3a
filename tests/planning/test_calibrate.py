"""The stop threshold: the smallest with at most 5% false stops on views outside the success region."""

import numpy as np
import pytest

from actwm.planning.calibrate import best_threshold


def test_threshold_caps_false_stops_and_keeps_the_most_recall():
    far = np.linspace(0.0, 0.5, 100)  # 5 of 100 far views at >= 0.48
    near = np.linspace(0.3, 1.0, 50)
    t, recall, false_stop = best_threshold(near, far)
    assert false_stop <= 0.05 and (far >= t).mean() == false_stop
    assert t == pytest.approx(far[95])  # the smallest threshold that keeps false stops at 5%
    assert recall == pytest.approx((near >= far[95]).mean())


def test_threshold_needs_both_kinds_of_views():
    with pytest.raises(ValueError, match="both near and far"):
        best_threshold(np.array([0.5]), np.array([]))
