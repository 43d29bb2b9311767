"""The embedded Redis: the zero-install broker and channel layer shared by web and workers."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import textwrap
from pathlib import Path

import pytest
import redis
from channels_redis.core import RedisChannelLayer

from tower.core.embedded import EmbeddedRedis, EmbeddedRedisError, pid_alive, redis_url, socket_path

pytestmark = pytest.mark.redis


@pytest.fixture
def server(tmp_path):
    embedded = EmbeddedRedis(var_dir=tmp_path / "var", persist=False)
    embedded.start()
    yield embedded
    embedded.stop()


def test_starts_on_a_unix_socket_under_var_run_and_answers_ping(server, tmp_path):
    assert server.socket == tmp_path / "var" / "run" / "redis.sock"
    assert server.url == f"unix://{server.socket}"
    client = redis.Redis.from_url(server.url)
    try:
        assert client.ping() is True
        client.set("tower:test", "value")
        assert client.get("tower:test") == b"value"
        assert client.config_get("port") == {"port": "0"}  # no TCP port is opened
    finally:
        client.close()


def test_runs_in_its_own_session_so_a_terminal_ctrl_c_does_not_reach_it(server):
    assert os.getsid(server.process.pid) == server.process.pid


def test_stop_ends_the_process_and_removes_the_socket(tmp_path):
    embedded = EmbeddedRedis(var_dir=tmp_path / "var", persist=False)
    embedded.start()
    pid = embedded.process.pid
    sock = embedded.socket

    embedded.stop()

    assert not sock.exists()
    assert not pid_alive(pid)
    assert embedded.process is None


async def test_carries_channel_layer_messages_between_processes(server):
    receiver = RedisChannelLayer(hosts=[{"address": server.url}], prefix="tower-test")
    channel = await receiver.new_channel()
    await receiver.group_add("job-7", channel)
    sender = textwrap.dedent(
        """
        import sys
        from asgiref.sync import async_to_sync
        from channels_redis.core import RedisChannelLayer

        layer = RedisChannelLayer(hosts=[{"address": sys.argv[1]}], prefix="tower-test")
        async_to_sync(layer.group_send)("job-7", {"type": "job.progress", "value": 42, "pid": sys.argv[2]})
        """
    )
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-c", sender, server.url, "sender", stderr=asyncio.subprocess.PIPE
    )
    _, stderr = await asyncio.wait_for(process.communicate(), timeout=30)
    assert process.returncode == 0, stderr.decode()

    message = await asyncio.wait_for(receiver.receive(channel), timeout=10)

    assert message == {"type": "job.progress", "value": 42, "pid": "sender"}
    await receiver.flush()


def test_a_second_start_on_the_same_var_dir_is_refused(server):
    second = EmbeddedRedis(var_dir=server.var_dir, persist=False)

    with pytest.raises(EmbeddedRedisError, match=r"another Tower is already running on .*var"):
        second.start()

    # The refusal left the first server alone.
    assert second.process is None
    assert server.socket.exists()
    client = redis.Redis.from_url(server.url)
    try:
        assert client.ping() is True
    finally:
        client.close()


def test_a_server_left_by_a_killed_tower_is_replaced(tmp_path):
    var_dir = tmp_path / "var"
    crashed = EmbeddedRedis(var_dir=var_dir, persist=False)
    crashed.start()
    orphan = crashed.process
    crashed._release_lock()  # what the kernel does when the owning process is killed

    try:
        replacement = EmbeddedRedis(var_dir=var_dir, persist=False)
        replacement.start()
        try:
            assert orphan.wait(timeout=10) is not None  # the leftover server was shut down
            client = redis.Redis.from_url(replacement.url)
            try:
                assert client.ping() is True
            finally:
                client.close()
        finally:
            replacement.stop()
    finally:
        if orphan.poll() is None:
            orphan.send_signal(signal.SIGKILL)
            orphan.wait()


def test_a_long_var_path_falls_back_to_a_short_socket_path(tmp_path):
    var_dir = tmp_path / ("deeply-nested-studio-folder-" * 5) / "var"
    assert len(str(var_dir / "run" / "redis.sock")) > 107  # too long for a Unix socket

    embedded = EmbeddedRedis(var_dir=var_dir, persist=False)
    embedded.start()
    try:
        sock = embedded.socket
        assert len(str(sock)) <= 100
        assert not str(sock).startswith(str(var_dir))
        assert embedded.url == redis_url(var_dir) == f"unix://{sock}"
        assert (sock.parent.stat().st_mode & 0o777) == 0o700
        client = redis.Redis.from_url(embedded.url)
        try:
            assert client.ping() is True
        finally:
            client.close()
    finally:
        embedded.stop()

    assert not sock.exists()
    assert not sock.parent.exists()


def test_the_fallback_socket_path_is_stable_and_distinct_per_var_dir(tmp_path):
    first = tmp_path / ("x" * 120) / "a"
    second = tmp_path / ("x" * 120) / "b"

    assert socket_path(first) == socket_path(first)
    assert socket_path(first) != socket_path(second)


def test_a_fallback_folder_owned_by_someone_else_is_refused(tmp_path, monkeypatch):
    var_dir = tmp_path / ("y" * 120) / "var"
    target = tmp_path / "elsewhere"
    target.mkdir()
    link = socket_path(var_dir).parent
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(target)  # someone planted a link where our socket folder would go
    try:
        with pytest.raises(EmbeddedRedisError, match="not a directory owned by this user"):
            EmbeddedRedis(var_dir=var_dir, persist=False).start()
        assert list(target.iterdir()) == []
    finally:
        link.unlink()


def test_a_persistent_server_keeps_queued_data_across_restarts(tmp_path):
    var_dir = tmp_path / "var"
    with EmbeddedRedis(var_dir=var_dir) as first:
        client = redis.Redis.from_url(first.url)
        client.rpush("django_q:tower-q:q", "task-1")
        client.close()

    with EmbeddedRedis(var_dir=var_dir) as second:
        client = redis.Redis.from_url(second.url)
        try:
            assert client.lrange("django_q:tower-q:q", 0, -1) == [b"task-1"]
        finally:
            client.close()
    assert Path(var_dir / "redis").is_dir()
