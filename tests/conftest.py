import os
from pathlib import Path

import numpy as np
import pytest

DATA = Path(__file__).parent / "data"


@pytest.fixture(scope="session")
def data_dir() -> Path:
    return DATA


def load_case(name: str):
    d = DATA / name
    z = lambda f: dict(np.load(d / f))  # noqa: E731
    return d, z("test.npz"), z("ref.npz")


@pytest.fixture
def tmp_model_dir(tmp_path):
    return tmp_path
