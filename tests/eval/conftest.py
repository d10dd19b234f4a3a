import pytest
import torch


@pytest.fixture
def flush_denormals():
    """Random test weights make CPU convs hit denormal floats (10x slower); flush them in tests only."""
    torch.set_flush_denormal(True)
    yield
    torch.set_flush_denormal(False)
