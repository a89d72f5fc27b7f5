"""The failed-authentication limit (``ratelimit``): where it counts, and what
it does while Redis is away."""

import logging

import pytest
import redis
from limits.storage import MemoryStorage, RedisStorage
from support import unique
from test_scaling import RedisServer

from vmsapp import ratelimit
from vmsapp.ratelimit import FailedAuthLimiter, current_limiter


def test_without_redis_failures_are_counted_in_this_process_memory():
    limiter = FailedAuthLimiter("2 per minute")
    for _ in range(2):
        assert not limiter.blocked("192.0.2.1")
        limiter.failed("192.0.2.1")

    assert limiter.blocked("192.0.2.1") and not limiter.blocked("192.0.2.2")
    assert isinstance(limiter._window.storage, MemoryStorage)


def test_with_redis_every_worker_counts_the_same_failures_under_its_own_prefix(redis_url):
    prefix = unique("test-limit")
    workers = [FailedAuthLimiter("3 per minute", redis_url, prefix) for _ in range(2)]
    another_deployment = FailedAuthLimiter("3 per minute", redis_url, unique("test-limit"))
    for worker in (workers[0], workers[1], workers[0]):
        worker.failed("192.0.2.1")

    assert [worker.blocked("192.0.2.1") for worker in workers] == [True, True]
    assert not workers[1].blocked("192.0.2.2")
    assert not another_deployment.blocked("192.0.2.1")
    assert isinstance(workers[0]._window.storage, RedisStorage)
    stored = redis.Redis.from_url(redis_url)
    try:
        assert stored.keys(f"{prefix}:*")
    finally:
        stored.delete(*stored.keys(f"{prefix}:*"))
        stored.close()


def test_building_the_app_with_redis_connects_to_nothing_until_an_auth_fails(app_database_url):
    """CLI commands build the app too: no connection, no thread, however
    unreachable Redis is."""
    from config import Config
    from config import database_url as sqlalchemy_url
    from vmsapp import create_app

    app = create_app({
        **Config({"REDIS_URL": "redis://192.0.2.1:6379/0"}).as_dict(),
        "SQLALCHEMY_DATABASE_URI": sqlalchemy_url({"DATABASE_URL": app_database_url}),
    })
    with app.app_context():
        limiter = current_limiter()
        assert limiter.redis_url == "redis://192.0.2.1:6379/0"
        assert limiter._limiter is None


@pytest.fixture
def stopped_redis(tmp_path):
    """A Redis server not yet started: its URL answers nothing."""
    server = RedisServer(tmp_path)
    yield server
    server.stop()


def test_while_redis_is_away_no_auth_is_refused_and_each_outage_is_logged_once(
        stopped_redis, monkeypatch, caplog):
    monkeypatch.setattr(ratelimit, "RETRY_AFTER", 0)  # every call asks Redis again
    limiter = FailedAuthLimiter("1 per minute", stopped_redis.url, unique("test-limit"))

    def outage():
        for _ in range(5):
            limiter.failed("192.0.2.1")
            assert not limiter.blocked("192.0.2.1")

    def logged(level):
        return [r.getMessage() for r in caplog.records
                if r.name == ratelimit.__name__ and r.levelno == level]

    with caplog.at_level(logging.WARNING, logger=ratelimit.__name__):
        outage()
        assert len(logged(logging.ERROR)) == 1
        assert "Redis unreachable" in logged(logging.ERROR)[0]

        stopped_redis.start()
        limiter.failed("192.0.2.1")
        assert limiter.blocked("192.0.2.1")  # counted again
        assert len(logged(logging.WARNING)) == 1

        stopped_redis.stop()
        outage()
        assert len(logged(logging.ERROR)) == 2
