"""The operations commands under the generated ACL users: a refusal is reported as one, naming
the command refused, and ``doctor`` judges each user by what its role needs."""

from __future__ import annotations

import json
from typing import Any

from typer.testing import CliRunner

from cachebus.cli import app
from cachebus.exits import ExitCode
from tests.security.conftest import Deployment

runner = CliRunner()


def _acl_checks(doc: dict[str, Any], user: str) -> dict[str, Any]:
    (check,) = [c for c in doc["checks"] if c["name"] == "acl" and f"'{user}'" in c["detail"]]
    return check


def test_status_as_a_user_without_the_rights_is_refused_and_says_which_command(
    deployment: Deployment,
) -> None:
    deployment.client("producer").xadd(deployment.stream_key, {"f": "v"})
    result = runner.invoke(app, ["status", "--redis-url", deployment.url("producer"), "--json"])
    assert result.exit_code == ExitCode.FINDING
    assert result.stdout == ""  # no report built from an error reply
    assert f"refused: TYPE {deployment.stream_key}" in result.stderr
    assert "NOPERM" in result.stderr
    assert "not a stream" not in result.stderr
    # the ops user may: the same command works
    ok = runner.invoke(app, ["status", "--redis-url", deployment.url("ops"), "--json"])
    assert ok.exit_code == ExitCode.OK, ok.output


def test_doctor_checks_a_consumer_users_xtrim_only_with_retention(deployment: Deployment) -> None:
    bot = deployment.user("bot")  # generated without retention: XTRIM denied on purpose
    workers = deployment.user("workers")  # generated with retention
    admin = deployment.url("admin")

    def doctor(service: str, user: str, *retention: str) -> dict[str, Any]:
        result = runner.invoke(
            app,
            ["doctor", "--redis-url", admin, "--service", service,
             "--acl-user", f"consumer:{user}", *retention, "--json"],
        )  # fmt: skip
        assert result.exit_code in (ExitCode.OK, ExitCode.FINDING), result.output
        return dict(json.loads(result.stdout))

    assert _acl_checks(doctor("bot", bot), bot)["level"] == "ok"
    refused = _acl_checks(doctor("bot", bot, "--retention"), bot)
    assert refused["level"] == "error" and "XTRIM" in refused["detail"]
    assert _acl_checks(doctor("workers", workers, "--retention"), workers)["level"] == "ok"
