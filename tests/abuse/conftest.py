"""The abuse tests use the fault tests' environment factory (``fault_env``) and failure
report: a fresh server and services process per test, their logs attached on failure."""

from tests.faults.conftest import fault_env, pytest_runtest_makereport  # noqa: F401
