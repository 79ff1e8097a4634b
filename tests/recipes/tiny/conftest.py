"""A running offline teacher for the tests of the teacher itself (the synthesis tests have their own)."""

import pytest

from recipes.tiny.offline_teacher import OfflineTeacher
from tests.dataset_scripts.helpers_synthesis import API_KEY


@pytest.fixture
def teacher():
    with OfflineTeacher(api_key=API_KEY) as server:
        yield server
