"""The fake Cashfree (tests/fake_cashfree.py) over real HTTP: the API's answers and
refusals, the signed webhooks it sends to a loopback receiver, the control API and the
checkout page."""

from __future__ import annotations

import asyncio
import json
import re
import socket
import sys
from collections.abc import AsyncIterator

import httpx
import pytest

from tests.fake_cashfree import (
    CashfreeError,
    FakeCashfree,
    payment_webhook_body,
    payout_webhook_body,
    serve_fake_cashfree,
    sign,
    signed_headers,
)
from tests.fakes import FakeTwilio

CLIENT_ID = "test-client"
CLIENT_SECRET = "test-secret"
API_HEADERS = {
    "x-client-id": CLIENT_ID,
    "x-client-secret": CLIENT_SECRET,
    "x-api-version": "2023-08-01",
}
AUTH_FAILED = {
    "message": "authentication Failed",
    "code": "request_failed",
    "type": "authentication_error",
}
WEBHOOK_POLLS_MAX = 500


@pytest.fixture
async def fake() -> AsyncIterator[FakeCashfree]:
    async with serve_fake_cashfree(CLIENT_ID, CLIENT_SECRET) as served:
        yield served


@pytest.fixture
async def http(fake: FakeCashfree) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=fake.base_url, timeout=30) as client:
        yield client


@pytest.fixture
def receiver(fake_twilio: FakeTwilio) -> FakeTwilio:
    """A loopback HTTP server recording what it receives and answering 201."""
    return fake_twilio


def order_body(order_id: str = "dep_1", amount: str = "100.10", **meta: str) -> bytes:
    """A create-order body written by hand, so the amount's text is exactly `amount`."""
    return (
        f'{{"order_id": "{order_id}", "order_amount": {amount}, "order_currency": "INR", '
        '"customer_details": {"customer_id": "user_7", "customer_phone": "9876543210"}, '
        f'"order_meta": {json.dumps(meta)}}}'
    ).encode()


def transfer_body(transfer_id: str = "wd_1", amount: str = "250.50") -> bytes:
    return (
        f'{{"transfer_id": "{transfer_id}", "transfer_amount": {amount}, '
        '"transfer_currency": "INR", "transfer_mode": "banktransfer", '
        '"beneficiary_details": {"beneficiary_name": "A User", '
        '"beneficiary_instrument_details": '
        '{"bank_account_number": "026291800001191", "bank_ifsc": "YESB0000262"}}}'
    ).encode()


async def create_order(http: httpx.AsyncClient, body: bytes) -> dict:
    response = await http.post("/pg/orders", content=body, headers=API_HEADERS)
    assert response.status_code == 200, response.text
    return response.json()


async def create_transfer(http: httpx.AsyncClient, body: bytes) -> dict:
    response = await http.post("/payout/transfers", content=body, headers=API_HEADERS)
    assert response.status_code == 200, response.text
    return response.json()


def assert_signed(headers: dict[str, str], body: bytes) -> None:
    assert headers["x-webhook-signature"] == sign(
        CLIENT_SECRET, headers["x-webhook-timestamp"], body
    )
    assert headers["x-webhook-timestamp"].isdigit()
    assert headers["x-webhook-version"] == "2023-08-01"
    assert headers["content-type"] == "application/json"


def assert_error(response: httpx.Response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["code"] == code, body
    assert set(body) == {"message", "code", "type"}


# -- authentication and availability -----------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {**API_HEADERS, "x-client-secret": "wrong"},
        {**API_HEADERS, "x-client-id": "someone-else"},
        {"x-client-id": CLIENT_ID, "x-client-secret": CLIENT_SECRET},
    ],
    ids=["none", "wrong-secret", "wrong-id", "no-api-version"],
)
async def test_api_refuses_requests_without_the_credentials(
    fake: FakeCashfree, http: httpx.AsyncClient, headers: dict[str, str]
) -> None:
    for response in (
        await http.post("/pg/orders", content=order_body(), headers=headers),
        await http.get("/pg/orders/dep_1", headers=headers),
        await http.post("/payout/transfers", content=transfer_body(), headers=headers),
        await http.get("/payout/transfers", params={"transfer_id": "wd_1"}, headers=headers),
    ):
        assert response.status_code == 401
        assert response.json() == AUTH_FAILED
    assert fake.orders == {} and fake.transfers == {}
    assert len(fake.requests) == 4  # refused requests are recorded too


async def test_unavailable_answers_503_until_switched_back(
    fake: FakeCashfree, http: httpx.AsyncClient
) -> None:
    response = await http.post("/_fake/config", json={"unavailable": True})
    assert response.status_code == 200
    assert response.json()["unavailable"] is True
    assert_error(
        await http.post("/pg/orders", content=order_body(), headers=API_HEADERS),
        503,
        "service_unavailable",
    )
    assert_error(await http.get("/payout/transfers?transfer_id=x"), 503, "service_unavailable")
    fake.unavailable = False
    await create_order(http, order_body())


async def test_config_refuses_unknown_or_malformed_settings(http: httpx.AsyncClient) -> None:
    for values in (
        {"nonsense": 1},
        {"unavailable": "yes"},
        {"auto_settle_transfers": "MAYBE"},
        {"payout_webhook_url": "ftp://x"},
    ):
        assert_error(await http.post("/_fake/config", json=values), 400, "config_invalid")


# -- orders ------------------------------------------------------------------------------


async def test_order_is_created_and_read_with_its_amount_as_sent(
    fake: FakeCashfree, http: httpx.AsyncClient
) -> None:
    created = await create_order(http, order_body("dep_1", "100.10"))
    assert created["order_id"] == "dep_1"
    assert created["entity"] == "order"
    assert created["order_status"] == "ACTIVE"
    assert created["cf_order_id"].isdigit()
    assert created["payment_session_id"].startswith("session_")
    assert created["created_at"].endswith("+05:30")
    assert created["order_expiry_time"].endswith("+05:30")
    assert created["customer_details"]["customer_id"] == "user_7"

    response = await http.get("/pg/orders/dep_1", headers=API_HEADERS)
    assert response.status_code == 200
    assert '"order_amount":100.10' in response.text
    assert response.json() == created
    assert str(fake.orders["dep_1"].order_amount) == "100.10"
    recorded = fake.requests[0]
    assert (recorded.method, recorded.path) == ("POST", "/pg/orders")
    assert recorded.headers["x-client-id"] == CLIENT_ID


async def test_order_id_is_generated_when_absent(http: httpx.AsyncClient) -> None:
    body = {
        "order_amount": 5,
        "order_currency": "INR",
        "customer_details": {"customer_id": "u", "customer_phone": "9876543210"},
    }
    response = await http.post("/pg/orders", json=body, headers=API_HEADERS)
    assert response.status_code == 200, response.text
    assert response.json()["order_id"].startswith("order_")
    assert response.json()["order_amount"] == 5


async def test_order_id_used_twice_is_refused(http: httpx.AsyncClient) -> None:
    await create_order(http, order_body("dep_twice"))
    response = await http.post("/pg/orders", content=order_body("dep_twice"), headers=API_HEADERS)
    assert response.status_code == 409
    assert response.json() == {
        "message": "order with same id is already present",
        "code": "order_already_exists",
        "type": "invalid_request_error",
    }


async def test_unknown_order_is_not_found(http: httpx.AsyncClient) -> None:
    response = await http.get("/pg/orders/no_such_order", headers=API_HEADERS)
    assert response.status_code == 404
    assert response.json() == {
        "message": "order not found",
        "code": "order_not_found",
        "type": "invalid_request_error",
    }


CUSTOMER = {"customer_id": "u", "customer_phone": "9876543210"}


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (b"not json", "request_invalid"),
        (b"[1, 2]", "request_invalid"),
        (b'{"order_amount": NaN}', "request_invalid"),
        ({"order_currency": "INR", "customer_details": CUSTOMER}, "order_amount_missing"),
        ({"order_amount": 0.5, "order_currency": "INR"}, "order_amount_invalid"),
        ({"order_amount": "100", "order_currency": "INR"}, "order_amount_invalid"),
        ({"order_amount": True, "order_currency": "INR"}, "order_amount_invalid"),
        (b'{"order_amount": 100.123, "order_currency": "INR"}', "order_amount_invalid"),
        ({"order_amount": 1e12, "order_currency": "INR"}, "order_amount_invalid"),
        ({"order_amount": 10, "order_currency": "USD"}, "order_currency_invalid"),
        ({"order_amount": 10, "customer_details": CUSTOMER}, "order_currency_missing"),
        ({"order_amount": 10, "order_currency": "INR"}, "customer_details_missing"),
        (
            {"order_amount": 10, "order_currency": "INR", "customer_details": {"customer_id": "u"}},
            "customer_phone_missing",
        ),
        (
            {"order_id": "a b", "order_amount": 10, "order_currency": "INR"},
            "order_id_invalid",
        ),
        (
            {
                "order_amount": 10,
                "order_currency": "INR",
                "customer_details": CUSTOMER,
                "order_meta": {"notify_url": "not a url"},
            },
            "notify_url_invalid",
        ),
    ],
)
async def test_invalid_order_is_refused(
    fake: FakeCashfree, http: httpx.AsyncClient, body: bytes | dict, code: str
) -> None:
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    response = await http.post("/pg/orders", content=content, headers=API_HEADERS)
    assert_error(response, 400, code)
    assert response.json()["type"] == "invalid_request_error"
    assert fake.orders == {}


# -- payments and their webhooks ---------------------------------------------------------


async def test_pay_sends_a_signed_success_webhook_and_marks_the_order_paid(
    fake: FakeCashfree, http: httpx.AsyncClient, receiver: FakeTwilio
) -> None:
    notify_url = receiver.base_url + "/webhooks/cashfree"
    await create_order(http, order_body("dep_paid", "100.10", notify_url=notify_url))

    delivery = await fake.pay("dep_paid", cf_payment_id="5114910001")

    assert delivery is not None and delivery.status == 201 and delivery.error is None
    [received] = receiver.requests
    assert (received.method, received.path) == ("POST", "/webhooks/cashfree")
    assert received.body == delivery.body
    assert_signed(received.headers, received.body)
    text = received.body.decode()
    assert '"payment_amount":100.10' in text and '"order_amount":100.10' in text
    webhook = json.loads(text)
    assert webhook["type"] == "PAYMENT_SUCCESS_WEBHOOK"
    assert webhook["event_time"].endswith("+05:30")
    assert webhook["data"]["order"] == {
        "order_id": "dep_paid",
        "order_amount": 100.10,
        "order_currency": "INR",
        "order_tags": None,
    }
    payment = webhook["data"]["payment"]
    assert payment["cf_payment_id"] == "5114910001"
    assert payment["payment_status"] == "SUCCESS"
    assert payment["payment_currency"] == "INR"
    assert payment["payment_group"] == "upi"
    assert payment["payment_method"] == {"upi": {"channel": "collect", "upi_id": "test@upi"}}
    assert webhook["data"]["customer_details"]["customer_id"] == "user_7"
    assert webhook["data"]["payment_gateway_details"]["gateway_name"] == "CASHFREE"

    response = await http.get("/pg/orders/dep_paid", headers=API_HEADERS)
    assert response.json()["order_status"] == "PAID"
    assert_error(await http.post("/_fake/orders/dep_paid/pay", json={}), 409, "order_not_active")


@pytest.mark.parametrize("outcome", ["FAILED", "USER_DROPPED"])
async def test_pay_over_the_control_api_with_a_failed_attempt(
    http: httpx.AsyncClient, receiver: FakeTwilio, outcome: str
) -> None:
    await create_order(http, order_body("dep_no", "42.00", notify_url=receiver.base_url))

    response = await http.post(
        "/_fake/orders/dep_no/pay", json={"outcome": outcome, "amount": "42.5"}
    )

    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["order"]["order_status"] == "ACTIVE"  # the customer may try again
    assert answer["webhook"]["url"] == receiver.base_url
    assert answer["webhook"]["status"] == 201
    [received] = receiver.requests
    assert answer["webhook"]["body"] == received.body.decode()
    assert_signed(received.headers, received.body)
    assert '"payment_amount":42.50' in received.body.decode()
    webhook = json.loads(received.body)
    assert webhook["type"] == f"PAYMENT_{outcome}_WEBHOOK"
    assert webhook["data"]["payment"]["payment_status"] == outcome
    assert webhook["data"]["payment"]["bank_reference"] is None


async def test_pay_without_webhook_or_notify_url_sends_none(
    fake: FakeCashfree, http: httpx.AsyncClient, receiver: FakeTwilio
) -> None:
    await create_order(http, order_body("dep_quiet", notify_url=receiver.base_url))
    await create_order(http, order_body("dep_no_url"))
    assert await fake.pay("dep_quiet", send_webhook=False) is None
    response = await http.post("/_fake/orders/dep_no_url/pay", json={})
    assert response.json()["webhook"] is None
    assert receiver.requests == []
    assert fake.orders["dep_quiet"].order_status == "PAID"


async def test_pay_refuses_unknown_orders_and_bad_arguments(
    fake: FakeCashfree, http: httpx.AsyncClient
) -> None:
    assert_error(await http.post("/_fake/orders/nope/pay", json={}), 404, "order_not_found")
    with pytest.raises(CashfreeError) as refused:
        await fake.pay("nope")
    assert refused.value.status == 404
    await create_order(http, order_body("dep_args"))
    assert_error(
        await http.post("/_fake/orders/dep_args/pay", json={"outcome": "MAYBE"}),
        400,
        "outcome_invalid",
    )
    assert_error(
        await http.post("/_fake/orders/dep_args/pay", json={"amount": "1.001"}),
        400,
        "amount_invalid",
    )
    assert fake.orders["dep_args"].order_status == "ACTIVE"


async def test_an_undeliverable_webhook_is_recorded_not_raised(
    fake: FakeCashfree, http: httpx.AsyncClient
) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed_port = sock.getsockname()[1]
    await create_order(http, order_body("dep_lost", notify_url=f"http://127.0.0.1:{closed_port}/"))
    delivery = await fake.pay("dep_lost")
    assert delivery is not None and delivery.status is None
    assert delivery.error and "ConnectError" in delivery.error
    assert fake.deliveries[-1] is delivery
    assert fake.orders["dep_lost"].order_status == "PAID"


# -- transfers ---------------------------------------------------------------------------


async def test_transfer_is_created_read_and_refused_twice(
    fake: FakeCashfree, http: httpx.AsyncClient
) -> None:
    created = await create_transfer(http, transfer_body("wd_1", "250.50"))
    assert created["transfer_id"] == "wd_1"
    assert created["cf_transfer_id"].isdigit()
    assert (created["status"], created["status_code"]) == ("RECEIVED", "RECEIVED")
    assert created["transfer_mode"] == "banktransfer"
    assert created["beneficiary_details"]["beneficiary_instrument_details"]["bank_ifsc"] == (
        "YESB0000262"
    )

    by_id = await http.get("/payout/transfers", params={"transfer_id": "wd_1"}, headers=API_HEADERS)
    assert by_id.status_code == 200
    assert '"transfer_amount":250.50' in by_id.text
    by_cf_id = await http.get(
        "/payout/transfers",
        params={"cf_transfer_id": created["cf_transfer_id"]},
        headers=API_HEADERS,
    )
    assert by_cf_id.json() == by_id.json() == created

    again = await http.post("/payout/transfers", content=transfer_body("wd_1"), headers=API_HEADERS)
    assert again.status_code == 409
    assert again.json() == {
        "message": "transfer_id already exists",
        "code": "transfer_id_already_exists",
        "type": "invalid_request_error",
    }
    assert list(fake.transfers) == ["wd_1"]


async def test_unknown_transfer_is_not_found(http: httpx.AsyncClient) -> None:
    for params in ({"transfer_id": "nope"}, {"cf_transfer_id": "123"}):
        response = await http.get("/payout/transfers", params=params, headers=API_HEADERS)
        assert_error(response, 404, "transfer_not_found")
    assert_error(
        await http.get("/payout/transfers", headers=API_HEADERS), 400, "transfer_id_missing"
    )


BENEFICIARY = {"beneficiary_id": "bene_1"}


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"transfer_amount": 10, "beneficiary_details": BENEFICIARY}, "transfer_id_missing"),
        (
            {"transfer_id": "has-dash", "transfer_amount": 10, "beneficiary_details": BENEFICIARY},
            "transfer_id_invalid",
        ),
        (
            {"transfer_id": "x" * 41, "transfer_amount": 10, "beneficiary_details": BENEFICIARY},
            "transfer_id_invalid",
        ),
        ({"transfer_id": "t", "beneficiary_details": BENEFICIARY}, "transfer_amount_missing"),
        (
            {"transfer_id": "t", "transfer_amount": 0, "beneficiary_details": BENEFICIARY},
            "transfer_amount_invalid",
        ),
        (
            {
                "transfer_id": "t",
                "transfer_amount": 10,
                "transfer_currency": "USD",
                "beneficiary_details": BENEFICIARY,
            },
            "transfer_currency_invalid",
        ),
        (
            {
                "transfer_id": "t",
                "transfer_amount": 10,
                "transfer_mode": "pigeon",
                "beneficiary_details": BENEFICIARY,
            },
            "transfer_mode_invalid",
        ),
        ({"transfer_id": "t", "transfer_amount": 10}, "beneficiary_details_missing"),
        (
            {"transfer_id": "t", "transfer_amount": 10, "beneficiary_details": {}},
            "beneficiary_details_invalid",
        ),
        (
            {
                "transfer_id": "t",
                "transfer_amount": 10,
                "beneficiary_details": {
                    "beneficiary_instrument_details": {"bank_account_number": "1"}
                },
            },
            "beneficiary_instrument_details_invalid",
        ),
    ],
)
async def test_invalid_transfer_is_refused(
    fake: FakeCashfree, http: httpx.AsyncClient, body: dict, code: str
) -> None:
    response = await http.post("/payout/transfers", json=body, headers=API_HEADERS)
    assert_error(response, 400, code)
    assert fake.transfers == {}


async def test_settle_sends_a_signed_payout_webhook(
    fake: FakeCashfree, http: httpx.AsyncClient, receiver: FakeTwilio
) -> None:
    created = await create_transfer(http, transfer_body("wd_settle", "250.50"))
    response = await http.post("/_fake/config", json={"payout_webhook_url": receiver.base_url})
    assert response.json()["payout_webhook_url"] == receiver.base_url

    response = await http.post("/_fake/transfers/wd_settle/settle", json={"status": "SUCCESS"})

    assert response.status_code == 200, response.text
    assert response.json()["transfer"]["status"] == "SUCCESS"
    assert response.json()["webhook"]["status"] == 201
    [received] = receiver.requests
    assert_signed(received.headers, received.body)
    assert '"transfer_amount":250.50' in received.body.decode()
    webhook = json.loads(received.body)
    assert webhook["type"] == "TRANSFER_SUCCESS"
    data = webhook["data"]
    assert (data["transfer_id"], data["cf_transfer_id"]) == ("wd_settle", created["cf_transfer_id"])
    assert (data["status"], data["status_code"]) == ("SUCCESS", "COMPLETED")
    assert data["transfer_utr"] and data["transfer_mode"] == "banktransfer"
    assert set(data) >= {"status_description", "added_on", "updated_on"}

    got = await http.get("/payout/transfers?transfer_id=wd_settle", headers=API_HEADERS)
    assert got.json()["status"] == "SUCCESS"
    assert got.json()["transfer_utr"] == data["transfer_utr"]

    # A success may later be reversed; a settled transfer cannot fail.
    delivery = await fake.settle("wd_settle", "REVERSED")
    assert delivery is not None and json.loads(delivery.body)["type"] == "TRANSFER_REVERSED"
    assert_error(
        await http.post("/_fake/transfers/wd_settle/settle", json={"status": "FAILED"}),
        409,
        "transfer_not_settleable",
    )
    assert_error(
        await http.post("/_fake/transfers/nope/settle", json={"status": "FAILED"}),
        404,
        "transfer_not_found",
    )


@pytest.mark.parametrize("status", ["FAILED", "REJECTED"])
async def test_settle_as_failed_or_rejected(
    fake: FakeCashfree, http: httpx.AsyncClient, receiver: FakeTwilio, status: str
) -> None:
    await create_transfer(http, transfer_body("wd_no"))
    fake.payout_webhook_url = receiver.base_url
    delivery = await fake.settle("wd_no", status)
    assert delivery is not None and delivery.status == 201
    webhook = json.loads(receiver.requests[0].body)
    assert webhook["type"] == f"TRANSFER_{status}"
    assert webhook["data"]["status"] == status
    assert webhook["data"]["transfer_utr"] is None
    assert fake.transfers["wd_no"].status == status


async def test_settle_without_payout_webhook_url_sends_none(
    fake: FakeCashfree, http: httpx.AsyncClient
) -> None:
    await create_transfer(http, transfer_body("wd_quiet"))
    response = await http.post("/_fake/transfers/wd_quiet/settle", json={"status": "SUCCESS"})
    assert response.json()["webhook"] is None
    assert fake.transfers["wd_quiet"].status == "SUCCESS"


async def test_auto_settle_sends_the_webhook_after_answering(
    fake: FakeCashfree, http: httpx.AsyncClient, receiver: FakeTwilio
) -> None:
    response = await http.post(
        "/_fake/config",
        json={"payout_webhook_url": receiver.base_url, "auto_settle_transfers": "FAILED"},
    )
    assert response.status_code == 200

    created = await create_transfer(http, transfer_body("wd_auto"))

    assert created["status"] == "RECEIVED"
    for _ in range(WEBHOOK_POLLS_MAX):
        if receiver.requests:
            break
        await asyncio.sleep(0.01)
    [received] = receiver.requests
    assert json.loads(received.body)["type"] == "TRANSFER_FAILED"
    assert fake.transfers["wd_auto"].status == "FAILED"


# -- state, helpers, checkout ------------------------------------------------------------


async def test_state_lists_orders_transfers_and_requests(
    fake: FakeCashfree, http: httpx.AsyncClient
) -> None:
    await create_order(http, order_body("dep_state"))
    await create_transfer(http, transfer_body("wd_state"))
    response = await http.get("/_fake/state")
    state = response.json()
    assert [order["order_id"] for order in state["orders"]] == ["dep_state"]
    assert [transfer["transfer_id"] for transfer in state["transfers"]] == ["wd_state"]
    assert [(r["method"], r["path"]) for r in state["requests"]] == [
        ("POST", "/pg/orders"),
        ("POST", "/payout/transfers"),
    ]
    assert json.loads(state["requests"][0]["body"])["order_id"] == "dep_state"
    assert state["requests"][0]["headers"]["x-api-version"] == "2023-08-01"


def test_webhook_helpers_build_valid_and_forged_signatures() -> None:
    body = payment_webhook_body("dep_9", outcome="SUCCESS", amount="100.5", cf_payment_id="77")
    assert '"payment_amount":100.50' in body.decode()
    headers = signed_headers(CLIENT_SECRET, body, timestamp_ms=1_700_000_000_000)
    assert headers["x-webhook-timestamp"] == "1700000000000"
    assert headers["x-webhook-signature"] == sign(CLIENT_SECRET, "1700000000000", body)
    assert sign("other-secret", "1700000000000", body) != headers["x-webhook-signature"]
    assert sign(CLIENT_SECRET, "1700000000001", body) != headers["x-webhook-signature"]
    # A known vector: base64(HMAC-SHA256("key", "1" + "{}")).
    assert sign("key", "1", b"{}") == "QTd2Ycdd0hdRv9Rdq/yRKbjB0SoxlhzPau0PILH80Ok="

    payout = payout_webhook_body("wd_9", status="REJECTED", cf_transfer_id="88", amount="7")
    assert '"transfer_amount":7.00' in payout.decode()
    assert json.loads(payout)["type"] == "TRANSFER_REJECTED"
    with pytest.raises(ValueError):
        payment_webhook_body("dep_9", outcome="MAYBE", amount="1.00")
    with pytest.raises(ValueError):
        payout_webhook_body("wd_9", status="PENDING", cf_transfer_id="1", amount="1.00")


def checkout_action(page: str) -> str:
    match = re.search(r'<form method="post" action="([^"]+)"', page)
    assert match, page
    return match.group(1)


async def test_checkout_pay_button_pays_and_returns_to_the_site(
    fake: FakeCashfree, http: httpx.AsyncClient, receiver: FakeTwilio
) -> None:
    order = await create_order(
        http,
        order_body(
            "dep_click",
            "100.10",
            return_url="https://probo.example/deposits?order_id={order_id}",
            notify_url=receiver.base_url,
        ),
    )

    page = await http.get("/checkout", params={"payment_session_id": order["payment_session_id"]})

    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert "dep_click" in page.text and "100.10" in page.text
    assert ">Pay</button>" in page.text and ">Fail</button>" in page.text
    assert "http" not in page.text.replace(receiver.base_url, "")  # no outside resources
    submitted = await http.post(
        checkout_action(page.text),
        content=b"outcome=SUCCESS",
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert submitted.status_code == 303
    assert submitted.headers["location"] == "https://probo.example/deposits?order_id=dep_click"
    assert fake.orders["dep_click"].order_status == "PAID"
    assert json.loads(receiver.requests[0].body)["type"] == "PAYMENT_SUCCESS_WEBHOOK"
    again = await http.get("/checkout", params={"payment_session_id": order["payment_session_id"]})
    assert "PAID" in again.text and "<form" not in again.text


async def test_checkout_fail_button_without_return_url_shows_done(
    fake: FakeCashfree, http: httpx.AsyncClient
) -> None:
    order = await create_order(http, order_body("dep_fail"))
    page = await http.get("/checkout", params={"payment_session_id": order["payment_session_id"]})
    submitted = await http.post(
        checkout_action(page.text),
        content=b"outcome=FAILED",
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert submitted.status_code == 200
    assert "Done" in submitted.text and "FAILED" in submitted.text
    assert fake.orders["dep_fail"].order_status == "ACTIVE"
    missing = await http.get("/checkout", params={"payment_session_id": "session_nope"})
    assert missing.status_code == 404


@pytest.mark.slow
async def test_runs_from_the_command_line() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    process = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "tests.fake_cashfree", "--port", str(port)),
        *("--client-id", "cli-id", "--client-secret", "cli-secret"),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
            for _ in range(WEBHOOK_POLLS_MAX):
                try:
                    response = await client.get("/_fake/state")
                    break
                except httpx.ConnectError:
                    await asyncio.sleep(0.02)
            assert response.status_code == 200
            headers = {**API_HEADERS, "x-client-id": "cli-id", "x-client-secret": "cli-secret"}
            created = await client.post("/pg/orders", content=order_body(), headers=headers)
            assert created.status_code == 200, created.text
    finally:
        process.terminate()
        await asyncio.wait_for(process.wait(), 10)
