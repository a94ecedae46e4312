import pytest
import torch


@pytest.fixture(params=['cpu', pytest.param('cuda', marks=pytest.mark.skipif(
    not torch.cuda.is_available(), reason='needs CUDA'))])
def device(request) -> torch.device:
    """Runs a test on the CPU and, where one is present, on a CUDA GPU."""
    return torch.device(request.param)
