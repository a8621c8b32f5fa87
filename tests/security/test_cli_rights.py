"""The operations commands under the generated ACL users: a refusal is reported as one, naming
the command refused, and ``doctor`` judges each user by what its role needs."""

from __future__ import annotations

import asyncio
import json
import urllib.request
from typing import Any

from typer.testing import CliRunner

from cachebus.cli import app
from cachebus.exits import ExitCode
from cachebus.service import ConsumerService
from cachebus.testing import eventually
from cachebus.testing.server import free_port
from tests.harness.registry import REGISTRY
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


async def test_the_sidecars_status_page_under_its_least_privilege_user(
    deployment: Deployment,
) -> None:
    # Given the bot's sidecar running as its generated user (refused TYPE, dead letters, other
    # groups' meta), with another service's group on the stream
    deployment.client("admin").xgroup_create(deployment.stream_key, "api", id="$", mkstream=True)
    port = free_port()
    service = ConsumerService.from_url(
        deployment.url("bot"), registry=REGISTRY, service="bot",
        settings={"block_ms": 100, "traces": False, "metrics": False, "health_port": port},
    )  # fmt: skip
    async with service:
        assert await service.wait_ready(30)

        def page() -> str:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/status", timeout=5) as reply:
                return str(reply.read().decode())

        def both_groups() -> bool:
            html = page()
            row = "<td>cb:stream:inval</td><td>{}</td>"
            return row.format("api") in html and row.format("bot") in html

        await eventually(lambda: asyncio.to_thread(both_groups), within=20, what="the page polled")
        html = await asyncio.to_thread(page)
    # Then it shows both groups, what it may not read as "?" with the refused commands named,
    # and no error in place of the data
    assert "id=problem" not in html
    assert "id=refused" in html and "XLEN cb:dlq:inval:bot" in html
    assert "not readable by this user: the dead letters of api, bot" in html
    assert "new_group" in html  # its own flush, from its own consumer
    assert html.count("<svg") == 2  # throughput, and the latency its consumer measures
