import os

import pytest
import torch

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))

BACKBONES = ["svd", "cosmos", "wan2.1", "wan2.2", "wan2.1-i2v"]  # keys of TINY_PRESETS


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
