"""The fault tests drive Herald processes with the end-to-end fixtures."""

from tests.e2e.conftest import herald  # noqa: F401 - re-exported fixture
