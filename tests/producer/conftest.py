"""Producer tests' shared fixtures."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture()
def single_thread():
    """Small problems: one intra-op thread avoids OpenMP waits on a shared machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
