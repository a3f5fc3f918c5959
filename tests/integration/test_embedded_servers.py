"""`make run`'s embedded PostgreSQL and Valkey refuse a client without their password, which is
kept in a 0600 file; their URLs carry it."""

import stat

import psycopg2
import pytest
import redis as redis_lib
from sqlalchemy.engine import make_url


def test_embedded_postgres_requires_its_password(embedded_postgres):
    if embedded_postgres is None:
        pytest.skip("DATABASE_URL names a system PostgreSQL")
    url = make_url(embedded_postgres.url)
    assert url.host == "127.0.0.1" and url.password
    with pytest.raises(psycopg2.OperationalError, match="password"):
        psycopg2.connect(host=url.host, port=url.port, user="postgres", dbname="postgres",
                         password="wrong")  # fmt: skip
    psycopg2.connect(host=url.host, port=url.port, user="postgres", dbname="postgres",
                     password=url.password).close()  # fmt: skip
    assert stat.S_IMODE(embedded_postgres.password_file.stat().st_mode) == 0o600


def test_embedded_valkey_requires_its_password(embedded_redis):
    if embedded_redis is None:
        pytest.skip("REDIS_URL names a system Redis")
    bare = redis_lib.Redis(host="127.0.0.1", port=embedded_redis.port)
    with pytest.raises(redis_lib.AuthenticationError):
        bare.ping()
    assert redis_lib.Redis.from_url(embedded_redis.url).ping()
