"""A local Redis Cluster for tests and benchmarks: primaries, replicas, kills, failovers.

Every node is a :class:`RedisServer` started by us on a loopback port at most 55535 (a cluster
node also listens on port + 10000), joined with ``redis-cli --cluster create`` and ended by
pid. A short ``cluster-node-timeout`` (1 s by default) makes a killed primary fail over to its
replica within a few seconds, which is what the failover tests wait for.

The topology is always read from the cluster itself (``CLUSTER SLOTS`` / ``CLUSTER NODES`` of
a live node), never assumed, because a failover changes it.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from dataclasses import dataclass
from typing import Any

import redis
import redis.asyncio
import redis.asyncio.cluster
import redis.cluster
from redis.crc import key_slot

from cachebus.testing.server import RedisServer, ServerOptions

__all__ = ["ClusterSlots", "RedisClusterHarness", "find_redis_cli"]


def find_redis_cli() -> str | None:
    """Path of the local ``redis-cli`` binary (it joins the nodes), or None."""
    return shutil.which("redis-cli")


@dataclass(frozen=True, slots=True)
class ClusterSlots:
    """One contiguous range of slots and the port of the node serving it."""

    start: int
    end: int
    port: int

    def __contains__(self, slot: object) -> bool:
        return isinstance(slot, int) and self.start <= slot <= self.end


class RedisClusterHarness:
    """``primaries`` primaries with ``replicas`` replicas each, on loopback ports.

    ``with RedisClusterHarness() as cluster:`` starts it and waits for ``cluster_state:ok`` on
    every node and for every replica to be in sync (an unsynced replica cannot be promoted).
    """

    def __init__(
        self,
        primaries: int = 3,
        replicas: int = 1,
        *,
        node_timeout_ms: int = 1000,
        options: ServerOptions | None = None,
    ) -> None:
        if primaries < 3:
            raise ValueError("redis-cli --cluster create needs at least 3 primaries")
        base = options or ServerOptions()
        self.options = ServerOptions(
            persistence=base.persistence,
            maxmemory=base.maxmemory,
            maxmemory_policy=base.maxmemory_policy,
            cluster=True,
            cluster_node_timeout_ms=node_timeout_ms,
            # A replica whose primary died a while ago may still be promoted (tests pause
            # processes and the machine is shared: the default factor of 10 can refuse it).
            extra=(*base.extra, ("cluster-replica-validity-factor", "0")),
        )
        self.primary_count = primaries
        self.replica_count = replicas
        self.nodes: list[RedisServer] = []
        #: Slot ranges each killed node served when it was killed, by port.
        self._served: dict[int, list[tuple[int, int]]] = {}

    # ---- lifecycle ----------------------------------------------------------------------
    def start(self, timeout: float = 60.0) -> RedisClusterHarness:
        cli = find_redis_cli()
        if cli is None:
            raise RuntimeError("redis-cli was not found on PATH; install redis-tools")
        deadline = time.monotonic() + timeout
        try:
            for _ in range(self.primary_count * (1 + self.replica_count)):
                self.nodes.append(RedisServer(self.options).start())
            addresses = [f"{n.host}:{n.port}" for n in self.nodes]
            create = subprocess.run(
                [cli, "--cluster", "create", *addresses, "--cluster-replicas",
                 str(self.replica_count), "--cluster-yes"],
                capture_output=True, timeout=max(5.0, deadline - time.monotonic()), check=False,
            )  # fmt: skip
            if create.returncode != 0:
                raise RuntimeError(
                    "redis-cli --cluster create failed:\n"
                    + create.stdout.decode(errors="replace")[-2000:]
                    + create.stderr.decode(errors="replace")[-2000:]
                )
            self.wait_healthy(deadline - time.monotonic())
        except BaseException:
            self.close()
            raise
        return self

    def close(self) -> None:
        """Kill every node by pid and remove their directories."""
        nodes, self.nodes = self.nodes, []
        for node in nodes:
            node.close()

    def __enter__(self) -> RedisClusterHarness:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- addressing ---------------------------------------------------------------------
    @property
    def live_nodes(self) -> list[RedisServer]:
        return [n for n in self.nodes if n.running]

    @property
    def url(self) -> str:
        """A URL of one live node; cluster clients discover the rest from it."""
        return self.live_nodes[0].url

    @property
    def startup_nodes(self) -> list[tuple[str, int]]:
        return [(n.host, n.port) for n in self.live_nodes]

    def client(self, **kwargs: Any) -> redis.cluster.RedisCluster:
        """A sync cluster client knowing every live node, with short timeouts."""
        kwargs.setdefault("socket_timeout", 5)
        kwargs.setdefault("socket_connect_timeout", 2)
        nodes = [redis.cluster.ClusterNode(h, p) for h, p in self.startup_nodes]
        return redis.cluster.RedisCluster(startup_nodes=nodes, **kwargs)

    def async_client(self, **kwargs: Any) -> redis.asyncio.RedisCluster:
        kwargs.setdefault("socket_timeout", 5)
        kwargs.setdefault("socket_connect_timeout", 2)
        nodes = [redis.asyncio.cluster.ClusterNode(h, p) for h, p in self.startup_nodes]
        return redis.asyncio.RedisCluster(startup_nodes=nodes, **kwargs)

    def node(self, port: int) -> RedisServer:
        for n in self.nodes:
            if n.port == port:
                return n
        raise KeyError(f"no node of this cluster listens on port {port}")

    def slots(self) -> list[ClusterSlots]:
        """Slot ranges and the port of their primary, as a live node sees them now."""
        reply = self._ask("CLUSTER", "SLOTS")
        return sorted(
            (ClusterSlots(int(r[0]), int(r[1]), int(r[2][1])) for r in reply),
            key=lambda s: s.start,
        )

    def primaries(self) -> list[RedisServer]:
        ports = sorted({s.port for s in self.slots()})
        return [self.node(p) for p in ports]

    def replicas(self) -> list[RedisServer]:
        primaries = {n.port for n in self.primaries()}
        return [n for n in self.live_nodes if n.port not in primaries]

    def primary_for(self, key: str | bytes) -> RedisServer:
        """The node serving ``key``'s slot now."""
        slot = key_slot(key.encode() if isinstance(key, str) else key)
        for slots in self.slots():
            if slot in slots:
                return self.node(slots.port)
        raise RuntimeError(f"slot {slot} is not served by any node")

    def replica_of(self, primary: RedisServer) -> RedisServer:
        info = _info(primary, "replication")
        for name, value in info.items():
            if name.startswith("slave") and isinstance(value, dict):
                return self.node(int(value["port"]))
        raise RuntimeError(f"{primary!r} has no replica")

    # ---- faults -------------------------------------------------------------------------
    def kill(self, node: RedisServer) -> None:
        """SIGKILL one node (no shutdown: what it had not replicated is lost)."""
        try:
            self._served[node.port] = [
                (s.start, s.end) for s in self.slots() if s.port == node.port
            ]
        except redis.RedisError:
            pass  # wait_failover falls back to what the cluster says then
        node.kill()

    def cut_replication(self, primary: RedisServer) -> RedisServer:
        """Stop ``primary``'s replica (SIGSTOP) and drop its link; returns the replica.

        Writes acknowledged from now on exist only on the primary (SIGSTOP alone is not
        enough: the replica's kernel keeps receiving the stream into its socket buffer).
        Kill the primary, then ``resume()`` the replica, and it is promoted without them.
        """
        replica = self.replica_of(primary)
        replica.pause()
        client = primary.client()
        try:
            client.execute_command("CLIENT", "KILL", "TYPE", "replica")
        finally:
            client.close()
        return replica

    def wait_failover(self, killed: RedisServer, timeout: float = 30.0) -> RedisServer:
        """Wait until the slots ``killed`` served are served by another node; returns it."""
        deadline = time.monotonic() + timeout
        old_ranges = self._served.get(killed.port)
        while time.monotonic() < deadline:
            try:
                slots = self.slots()
            except redis.RedisError:
                time.sleep(0.1)
                continue
            if old_ranges is None:
                old_ranges = [(s.start, s.end) for s in slots if s.port == killed.port]
            if old_ranges:
                serving = {s.port for s in slots if (s.start, s.end) in old_ranges}
                if serving and killed.port not in serving:
                    self.wait_healthy(max(0.5, deadline - time.monotonic()), promoted=True)
                    return self.node(serving.pop())
            time.sleep(0.1)
        raise TimeoutError(f"no failover of {killed!r} within {timeout}s")

    def wait_healthy(self, timeout: float, *, promoted: bool = False) -> None:
        """Every live node says ``cluster_state:ok`` and agrees on who serves each slot;
        every live replica is in sync (skipped right after a failover: ``promoted``)."""
        deadline = time.monotonic() + timeout
        last = ""
        while time.monotonic() < deadline:
            try:
                last = self._health_problem(check_replicas=not promoted)
            except redis.RedisError as exc:
                last = str(exc)
            if not last:
                return
            time.sleep(0.1)
        raise TimeoutError(f"cluster not healthy within {timeout:.1f}s: {last}")

    def _health_problem(self, *, check_replicas: bool) -> str:
        views = set()
        for node in self.live_nodes:
            client = node.client()
            try:
                info = client.execute_command("CLUSTER", "INFO")
                text = info.decode() if isinstance(info, bytes) else str(info)
                if "cluster_state:ok" not in text:
                    return f"{node!r} says {text.splitlines()[0]}"
                slots = client.execute_command("CLUSTER", "SLOTS")
                views.add(tuple(sorted((int(r[0]), int(r[1]), int(r[2][1])) for r in slots)))
                if check_replicas:
                    repl = client.info("replication")
                    if repl.get("role") == "slave" and repl.get("master_link_status") != "up":
                        return f"{node!r} is a replica not in sync yet"
            finally:
                client.close()
        if len(views) != 1:
            return "nodes disagree on the slot map"
        if check_replicas:
            expected = self.primary_count * self.replica_count
            roles = [_info(n, "replication").get("role") for n in self.live_nodes]
            if roles.count("slave") < min(expected, len(roles) - self.primary_count):
                return f"{roles.count('slave')} of {expected} replicas attached"
        return ""

    def _ask(self, *command: Any) -> Any:
        errors: list[str] = []
        for node in self.live_nodes:
            client = node.client()
            try:
                return client.execute_command(*command)
            except redis.RedisError as exc:
                errors.append(f"{node!r}: {exc}")
            finally:
                client.close()
        raise redis.ConnectionError("no live node answered: " + "; ".join(errors))

    def __repr__(self) -> str:
        ports = ",".join(str(n.port) for n in self.nodes)
        return f"<RedisClusterHarness {self.primary_count}x{1 + self.replica_count} ports={ports}>"


def _info(node: RedisServer, section: str) -> dict[str, Any]:
    client = node.client()
    try:
        return dict(client.info(section))
    finally:
        client.close()
