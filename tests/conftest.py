import os

import pytest
import torch

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))

BACKBONES = ["svd", "cosmos", "wan2.1", "wan2.2", "wan2.1-i2v"]  # keys of TINY_PRESETS


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture
def no_cpp_compiler():
    """inductor's CPU C++ compiler set to one that does not exist, through inductor's own `config.patch` (pytest's
    monkeypatch on its config proxy leaves `cpp.cxx` deleted, hidden from later tests, with pytest >= 9.2)."""
    import torch._inductor.config as inductor_config

    with inductor_config.patch({"cpp.cxx": ("no-such-c++-compiler",)}):
        yield
