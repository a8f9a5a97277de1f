"""Nothing phones home: the project opts out of Kedro telemetry in a committed file, so a bare
`kedro run` (without the Makefile's environment variables) stays offline."""

from kedro_telemetry.plugin import _check_for_telemetry_consent

from tests.project_copy import PROJECT_ROOT


def test_kedro_telemetry_is_off_without_the_environment_variables(monkeypatch):
    for variable in ("DO_NOT_TRACK", "KEDRO_DISABLE_TELEMETRY"):
        monkeypatch.delenv(variable, raising=False)
    assert _check_for_telemetry_consent(PROJECT_ROOT) is False
