"""One torch thread for the eval tests: their matrices are tiny, and on a shared 2-core machine
OpenMP threads spinning at every barrier made the probe tests ~10x slower (42 s vs 4.6 s)."""

import pytest
import torch


@pytest.fixture(autouse=True)
def one_torch_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
