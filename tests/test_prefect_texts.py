"""What a deployment run says in Prefect (its logs, its state message, its name), checked without a server: the
flow's body is called as a function, Prefect's logger and run context stood in for (docs/trials/21-prefect.md,
"Noticed and left")."""

from __future__ import annotations

import logging

import pytest

from braze_migrate.settings import ConfigError


class Lines(logging.Handler):
    def __init__(self):
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record):
        self.lines.append(record.getMessage())


@pytest.fixture
def run_logs(monkeypatch):
    """Every line the flow and its tasks log, in order (one run logger for both, as the run's logs show them)."""
    import flows.decisions
    import flows.load

    handler = Lines()
    logger = logging.getLogger("test.run_logs")
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    for module in (flows.load, flows.decisions):
        monkeypatch.setattr(module, "get_run_logger", lambda: logger)
    monkeypatch.setattr(flows.load.tonight, "rename", lambda name: None)
    yield handler.lines
    logger.removeHandler(handler)


def test_a_user_error_of_a_task_is_logged_once_in_the_run_and_kept_as_its_state_message(run_logs, monkeypatch,
                                                                                          tmp_path):
    """The trial of #21 (case 6) saw each user error's line twice in a deployment run: by the task, then by the
    flow. The task's line stays (the flow run's logs show it, with the task it came from); the flow's goes."""
    import flows.load
    from flows.decisions import cleanly

    line = f"cannot write {tmp_path}/snapshot: it is read-only; give this user write access"

    def plan_task_then_called(*args, **kwargs):  # a `cleanly` task as `called` hands its error to the flow
        def boom():
            raise ConfigError(line)

        raise cleanly(boom)().data

    monkeypatch.setattr(flows.load.stages, "run_load", plan_task_then_called)
    monkeypatch.setenv("BRAZE_REST_ENDPOINT", "http://127.0.0.1:9")
    monkeypatch.setenv("BRAZE_API_KEY", "k")
    state = flows.load.run("sync", str(tmp_path / "n1"), None, str(tmp_path / "state"), {})
    assert state.is_failed() and state.message == line
    assert run_logs.count(line) == 1
    # An error of the flow's own (no task logged it) is still logged, once; so is the same task error again.
    def flow_error(*args, **kwargs):
        raise ConfigError("the flow's own error")

    monkeypatch.setattr(flows.load.stages, "run_load", flow_error)
    state = flows.load.run("sync", str(tmp_path / "n1"), None, str(tmp_path / "state"), {})
    assert state.is_failed() and run_logs.count("the flow's own error") == 1
    monkeypatch.setattr(flows.load.stages, "run_load", plan_task_then_called)
    flows.load.run("sync", str(tmp_path / "n1"), None, str(tmp_path / "state"), {})
    assert run_logs.count(line) == 2


def test_a_deployment_run_says_retry_or_run_the_deployment_again_where_the_cli_says_the_same_command(
        run_logs, monkeypatch, tmp_path):
    """The trial of #21 (case 6): "the same command then resumes" read oddly in Prefect, where there is no
    command. The CLI keeps its words; the flow run's log line and state message say the Prefect way."""
    import errno

    import flows.load
    from braze_migrate.errors import user_message
    from connectors.state.private import unusable

    denied = unusable(OSError(errno.EACCES, "Permission denied", str(tmp_path / "snapshot")))
    full = unusable(OSError(errno.EFBIG, "File too large", str(tmp_path / "runs")))
    assert "the same command then resumes" in user_message(denied)  # the CLI's line, unchanged
    assert "the same command resumes" in user_message(full)
    import flows.decisions

    assert flows.decisions.one_line(denied) == user_message(denied)  # the CLI's own flow runs: the CLI's words
    monkeypatch.setattr(flows.decisions, "in_deployment", lambda: True)
    for error in (denied, full):
        def load(*args, error=error, **kwargs):
            raise error

        monkeypatch.setattr(flows.load.stages, "run_load", load)
        monkeypatch.setenv("BRAZE_REST_ENDPOINT", "http://127.0.0.1:9")
        monkeypatch.setenv("BRAZE_API_KEY", "k")
        state = flows.load.run("sync", str(tmp_path / "n1"), None, str(tmp_path / "state"), {})
        assert state.is_failed() and "the same command" not in state.message
        assert "a new run of the deployment with the same parameters (or Retry)" in state.message
        assert state.message in run_logs and not any("the same command" in line for line in run_logs)
