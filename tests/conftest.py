"""Shared test set-up: every test starts at the torch thread count the session started with.

Why: the CLI's --threads (and its default, which drops to one thread on a loaded machine) sets torch's
process-wide count, and tests call the CLI in-process, so without this a test's numbers would depend on
which tests ran before it (docs/default-model.md, item 25)."""

import pytest
import torch

SESSION_THREADS = torch.get_num_threads()


@pytest.fixture(autouse=True)
def session_threads():
    """Restore the session's thread count before and after each test."""
    torch.set_num_threads(SESSION_THREADS)
    yield
    torch.set_num_threads(SESSION_THREADS)
