"""The Redis fixtures keep their promises: a reset server is as good as new, and
gateways run on the private server exactly when a test asks for one."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.redis_server import RedisEndpoint, RedisServer


@pytest.fixture
def server() -> Iterator[RedisServer]:
    server = RedisServer(persist=False)
    server.start()
    try:
        yield server
    finally:
        server.close()


def test_reset_leaves_no_key_no_script_and_no_other_client(server: RedisServer) -> None:
    earlier = server.client()
    earlier.set("left:over", 1)
    sha = earlier.script_load("return 1")
    listener = earlier.pubsub()
    listener.subscribe("chat:gw:old")
    listener.get_message(timeout=5)  # the subscribe confirmation: it is connected

    server.reset()

    with server.client() as now:
        assert now.dbsize() == 0
        assert now.script_exists(sha) == [False]
        assert now.pubsub_numsub("chat:gw:old") == [(b"chat:gw:old", 0)]
        assert len(now.client_list()) == 1  # only this one
    listener.close()
    earlier.close()


def test_shared_redis_is_the_session_server_and_starts_empty(
        shared_redis: RedisEndpoint, _session_redis: RedisServer) -> None:
    assert shared_redis == _session_redis.endpoint
    with shared_redis.client() as client:
        assert client.dbsize() == 0


def test_gateways_use_the_private_server_of_a_test_that_has_one(
        gateway_redis: RedisEndpoint, redis_server: RedisServer) -> None:
    assert gateway_redis == redis_server.endpoint


def test_gateways_use_the_shared_server_otherwise(
        gateway_redis: RedisEndpoint, _session_redis: RedisServer) -> None:
    assert gateway_redis == _session_redis.endpoint


def test_a_server_whose_free_port_was_taken_first_moves_to_another(server: RedisServer) -> None:
    """As when two xdist workers (or two suites) pick the same free port at once: the
    loser must not take the winner's server for its own."""
    loser = RedisServer(persist=False)
    loser.port = server.port
    try:
        loser.start()
        assert loser.port != server.port
        assert loser.proc is not None
        with loser.client() as client:
            assert client.info("server")["process_id"] == loser.proc.pid
    finally:
        loser.close()
