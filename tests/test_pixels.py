"""actwm.pixels: the three conventions and exact round trips between them."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from actwm.pixels import signed_to_uint8, signed_to_unit, uint8_to_signed, uint8_to_unit, unit_to_signed, unit_to_uint8


def _all_values() -> np.ndarray:
    """`(2, 4, 32, 3)` uint8 frames holding every value 0..255 once per channel, at distinct positions."""
    v = np.arange(256, dtype=np.uint8).reshape(1, 8, 32)
    rgb = np.stack([v, v[:, ::-1], np.roll(v, 7, axis=2)], -1)  # (1, 8, 32, 3)
    return rgb.reshape(2, 4, 32, 3)


def test_uint8_unit_signed_round_trips_exactly():
    frames = _all_values()
    unit = uint8_to_unit(frames)
    assert unit.shape == (2, 3, 4, 32) and unit.dtype == torch.float32
    # channel-first, and value / 255 exactly where it came from
    np.testing.assert_array_equal(unit[1, 2, 3, 5].item(), np.float32(frames[1, 3, 5, 2]) / np.float32(255))
    np.testing.assert_array_equal(unit_to_uint8(unit), frames)
    signed = uint8_to_signed(torch.from_numpy(frames))
    assert float(signed.min()) == -1.0 and float(signed.max()) == 1.0
    np.testing.assert_array_equal(signed_to_uint8(signed), frames)
    np.testing.assert_array_equal(signed_to_uint8(unit_to_signed(unit)), frames)
    np.testing.assert_array_equal(unit_to_uint8(signed_to_unit(signed)), frames)
    torch.testing.assert_close(signed_to_unit(unit_to_signed(unit)), unit, atol=1e-7, rtol=0)


def test_out_of_range_clamps_and_bad_dtype_is_refused():
    x = torch.tensor([-2.0, -1.0, 0.0, 1.0, 3.0]).reshape(1, 5, 1).expand(3, 5, 1)  # (3, H=5, W=1)
    np.testing.assert_array_equal(signed_to_uint8(x)[:, 0, 0], [0, 0, 128, 255, 255])
    np.testing.assert_array_equal(unit_to_uint8(x)[:, 0, 0], [0, 0, 0, 255, 255])
    assert float(signed_to_unit(x).min()) == 0.0 and float(signed_to_unit(x).max()) == 1.0
    with pytest.raises(ValueError, match="uint8"):
        uint8_to_unit(np.zeros((2, 2, 3), np.float32))
