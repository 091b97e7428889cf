"""Nothing a client sends can make a ledger batch fail (SPEC §7, §9).

For every command that goes through the engine and the ledger writer into Postgres,
hypothesis draws requests in which each field is a usable value, a value of the right
JSON type but any content (every code point, U+0000 and lone surrogates included;
integers of any size and sign), anything at all, or missing; and sends them over real
HTTP to the suite's server, whose engine and writer commit to the suite's Postgres.
Every answer must be a refusal (a 4xx in the error shape) or a commit (2xx), and the
writer must never have failed a batch: `LEDGER_COMMIT_FAILURES` does not move and the
writer is not stalled. Each command must also have committed something, so the run
shows that the drawn requests reach the writer.

Hypothesis runs in a worker thread with a blocking client, while the test's event loop
serves. To cover a new command, add one entry to `COMMANDS`.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple
from urllib.parse import quote, urlencode

import httpx
import pytest
import pytest_asyncio
from hypothesis import HealthCheck, Phase, given, note, settings
from hypothesis import strategies as st
from litestar import Litestar

from probo.services import services_of
from tests.conftest import bearer
from tests.e2e.test_withdrawals import verified_trader
from tests.trading import create_market, ledger_commit_failures

MAX_EXAMPLES = 40  # per command
DEPOSIT = 10_000_000  # paise: the most one deposit may bring
RESTING_ORDERS = 12
LIFECYCLE_MARKETS = 4
MISSING = object()  # a field left out of the request

# Every code point: hypothesis leaves surrogates out unless asked.
any_text = st.one_of(
    st.text(st.characters(exclude_categories=()), max_size=70),
    st.sampled_from(["\x00", "a\x00b", "\ud800", "x\udfffy", "\udc80\ud800", "", " "]),
)
any_integer = st.one_of(
    st.integers(),
    st.integers(-(2**80), 2**80),
    st.sampled_from([0, -1, 2**31 - 1, 2**31, 2**63 - 1, 2**63, 2**64, -(2**63) - 1]),
)
anything = st.recursive(
    st.none() | st.booleans() | st.floats() | any_integer | any_text,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(any_text, inner, max_size=3),
    max_leaves=6,
)


def unique_keys() -> st.SearchStrategy[str]:
    return st.builds(lambda: uuid.uuid4().hex)


def client_text() -> st.SearchStrategy[str]:
    """Text a client chooses (keys, ids): a fresh key, or any text at all."""
    return st.one_of(unique_keys(), any_text)


class Field(NamedTuple):
    usable: st.SearchStrategy  # a value a command can commit with
    typed: st.SearchStrategy  # the right JSON type, any value


def wild(field: Field) -> st.SearchStrategy:
    return st.one_of(field.typed, anything, st.just(MISSING))


@st.composite
def bodies(draw: st.DrawFn, fields: dict[str, Field]) -> dict[str, object]:
    """Every field usable, or (one time in three) all but one or two, which are anything."""
    wild_names: set[str] = set()
    if draw(st.integers(0, 2)) == 0:
        wild_names = draw(st.sets(st.sampled_from(sorted(fields)), min_size=1, max_size=2))
    drawn = {
        name: draw(wild(field) if name in wild_names else field.usable)
        for name, field in fields.items()
    }
    return {name: value for name, value in drawn.items() if value is not MISSING}


def one_value(field: Field) -> st.SearchStrategy:
    """A usable value four times in five, else anything (path segments, query values)."""
    return st.integers(0, 4).flatmap(lambda i: field.usable if i else wild(field))


@dataclass(frozen=True)
class Scene:
    """What the commands act on, made through the API before the run."""

    user: dict[str, str]  # a KYC-verified user with DEPOSIT paise
    admin: dict[str, str]
    market_id: int  # open, tick 1: every price in 1..999 is on tick
    order_ids: tuple[int, ...]  # the user's resting orders
    lifecycle_market_ids: tuple[int, ...]


class Request(NamedTuple):
    method: str
    path: str  # percent-encoded, with its query
    headers: dict[str, str]
    body: Any = MISSING


def path_segment(value: object) -> str:
    return quote(str(value), safe="", errors="surrogatepass")


def query(**values: object) -> str:
    present = {name: str(value) for name, value in values.items() if value is not MISSING}
    return "?" + urlencode(present, quote_via=quote, errors="surrogatepass") if present else ""


# --- the commands --------------------------------------------------------------------


def place_order(scene: Scene) -> st.SearchStrategy[Request]:
    fields = {
        "market_id": Field(st.just(scene.market_id), any_integer),
        "outcome": Field(st.sampled_from(["yes", "no"]), any_text),
        "side": Field(st.sampled_from(["buy", "buy", "buy", "sell"]), any_text),
        "type": Field(st.sampled_from(["limit", "limit", "market"]), any_text),
        "quantity": Field(st.integers(1, 5), any_integer),
        "price": Field(st.integers(1, 999), any_integer),
        "time_in_force": Field(st.sampled_from(["gtc", "ioc", "fok"]), any_text),
        "client_order_id": Field(client_text(), any_text),
    }

    def usable_shape(body: dict[str, object]) -> dict[str, object]:
        if body.get("type") == "market":  # no price, ioc only: else it is refused at once
            body.pop("price", None)
            if body.get("time_in_force") in ("gtc", "fok"):
                body["time_in_force"] = "ioc"
        return body

    return bodies(fields).map(
        lambda body: Request("POST", "/api/v1/orders", scene.user, usable_shape(body))
    )


def cancel_order(scene: Scene) -> st.SearchStrategy[Request]:
    order_id = one_value(Field(st.sampled_from(scene.order_ids), any_integer)).filter(
        lambda value: value is not MISSING
    )
    return order_id.map(
        lambda value: Request("DELETE", f"/api/v1/orders/{path_segment(value)}", scene.user)
    )


def cancel_all_orders(scene: Scene) -> st.SearchStrategy[Request]:
    market_id = one_value(Field(st.just(scene.market_id), any_integer))
    return market_id.map(
        lambda value: Request("DELETE", f"/api/v1/orders{query(market_id=value)}", scene.user)
    )


def withdraw(scene: Scene) -> st.SearchStrategy[Request]:
    fields = {
        "amount": Field(st.integers(100, 1_000), any_integer),
        "idempotency_key": Field(client_text(), any_text),
    }
    return bodies(fields).map(
        lambda body: Request("POST", "/api/v1/wallet/withdrawals", scene.user, body)
    )


def market_lifecycle(scene: Scene) -> st.SearchStrategy[Request]:
    market_id = one_value(Field(st.sampled_from(scene.lifecycle_market_ids), any_integer))
    action = st.sampled_from(["pause", "resume", "close", "resolve"])
    resolution = bodies({"outcome": Field(st.sampled_from(["yes", "no", "void"]), any_text)})

    def request(market: object, verb: str, body: dict[str, object]) -> Request:
        path = f"/api/v1/admin/markets/{path_segment(market)}/{verb}"
        return Request("POST", path, scene.admin, body if verb == "resolve" else MISSING)

    return st.builds(
        request, market_id.filter(lambda value: value is not MISSING), action, resolution
    )


def split_or_merge(scene: Scene) -> st.SearchStrategy[Request]:
    market_id = one_value(Field(st.just(scene.market_id), any_integer)).filter(
        lambda value: value is not MISSING
    )
    verb = st.sampled_from(["split", "merge"])
    body = bodies({"quantity": Field(st.integers(1, 3), any_integer)})

    def request(market: object, action: str, fields: dict[str, object]) -> Request:
        path = f"/api/v1/markets/{path_segment(market)}/{action}"
        return Request("POST", path, scene.user, fields)

    return st.builds(request, market_id, verb, body)


COMMANDS: dict[str, Callable[[Scene], st.SearchStrategy[Request]]] = {
    "place order": place_order,
    "cancel order": cancel_order,
    "cancel all orders": cancel_all_orders,
    "withdraw": withdraw,
    "split or merge": split_or_merge,
    "market lifecycle": market_lifecycle,
}


# --- the run -----------------------------------------------------------------------------


def send(http: httpx.Client, request: Request) -> httpx.Response:
    content = None
    headers = dict(request.headers)
    if request.body is not MISSING:
        # json.dumps escapes lone surrogates (\udXXX): the server sees what a client can send.
        content = json.dumps(request.body).encode()
        headers["content-type"] = "application/json"
    return http.request(request.method, request.path, content=content, headers=headers)


def outcome_of(response: httpx.Response) -> str:
    """ "committed" (2xx) or "refused" (a 4xx in the error shape); anything else fails."""
    context = f"{response.status_code} {response.text[:300]}"
    if 200 <= response.status_code < 300:
        return "committed"
    assert 400 <= response.status_code < 500, context
    error = response.json()["error"]
    assert isinstance(error["code"], str) and isinstance(error["message"], str), context
    return "refused"


def run_command(base_url: str, app: Litestar, scene: Scene, command: str) -> Counter[str]:
    outcomes: Counter[str] = Counter()
    failures_before = ledger_commit_failures()

    @settings(
        max_examples=MAX_EXAMPLES,
        deadline=None,
        derandomize=True,
        database=None,
        # Shrinking would re-send against a server whose engine a refused batch rebuilds.
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    )
    @given(request=COMMANDS[command](scene))
    def each(request: Request) -> None:
        note(repr(request))
        response = send(http, request)
        assert ledger_commit_failures() == failures_before, "a ledger batch failed"
        assert services_of(app).writer.stalled_since is None, "the ledger writer is stalled"
        outcomes[outcome_of(response)] += 1

    with httpx.Client(base_url=base_url, timeout=30) as http:
        each()
    return outcomes


@pytest_asyncio.fixture(scope="module")
async def scene(
    client: httpx.AsyncClient, outbox_path: Path, admin_login: tuple[str, dict]
) -> Scene:
    admin = bearer(admin_login[0])
    trader = await verified_trader(client, outbox_path, admin, DEPOSIT)
    market = await create_market(client, admin, tick=1)
    resting = await create_market(client, admin, tick=1)
    order_ids = [
        (await trader.placed(resting["id"], "yes", "buy", 1, price))["id"]
        for price in range(1, RESTING_ORDERS + 1)
    ]
    lifecycle = []
    for _ in range(LIFECYCLE_MARKETS):
        lifecycle_market = await create_market(client, admin, tick=1)
        await trader.placed(lifecycle_market["id"], "no", "buy", 1, 400)  # for close to cancel
        lifecycle.append(lifecycle_market["id"])
    return Scene(trader.headers, admin, market["id"], tuple(order_ids), tuple(lifecycle))


@pytest.mark.parametrize("command", list(COMMANDS))
async def test_no_request_reaches_the_writer_and_fails(
    client: httpx.AsyncClient, app: Litestar, scene: Scene, command: str
) -> None:
    outcomes = await asyncio.to_thread(run_command, str(client.base_url), app, scene, command)
    assert outcomes["committed"] > 0, outcomes  # the drawn requests do reach the writer
    assert outcomes["refused"] > 0, outcomes
    assert await services_of(app).writer.drain(10.0)
    assert services_of(app).writer.stalled_since is None
