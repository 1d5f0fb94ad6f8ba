"""Redis made highly available: a master, a replica and three Sentinels, all redis-server.

``SentinelCluster`` starts them on free ports (the Sentinels with a short
``down-after-milliseconds`` so a failover takes a few seconds, not 30 s),
tells where the master is, and kills it to make the Sentinels promote the
replica. Used by the topology test (tests/deploy/); production runs Redis's
own packages (README, "Deploying").
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from devtools.processes import ChildProcess, free_port, wait_for
from devtools.redis_server import RedisServer, redis_server_binary

MASTER_NAME = "booktime"


class SentinelServer(ChildProcess):
    """``redis-server <conf> --sentinel`` watching ``master_port``."""

    START_TIMEOUT_SECONDS = 15.0

    def __init__(self, master_port: int, workdir: Path, quorum: int = 2) -> None:
        self.port = free_port()
        self.conf = workdir / f"sentinel-{self.port}.conf"
        self.conf.write_text(
            f"port {self.port}\n"
            f"bind {self.host}\n"
            f"dir {workdir}\n"
            f"sentinel monitor {MASTER_NAME} {self.host} {master_port} {quorum}\n"
            f"sentinel down-after-milliseconds {MASTER_NAME} 1000\n"
            f"sentinel failover-timeout {MASTER_NAME} 5000\n"
            f"sentinel parallel-syncs {MASTER_NAME} 1\n"
        )
        binary = redis_server_binary()
        assert binary is not None
        super().__init__(
            [binary, str(self.conf), "--sentinel"],
            name=f"sentinel-{self.port}",
            log_path=workdir / f"sentinel-{self.port}.log",
        )

    def client(self):  # noqa: ANN201 - redis.Redis
        import redis

        return redis.Redis(host=self.host, port=self.port, socket_timeout=1)

    def master_address(self) -> tuple[str, int] | None:
        client = self.client()
        try:
            found = client.sentinel_get_master_addr_by_name(MASTER_NAME)
        except Exception:  # noqa: BLE001
            return None
        finally:
            client.close()
        return (found[0], int(found[1])) if found else None

    def ready(self) -> bool:
        return self.master_address() is not None


class SentinelCluster:
    """A master, one replica, three Sentinels (quorum 2)."""

    def __init__(self) -> None:
        self.workdir = Path(tempfile.mkdtemp(prefix="booktime-sentinel-"))
        self.master = RedisServer(workdir=self.workdir / "master")
        self.replica = RedisServer(
            workdir=self.workdir / "replica",
            options=("--replicaof", "127.0.0.1", str(self.master.port)),
        )
        self.sentinels: list[SentinelServer] = []

    @property
    def sentinel_addresses(self) -> list[str]:
        return [f"{s.host}:{s.port}" for s in self.sentinels]

    def start(self) -> SentinelCluster:
        for server in (self.master, self.replica):
            server._workdir.mkdir(parents=True, exist_ok=True)
        self.master.start()
        self.replica.start()
        wait_for(self.replica_in_sync, 20, "the replica to sync with the master")
        self.sentinels = [SentinelServer(self.master.port, self.workdir) for _ in range(3)]
        for sentinel in self.sentinels:
            sentinel.start()
        # Every Sentinel knows the replica and the others before anything fails.
        wait_for(self.fully_discovered, 30, "the Sentinels to discover the replica and each other")
        return self

    def replica_in_sync(self) -> bool:
        import redis

        client = redis.Redis.from_url(self.replica.url, socket_timeout=1)
        try:
            return client.info("replication").get("master_link_status") == "up"
        except Exception:  # noqa: BLE001
            return False
        finally:
            client.close()

    def fully_discovered(self) -> bool:
        for sentinel in self.sentinels:
            client = sentinel.client()
            try:
                master = client.sentinel_master(MASTER_NAME)
                if int(master.get("num-slaves", 0)) < 1:
                    return False
                if int(master.get("num-other-sentinels", 0)) < len(self.sentinels) - 1:
                    return False
            except Exception:  # noqa: BLE001
                return False
            finally:
                client.close()
        return True

    def master_port(self) -> int | None:
        """The master's port as the Sentinels agree on it (None while they disagree)."""
        seen = {sentinel.master_address() for sentinel in self.sentinels}
        if len(seen) != 1 or None in seen:
            return None
        return next(iter(seen))[1]

    def kill_master(self) -> RedisServer:
        """SIGKILL the current master; returns the server that should take over."""
        old, new = (
            (self.master, self.replica)
            if self.master_port() == self.master.port
            else (self.replica, self.master)
        )
        old.kill()
        return new

    def close(self) -> None:
        for sentinel in self.sentinels:
            sentinel.close()
        for server in (self.replica, self.master):
            server.close()
        shutil.rmtree(self.workdir, ignore_errors=True)
