"""SPEC §12 accounts through HTTP: sessions (list, revoke one, logout everywhere,
refresh), their WebSocket user channels, and the display name."""

from __future__ import annotations

import asyncio
from pathlib import Path

import asyncpg
import httpx
from litestar import Litestar

from probo.services import services_of
from tests.conftest import assert_error, bearer, last_otp, login, new_phone
from tests.e2e.test_realtime import feed
from tests.trading import funded_trader


async def login_again(
    client: httpx.AsyncClient, outbox: Path, app: Litestar, phone: str, user_agent: str
) -> str:
    """Another session of `phone`'s user, from `user_agent` (the resend cooldown lifted)."""
    await services_of(app).redis.delete(
        services_of(app).settings.redis_key_prefix + f"otp-cooldown:{phone}"
    )
    response = await client.post("/api/v1/auth/otp", json={"phone": phone})
    assert response.status_code == 202, response.text
    response = await client.post(
        "/api/v1/auth/verify",
        json={"phone": phone, "otp": last_otp(outbox, phone)},
        headers={"User-Agent": user_agent},
    )
    assert response.status_code == 200, response.text
    client.cookies.clear()
    return response.json()["token"]


async def sessions(client: httpx.AsyncClient, token: str, **params: object) -> dict:
    response = await client.get("/api/v1/auth/sessions", headers=bearer(token), params=params)
    assert response.status_code == 200, response.text
    return response.json()


async def test_sessions_list_the_live_ones_newest_first_and_mark_the_current(
    client: httpx.AsyncClient, outbox_path: Path, app: Litestar
) -> None:
    phone = new_phone()
    first = await login_again(client, outbox_path, app, phone, "phone-app/1.0")
    second = await login_again(client, outbox_path, app, phone, "Firefox/130")
    third = await login_again(client, outbox_path, app, phone, "curl/8")

    listed = await sessions(client, second)
    assert [s["user_agent"] for s in listed["items"]] == ["curl/8", "Firefox/130", "phone-app/1.0"]
    assert [s["current"] for s in listed["items"]] == [False, True, False]
    assert listed["next_cursor"] is None
    for item in listed["items"]:
        assert set(item) == {"id", "created_at", "last_seen_at", "user_agent", "current"}

    # Paged: every session exactly once.
    seen, cursor = [], None
    while True:
        params = {"limit": 1} | ({"cursor": cursor} if cursor else {})
        got = await sessions(client, third, **params)
        seen += [s["id"] for s in got["items"]]
        cursor = got["next_cursor"]
        if cursor is None:
            break
    assert seen == [s["id"] for s in listed["items"]]

    # Revoked sessions drop out of the list; the revoked token no longer works.
    oldest = listed["items"][2]["id"]
    response = await client.delete(f"/api/v1/auth/sessions/{oldest}", headers=bearer(third))
    assert response.status_code == 200, response.text
    assert response.json() == {"id": oldest, "status": "revoked"}
    assert_error(await client.get("/api/v1/me", headers=bearer(first)), 401, "unauthorized")
    assert [s["user_agent"] for s in (await sessions(client, third))["items"]] == [
        "curl/8",
        "Firefox/130",
    ]
    # A second revocation of it, like any session not live, is not found.
    again = await client.delete(f"/api/v1/auth/sessions/{oldest}", headers=bearer(third))
    assert_error(again, 404, "not_found")


async def test_another_users_or_an_unknown_session_is_not_found(
    client: httpx.AsyncClient, outbox_path: Path
) -> None:
    alice, _ = await login(client, outbox_path)
    bob, _ = await login(client, outbox_path)
    bobs = (await sessions(client, bob))["items"][0]["id"]
    response = await client.delete(f"/api/v1/auth/sessions/{bobs}", headers=bearer(alice))
    assert_error(response, 404, "not_found")
    assert (await client.get("/api/v1/me", headers=bearer(bob))).status_code == 200
    for path in ("/api/v1/auth/sessions/99999999999", "/api/v1/auth/sessions/0"):
        response = await client.delete(path, headers=bearer(alice))
        assert response.status_code in (400, 404), response.text
    assert_error(await client.get("/api/v1/auth/sessions"), 401, "unauthorized")


async def test_logout_all_revokes_every_session_including_this_one(
    client: httpx.AsyncClient, outbox_path: Path, app: Litestar
) -> None:
    phone = new_phone()
    tokens = [await login_again(client, outbox_path, app, phone, f"agent-{i}") for i in range(3)]
    other, _ = await login(client, outbox_path)
    response = await client.post("/api/v1/auth/logout-all", headers=bearer(tokens[0]))
    assert response.status_code == 200, response.text
    assert response.json() == {"revoked": 3, "status": "logged_out"}
    assert "probo_session=" in response.headers["set-cookie"]
    for token in tokens:
        assert_error(await client.get("/api/v1/me", headers=bearer(token)), 401, "unauthorized")
    # Other users are untouched; a new login is a new, working session.
    assert (await client.get("/api/v1/me", headers=bearer(other))).status_code == 200
    fresh = await login_again(client, outbox_path, app, phone, "agent-new")
    assert [s["user_agent"] for s in (await sessions(client, fresh))["items"]] == ["agent-new"]


async def test_refresh_gives_a_new_token_for_the_same_session_and_revokes_the_old(
    client: httpx.AsyncClient, outbox_path: Path
) -> None:
    old, body = await login(client, outbox_path)
    [before] = (await sessions(client, old))["items"]
    response = await client.post(
        "/api/v1/auth/refresh", headers={**bearer(old), "User-Agent": "renewed/2"}
    )
    assert response.status_code == 200, response.text
    refreshed = response.json()
    new = refreshed["token"]
    assert new != old and refreshed["user"]["id"] == body["user"]["id"]
    assert refreshed["expires_at"] >= body["expires_at"]
    cookie = response.headers["set-cookie"]
    assert f"probo_session={new}" in cookie and "HttpOnly" in cookie
    # The old token is revoked, for every route, a second refresh included.
    assert_error(await client.get("/api/v1/me", headers=bearer(old)), 401, "unauthorized")
    assert_error(
        await client.post("/api/v1/auth/refresh", headers=bearer(old)), 401, "unauthorized"
    )
    # The same session goes on with the new token.
    [after] = (await sessions(client, new))["items"]
    assert (after["id"], after["created_at"], after["current"]) == (
        before["id"],
        before["created_at"],
        True,
    )
    assert after["user_agent"] == "renewed/2"


async def test_concurrent_refreshes_of_one_token_give_one_new_session(
    client: httpx.AsyncClient, outbox_path: Path
) -> None:
    old, _ = await login(client, outbox_path)
    answers = await asyncio.gather(
        *(client.post("/api/v1/auth/refresh", headers=bearer(old)) for _ in range(4))
    )
    assert sorted(a.status_code for a in answers) == [200, 401, 401, 401], [a.text for a in answers]
    live = [a.json()["token"] for a in answers if a.status_code == 200]
    working = [
        t for t in live if (await client.get("/api/v1/me", headers=bearer(t))).status_code == 200
    ]
    assert len(working) == 1  # one session, one live token


async def test_cookie_session_writes_from_a_foreign_origin_are_refused(
    client: httpx.AsyncClient, outbox_path: Path
) -> None:
    token, _ = await login(client, outbox_path)
    [mine] = (await sessions(client, token))["items"]
    evil = {"Origin": "https://evil.example", "Cookie": f"probo_session={token}"}
    for method, path in (
        ("POST", "/api/v1/auth/logout-all"),
        ("POST", "/api/v1/auth/refresh"),
        ("DELETE", f"/api/v1/auth/sessions/{mine['id']}"),
        ("PATCH", "/api/v1/me"),
    ):
        response = await client.request(method, path, headers=evil, json={"display_name": "evil_1"})
        assert_error(response, 403, "forbidden")
    assert (await client.get("/api/v1/me", headers=bearer(token))).status_code == 200
    # From the page's own origin the cookie works.
    same = {"Origin": str(client.base_url), "Cookie": f"probo_session={token}"}
    response = await client.post("/api/v1/auth/refresh", headers=same)
    assert response.status_code == 200, response.text
    client.cookies.clear()


async def test_last_seen_is_written_in_bulk_off_the_request_path(
    client: httpx.AsyncClient, outbox_path: Path, app: Litestar, db: asyncpg.Pool
) -> None:
    token, body = await login(client, outbox_path)
    activity = services_of(app).auth.activity
    [first] = (await sessions(client, token))["items"]
    assert first["last_seen_at"] == first["created_at"]
    # Within the minute after login nothing is noted, so no write.
    await activity.flush()
    [same] = (await sessions(client, token))["items"]
    assert same["last_seen_at"] == first["created_at"]
    # Once the minute has passed (here: forgotten), the next request is noted once.
    activity.forget(_jti_of(app, token))
    for _ in range(3):
        assert (await client.get("/api/v1/me", headers=bearer(token))).status_code == 200
    assert await activity.flush() >= 1
    [later] = (await sessions(client, token))["items"]
    assert later["last_seen_at"] > first["created_at"]


def _jti_of(app: Litestar, token: str) -> str:
    return services_of(app).auth.tokens.decode(token).jti


async def test_revoking_a_session_ends_its_websocket_user_channel(
    client: httpx.AsyncClient, outbox_path: Path, app: Litestar
) -> None:
    phone = new_phone()
    watched = await login_again(client, outbox_path, app, phone, "watched")
    other = await login_again(client, outbox_path, app, phone, "other")
    items = (await sessions(client, other))["items"]
    watched_id = next(s["id"] for s in items if s["user_agent"] == "watched")
    async with feed(client, f"?token={watched}") as live, feed(client, f"?token={other}") as kept:
        for channel in (live, kept):
            await channel.send(op="subscribe", channel="user")
            await channel.wait_for(lambda m: m["type"] == "subscribed")
        response = await client.delete(f"/api/v1/auth/sessions/{watched_id}", headers=bearer(other))
        assert response.status_code == 200, response.text
        ended = await live.wait_for(lambda m: m["type"] == "error")
        assert (ended["code"], ended["channel"]) == ("unauthorized", "user")
        # The other session's channel goes on.
        await kept.send(op="ping")
        await kept.wait_for(lambda m: m["type"] == "pong")
        assert kept.of_type("error") == []


async def test_logout_all_ends_every_user_channel(
    client: httpx.AsyncClient, outbox_path: Path
) -> None:
    trader = await funded_trader(client, outbox_path)
    async with feed(client, f"?token={trader.token}") as live:
        await live.send(op="subscribe", channel="user")
        await live.wait_for(lambda m: m["type"] == "subscribed")
        response = await client.post("/api/v1/auth/logout-all", headers=trader.headers)
        assert response.status_code == 200, response.text
        ended = await live.wait_for(lambda m: m["type"] == "error")
        assert ended["code"] == "unauthorized"


# --- the display name ---------------------------------------------------------------------


async def test_display_name_is_set_shown_and_unique_whatever_the_case(
    client: httpx.AsyncClient, outbox_path: Path
) -> None:
    alice, body = await login(client, outbox_path)
    bob, _ = await login(client, outbox_path)
    assert body["user"]["display_name"] is None
    assert (await client.get("/api/v1/me", headers=bearer(alice))).json()["display_name"] is None
    name = f"Ace_{body['user']['id']}"
    response = await client.patch("/api/v1/me", json={"display_name": name}, headers=bearer(alice))
    assert response.status_code == 200, response.text
    assert response.json()["display_name"] == name
    assert (await client.get("/api/v1/me", headers=bearer(alice))).json()["display_name"] == name
    # Taken, whatever the case.
    for taken in (name, name.upper(), name.lower()):
        response = await client.patch(
            "/api/v1/me", json={"display_name": taken}, headers=bearer(bob)
        )
        assert_error(response, 409, "display_name_taken")
    # Its owner may change its case, or change it.
    response = await client.patch(
        "/api/v1/me", json={"display_name": name.lower()}, headers=bearer(alice)
    )
    assert response.status_code == 200 and response.json()["display_name"] == name.lower()


async def test_a_bad_display_name_is_a_validation_error(
    client: httpx.AsyncClient, outbox_path: Path
) -> None:
    token, _ = await login(client, outbox_path)
    for bad in ("ab", "x" * 21, "has space", "dash-name", "émile", "", "a\u0000b", 123, None):
        response = await client.patch(
            "/api/v1/me", json={"display_name": bad}, headers=bearer(token)
        )
        assert_error(response, 422, "validation_error")
    response = await client.patch("/api/v1/me", json={}, headers=bearer(token))
    assert_error(response, 422, "validation_error")
    response = await client.patch(
        "/api/v1/me", json={"display_name": "okay_name", "phone": "+1"}, headers=bearer(token)
    )
    assert_error(response, 422, "validation_error")
    assert_error(
        await client.patch("/api/v1/me", json={"display_name": "anon_x"}), 401, "unauthorized"
    )


async def test_two_users_racing_for_one_name_one_wins(
    client: httpx.AsyncClient, outbox_path: Path
) -> None:
    tokens = [(await login(client, outbox_path))[0] for _ in range(2)]
    name = f"race_{new_phone()[-8:]}"
    answers = await asyncio.gather(
        client.patch("/api/v1/me", json={"display_name": name}, headers=bearer(tokens[0])),
        client.patch("/api/v1/me", json={"display_name": name.upper()}, headers=bearer(tokens[1])),
    )
    assert sorted(a.status_code for a in answers) == [200, 409], [a.text for a in answers]
    loser = next(a for a in answers if a.status_code == 409)
    assert loser.json()["error"]["code"] == "display_name_taken"


async def test_a_token_from_before_sessions_were_kept_gets_its_row_on_refresh(
    client: httpx.AsyncClient, outbox_path: Path, app: Litestar
) -> None:
    _, body = await login(client, outbox_path)
    older, _ = services_of(app).auth.tokens.issue(body["user"]["id"], "user")  # no row
    assert [s["current"] for s in (await sessions(client, older))["items"]] == [False]
    response = await client.post("/api/v1/auth/refresh", headers=bearer(older))
    assert response.status_code == 200, response.text
    new = response.json()["token"]
    assert [s["current"] for s in (await sessions(client, new))["items"]] == [True, False]
    assert_error(await client.get("/api/v1/me", headers=bearer(older)), 401, "unauthorized")
    again = await client.post("/api/v1/auth/refresh", headers=bearer(older))
    assert_error(again, 401, "unauthorized")
