import pytest


@pytest.fixture(autouse=True, scope="module")
def _trainers_one_thread(one_thread):
    """Every trainer test module runs with one torch thread (``one_thread``, tests/conftest.py)."""
