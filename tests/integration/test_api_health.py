"""GET /api/health over real HTTP: uvicorn, a migrated SQLite file, a redis-server of its own."""

from __future__ import annotations

import httpx

from behest_chat import db

HEALTH = "/api/health"


def test_a_healthy_instance_answers_200_without_a_session(api_server) -> None:
    response = httpx.get(api_server.url + HEALTH)
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "database": "ok", "redis": "not used"}
    assert response.headers["cache-control"] == "no-store"


def test_redis_stopped_and_back_is_reported_as_it_goes(api_server_factory, private_redis) -> None:
    server = api_server_factory(REDIS_URL=private_redis.url)
    assert httpx.get(server.url + HEALTH).json()["redis"] == "ok"
    private_redis.stop()
    down = httpx.get(server.url + HEALTH, timeout=10)
    assert down.status_code == 503
    assert down.json() == {"status": "unavailable", "database": "ok", "redis": "unreachable"}
    assert str(private_redis.port) not in down.text  # nothing about where it is
    private_redis.start()
    assert httpx.get(server.url + HEALTH).status_code == 200


def test_a_database_that_does_not_answer_is_reported(api_server, monkeypatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "sqlite:////nonexistent/directory/app.db")
    db.reset()
    response = httpx.get(api_server.url + HEALTH, timeout=10)
    assert response.status_code == 503
    assert response.json() == {
        "status": "unavailable",
        "database": "unreachable",
        "redis": "not used",
    }
    assert "nonexistent" not in response.text
