"""Redis Sentinel URLs for the locks and the broker: parsed as kombu reads them, and used
against a real sentinel (valkey-server --sentinel) watching a real master."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from kombu import Connection

from app.locks import FairSemaphore
from app.locks.connection import BadRedisUrl, parse_sentinel_url, redis_from_url
from app.standalone.servers import EmbeddedRedis, free_port, wait_for_port


def test_a_sentinel_list_names_every_sentinel_and_the_first_entrys_db_and_password():
    target = parse_sentinel_url("sentinel://:s%40cret@10.0.0.1:26379/3;sentinel://10.0.0.2;")
    assert target.sentinels == (("10.0.0.1", 26379), ("10.0.0.2", 26379))
    assert (target.db, target.password, target.username) == (3, "s@cret", None)
    named = parse_sentinel_url("sentinel://app:pw@h:1/0")
    assert (named.username, named.password) == ("app", "pw")


@pytest.mark.parametrize(
    "url", ["sentinel://", "sentinel://h:x", "sentinel://h/zero", "sentinel://h;redis://h"]
)
def test_bad_sentinel_lists_are_refused(url):
    with pytest.raises(BadRedisUrl):
        parse_sentinel_url(url)


def test_plain_redis_urls_are_left_to_redis_py(redis_url):
    client = redis_from_url(redis_url, socket_timeout=5)
    assert client.ping()
    client.close()


@pytest.fixture(scope="module")
def sentinel(tmp_path_factory):
    """A password-protected master and one sentinel watching it as `mymaster`."""
    root = tmp_path_factory.mktemp("sentinel")
    master = EmbeddedRedis(root / "master")
    master.start()
    port = free_port()
    config = root / "sentinel.conf"
    config.write_text(
        f"port {port}\nbind 127.0.0.1\ndir {root}\n"
        f"sentinel monitor mymaster 127.0.0.1 {master.port} 1\n"
        f"sentinel auth-pass mymaster {master.password}\n"
    )
    process = subprocess.Popen([str(master.binary), str(config), "--sentinel"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        wait_for_port(port)
        yield f"sentinel://:{master.password}@127.0.0.1:{port}/2", master
    finally:
        process.terminate()
        process.wait(10)
        master.stop()


def test_the_locks_reach_the_master_through_the_sentinel(sentinel):
    url, master = sentinel
    client = redis_from_url(url, socket_timeout=5, socket_connect_timeout=5)
    assert client.ping()
    semaphore = FairSemaphore(client, "agent:sentinel-test", capacity=1, lease_ttl=10)
    lease = semaphore.acquire(timeout=5, owner="t1")
    assert lease.token >= 1 and semaphore.try_acquire(owner="t2") is None
    lease.release()
    direct = redis_from_url(master.url.rsplit("/", 1)[0] + "/2")
    assert direct.exists("orch:sem:agent:sentinel-test:fence") or direct.keys("*sentinel-test*")
    client.close()
    direct.close()


def test_the_broker_reaches_the_master_through_the_sentinel(sentinel, tmp_path: Path):
    url, _ = sentinel
    with Connection(url, transport_options={"master_name": "mymaster"}) as connection:
        queue = connection.SimpleQueue("sentinel-check")
        queue.put({"hello": "sentinel"})
        message = queue.get(timeout=5)
        assert message.payload == {"hello": "sentinel"}
        message.ack()
        queue.close()
