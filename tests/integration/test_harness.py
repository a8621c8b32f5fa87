"""The harness itself: servers really persist, die, pause; the proxy really cuts and stalls."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator

import pytest
import redis

from cachebus.testing import FaultProxy, RedisServer, ServerOptions, make_certificates

pytestmark = pytest.mark.fault


def test_aof_data_survives_kill_and_restart(
    redis_server_factory: Callable[..., RedisServer],
) -> None:
    # Given a server with AOF fsynced on every write
    server = redis_server_factory(ServerOptions(persistence="aof-always"))
    client = server.client()
    for i in range(500):
        client.xadd("s", {"n": str(i)})
    client.set("k", "v")
    client.close()
    old_pid, old_port = server.pid, server.port
    # When it is SIGKILLed and restarted on the same port and directory
    server.kill()
    assert not server.running
    server.restart()
    # Then everything acknowledged is back
    assert server.pid != old_pid and server.port == old_port
    client = server.client()
    assert client.xlen("s") == 500
    assert client.get("k") == b"v"
    client.close()


def test_without_persistence_a_restart_loses_everything(redis_server: RedisServer) -> None:
    client = redis_server.client()
    client.set("k", "v")
    client.close()
    redis_server.restart()
    client = redis_server.client()
    assert client.get("k") is None
    client.close()


def test_kill_ends_the_process_by_pid(redis_server: RedisServer) -> None:
    pid = redis_server.pid
    assert pid is not None
    redis_server.kill()
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def test_pause_makes_commands_time_out_and_resume_recovers(redis_server: RedisServer) -> None:
    client = redis_server.client(socket_timeout=0.3)
    assert client.ping()
    redis_server.pause()
    started = time.monotonic()
    with pytest.raises(redis.TimeoutError):
        client.ping()
    assert time.monotonic() - started < 2.0
    redis_server.resume()
    client.close()
    client = redis_server.client(socket_timeout=2)
    assert client.ping()
    client.close()


def test_options_reach_the_server(redis_server_factory: Callable[..., RedisServer]) -> None:
    server = redis_server_factory(ServerOptions(maxmemory="3mb", maxmemory_policy="allkeys-lru"))
    client = server.client()
    assert client.config_get("maxmemory-policy")["maxmemory-policy"] == "allkeys-lru"
    assert int(client.config_get("maxmemory")["maxmemory"]) == 3 * 1024 * 1024
    client.close()


def test_acl_file_is_loaded(tmp_path, redis_server_factory: Callable[..., RedisServer]) -> None:
    aclfile = tmp_path / "users.acl"
    aclfile.write_text(
        "user default off\n"
        "user admin on >adminpw ~* &* +@all\n"
        "user reader on >readerpw ~* -@all +get +ping +hello\n"
    )
    server = redis_server_factory(
        ServerOptions(aclfile=aclfile), username="admin", password="adminpw"
    )
    admin = server.client()
    admin.set("k", "v")
    admin.close()
    reader = redis.Redis(host=server.host, port=server.port, username="reader", password="readerpw")
    assert reader.get("k") == b"v"
    with pytest.raises(redis.exceptions.NoPermissionError):
        reader.set("k", "w")
    reader.close()
    anonymous = redis.Redis(host=server.host, port=server.port, retry=None)
    with pytest.raises(redis.exceptions.AuthenticationError):
        anonymous.get("k")
    anonymous.close()


def test_tls_server_answers_rediss(
    tmp_path, redis_server_factory: Callable[..., RedisServer]
) -> None:
    tls = make_certificates(tmp_path / "certs")
    server = redis_server_factory(ServerOptions(tls=tls))
    assert server.url.startswith("rediss://")
    client = server.client()
    assert client.ping()
    client.close()
    # Without the CA the certificate is refused.
    plain = redis.Redis(host=server.host, port=server.port, ssl=True, retry=None, socket_timeout=2)
    with pytest.raises(redis.ConnectionError):
        plain.ping()
    plain.close()


def test_cluster_mode_starts_a_cluster_node(
    redis_server_factory: Callable[..., RedisServer],
) -> None:
    server = redis_server_factory(ServerOptions(cluster=True))
    client = server.client()
    info = client.execute_command("CLUSTER", "INFO")
    text = info.decode() if isinstance(info, bytes) else str(info)
    assert "cluster_state" in text
    client.close()


def test_proxy_passes_traffic(
    redis_server: RedisServer, fault_proxy_factory: Callable[[RedisServer], FaultProxy]
) -> None:
    proxy = fault_proxy_factory(redis_server)
    client = redis.Redis.from_url(proxy.url_for(redis_server.url), retry=None, socket_timeout=2)
    client.set("k", "v")
    assert client.get("k") == b"v"
    client.close()


def test_cut_proxy_surfaces_redis_connection_error(
    redis_server: RedisServer, fault_proxy_factory: Callable[[RedisServer], FaultProxy]
) -> None:
    proxy = fault_proxy_factory(redis_server)
    client = redis.Redis.from_url(proxy.url_for(redis_server.url), retry=None, socket_timeout=2)
    assert client.ping()
    proxy.cut()
    started = time.monotonic()
    with pytest.raises(redis.ConnectionError):
        client.ping()
    # A new connection is refused too, immediately, until heal.
    with pytest.raises(redis.ConnectionError):
        client.ping()
    assert time.monotonic() - started < 1.5
    proxy.heal()
    assert client.ping()
    client.close()


def test_blackholed_proxy_surfaces_timeout_within_bound(
    redis_server: RedisServer, fault_proxy_factory: Callable[[RedisServer], FaultProxy]
) -> None:
    proxy = fault_proxy_factory(redis_server)
    bound = 0.5
    client = redis.Redis.from_url(proxy.url_for(redis_server.url), retry=None, socket_timeout=bound)
    assert client.ping()
    proxy.blackhole()
    started = time.monotonic()
    with pytest.raises(redis.TimeoutError):
        client.ping()
    elapsed = time.monotonic() - started
    assert bound * 0.8 <= elapsed < bound + 1.0
    proxy.heal()
    client.close()
    client = redis.Redis.from_url(proxy.url_for(redis_server.url), retry=None, socket_timeout=2)
    assert client.ping()
    client.close()


def test_delayed_proxy_adds_latency(
    redis_server: RedisServer, fault_proxy_factory: Callable[[RedisServer], FaultProxy]
) -> None:
    proxy = fault_proxy_factory(redis_server)
    client = redis.Redis.from_url(proxy.url_for(redis_server.url), retry=None, socket_timeout=5)
    client.ping()
    proxy.delay(150)
    started = time.monotonic()
    client.ping()
    # Request and reply each wait 150 ms.
    assert time.monotonic() - started >= 0.28
    proxy.heal()
    started = time.monotonic()
    client.ping()
    assert time.monotonic() - started < 0.1
    client.close()


async def test_proxy_works_with_asyncio_clients(
    redis_server: RedisServer, fault_proxy_factory: Callable[[RedisServer], FaultProxy]
) -> None:
    import redis.asyncio

    proxy = fault_proxy_factory(redis_server)
    client = redis.asyncio.Redis.from_url(
        proxy.url_for(redis_server.url), retry=None, socket_timeout=0.5
    )
    assert await client.ping()
    proxy.cut()
    with pytest.raises(redis.ConnectionError):
        await client.ping()
    proxy.heal()
    assert await client.ping()
    await client.aclose()


def test_redis_url_fixture_answers(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    assert client.ping()
    client.close()


# ---- the RESP-aware proxy: faults timed against one command ---------------------------------
@pytest.fixture
def resp_proxy(redis_server: RedisServer) -> Iterator[FaultProxy]:
    with FaultProxy(redis_server.host, redis_server.port, resp=True) as proxy:
        yield proxy


def _through(proxy: FaultProxy, server: RedisServer, timeout: float = 2) -> redis.Redis:
    return redis.Redis.from_url(proxy.url_for(server.url), retry=None, socket_timeout=timeout)


def test_resp_framing_finds_message_ends_and_command_args() -> None:
    from cachebus.testing.resp import command_args, message_end

    reply = b"*2\r\n$3\r\nabc\r\n*1\r\n:5\r\n+OK\r\n"
    assert message_end(reply) == len(reply) - 5
    assert message_end(reply, len(reply) - 5) == len(reply)
    assert message_end(reply[:-8]) is None  # cut inside the nested array
    assert message_end(b"$-1\r\n") == 5 and message_end(b"*-1\r\n") == 5
    assert message_end(b"%1\r\n+a\r\n:1\r\n_\r\n") == 12  # RESP3 map
    assert message_end(b"$5\r\nab") is None
    assert command_args(b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$2\r\nv\n\r\n") == [b"SET", b"k", b"v\n"]
    assert command_args(b"PING\r\n") == [b"PING"]


def test_proxy_resets_after_the_server_ran_the_chosen_command(
    redis_server: RedisServer, resp_proxy: FaultProxy
) -> None:
    client = _through(resp_proxy, redis_server)
    direct = redis_server.client()
    fault = resp_proxy.on_command("INCRBY", "reset_after", when=lambda a: a[1] == b"n")
    client.incr("other")  # not chosen: passes
    with pytest.raises(redis.ConnectionError):
        client.incr("n")
    assert fault.fired.is_set() and fault.args == [b"INCRBY", b"n", b"1"]
    assert direct.get("n") == b"1"  # the server ran it; only the reply was lost
    assert client.incr("n") == 2  # one fault, one time: the next passes
    assert resp_proxy.count("INCRBY") == 3
    client.close()
    direct.close()


def test_proxy_resets_before_sending_and_then_refuses_for_a_while(
    redis_server: RedisServer, resp_proxy: FaultProxy
) -> None:
    client = _through(resp_proxy, redis_server)
    direct = redis_server.client()
    fault = resp_proxy.on_command("SET", "reset_before", refuse_s=0.5)
    with pytest.raises(redis.ConnectionError):
        client.set("k", "v")
    assert direct.get("k") is None  # never reached the server
    with pytest.raises(redis.ConnectionError):
        client.ping()  # refused while the window lasts
    assert resp_proxy.connections_refused >= 1
    assert fault.healed_at is not None
    while time.monotonic() < fault.healed_at + 0.05:
        time.sleep(0.02)
    assert client.ping()
    client.close()
    direct.close()


def test_proxy_drops_or_holds_a_reply(redis_server: RedisServer, resp_proxy: FaultProxy) -> None:
    client = _through(resp_proxy, redis_server, timeout=0.3)
    resp_proxy.on_command("GET", "drop_reply")
    with pytest.raises(redis.TimeoutError):
        client.get("k")
    client.close()
    slow = _through(resp_proxy, redis_server, timeout=5)
    fault = resp_proxy.on_command("ECHO", "hold")
    pipe = slow.pipeline(transaction=False)
    pipe.echo("first").echo("second")
    results: list[object] = []
    thread = threading.Thread(target=lambda: results.extend(pipe.execute()))
    thread.start()
    assert fault.fired.wait(2)
    time.sleep(0.1)  # a hold really holds: nothing arrives (a bounded check, not a wait)
    assert results == []
    resp_proxy.release()
    thread.join(5)
    assert results == [b"first", b"second"]
    slow.close()


def test_proxy_holds_a_request_until_released(
    redis_server: RedisServer, resp_proxy: FaultProxy
) -> None:
    client = _through(resp_proxy, redis_server, timeout=5)
    direct = redis_server.client()
    fault = resp_proxy.on_command("SET", "hold_request")
    thread = threading.Thread(target=lambda: client.set("k", "held"))
    thread.start()
    assert fault.fired.wait(2)
    direct.set("k", "direct")  # runs first: the held SET has not reached the server
    assert resp_proxy.count("SET") == 0
    resp_proxy.release()
    thread.join(5)
    assert direct.get("k") == b"held" and resp_proxy.count("SET") == 1
    client.close()
    direct.close()
