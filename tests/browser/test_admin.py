"""The admin dashboard at /admin in Chromium (SPEC §14): the KYC queue, creating and
resolving a market, admins only, a phone screen. Elements are found by role and
accessible name."""

from __future__ import annotations

import re
import uuid
from pathlib import Path

import httpx
from playwright.async_api import Browser, BrowserContext, Page, Request, expect

from probo.auth.api import SESSION_COOKIE
from tests.browser.conftest import PHONE_SCREEN, logged_in_page
from tests.browser.test_trader_app import no_horizontal_scroll, shot
from tests.conftest import bearer, last_otp, login, new_phone
from tests.services import new_pan
from tests.trading import create_market, funded_trader


async def with_session(context: BrowserContext, base_url: str, token: str) -> None:
    """The session cookie a login sets (the admin logs in once per run: OTP cooldown)."""
    await context.add_cookies([{"name": SESSION_COOKIE, "value": token, "url": base_url}])


async def admin_page(context: BrowserContext, base_url: str, admin_login: tuple[str, dict],
                     route: str) -> Page:  # fmt: skip
    await with_session(context, base_url, admin_login[0])
    page = await context.new_page()
    await page.goto(f"/admin{route}")
    await expect(page.get_by_role("button", name="Log out")).to_be_visible()
    return page


async def submitted_kyc(client: httpx.AsyncClient, outbox: Path) -> tuple[str, dict[str, str]]:
    """A new user with a pending KYC request: (phone, bearer headers)."""
    phone = new_phone()
    token, _ = await login(client, outbox, phone)
    body = {"pan": new_pan(), "name": "Asha Verma", "bank_account": "123456789012",
            "ifsc": "HDFC0001234"}  # fmt: skip
    response = await client.post("/api/v1/kyc", json=body, headers=bearer(token))
    assert response.status_code == 201, response.text
    return phone, bearer(token)


async def kyc_status(client: httpx.AsyncClient, headers: dict[str, str]) -> dict:
    response = await client.get("/api/v1/kyc", headers=headers)
    assert response.status_code == 200, response.text
    return response.json()


async def test_the_admin_page_is_a_shell_with_the_same_headers(client: httpx.AsyncClient) -> None:
    page = await client.get("/admin")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert "default-src 'self'" in page.headers["content-security-policy"]
    assert "unsafe-inline" not in page.headers["content-security-policy"]
    assert page.headers["referrer-policy"] == "same-origin"
    assert '<script type="module" src="/static/js/admin.js"></script>' in page.text
    assert (await client.get("/static/js/admin/kyc.js")).status_code == 200
    document = (await client.get("/schema/openapi.json")).json()
    assert "/admin" not in document["paths"]


async def test_approve_and_reject_kyc_requests_in_the_queue(
    context: BrowserContext,
    base_url: str,
    client: httpx.AsyncClient,
    admin_login: tuple[str, dict],
    outbox_path: Path,
) -> None:
    approved_phone, approved = await submitted_kyc(client, outbox_path)
    rejected_phone, rejected = await submitted_kyc(client, outbox_path)
    page = await admin_page(context, base_url, admin_login, "#/kyc")
    table = page.get_by_role("table", name="KYC requests")

    row = table.get_by_role("row").filter(has_text=approved_phone)
    await row.get_by_role("button", name="Approve").click()
    await expect(row).to_have_count(0)
    assert (await kyc_status(client, approved))["status"] == "VERIFIED"

    row = table.get_by_role("row").filter(has_text=rejected_phone)
    await row.get_by_role("button", name="Reject").click()
    await row.get_by_role("textbox", name="Reason").fill("The name does not match the PAN")
    await row.get_by_role("button", name="Confirm").click()
    await expect(row).to_have_count(0)
    status = await kyc_status(client, rejected)
    assert status["status"] == "REJECTED"
    assert status["reason"] == "The name does not match the PAN"


async def test_create_a_market_trade_it_and_resolve_it_with_confirmation(
    browser: Browser,
    context: BrowserContext,
    base_url: str,
    client: httpx.AsyncClient,
    admin_login: tuple[str, dict],
    outbox_path: Path,
) -> None:
    page = await admin_page(context, base_url, admin_login, "#/markets")
    form = page.get_by_role("form", name="Create market")
    create = form.get_by_role("button", name="Create market")

    # An API error is said in words next to the action.
    await form.get_by_role("textbox", name="Title").fill("Will this market close in the past?")
    await form.get_by_role("textbox", name="Category").fill("testing")
    await form.get_by_label("Closes at").fill("2020-01-01T12:00")
    await create.click()
    await expect(create).to_have_accessible_description(re.compile("closes_at", re.I))

    title = f"Will the admin's market {uuid.uuid4().hex[:6]} resolve YES?"
    await form.get_by_role("textbox", name="Title").fill(title)
    await form.get_by_label("Closes at").fill("2031-03-01T18:30")
    await form.get_by_role("textbox", name="Description").fill("Made in the browser.")
    await create.click()
    market = page.get_by_role("region", name=title)
    await expect(market).to_contain_text("open")
    found = (await client.get("/api/v1/markets", params={"q": title})).json()["items"]
    assert [m["title"] for m in found] == [title]
    assert found[0]["closes_at"].startswith("2031-03-0")
    market_id = found[0]["id"]

    await market.get_by_role("button", name="Pause").click()
    await expect(market.get_by_role("button", name="Resume")).to_be_visible()
    await expect(market.get_by_role("button", name="Pause")).to_have_count(0)
    await market.get_by_role("button", name="Resume").click()
    await expect(market.get_by_role("button", name="Pause")).to_be_visible()

    winner = await funded_trader(client, outbox_path, deposit=100_000)
    loser = await funded_trader(client, outbox_path, deposit=100_000)
    await winner.placed(market_id, "yes", "buy", 10, price=600)
    await loser.placed(market_id, "no", "buy", 10, price=400)
    assert (await winner.wallet())["balance"] == 1_500 + 100_000 - 6_000

    await expect(market.get_by_role("button", name="Yes", exact=True)).to_have_count(0)
    await market.get_by_role("button", name="Resolve").click()
    await expect(market.get_by_role("button", name="Confirm")).to_have_count(0)
    await market.get_by_role("button", name="Yes", exact=True).click()
    await market.get_by_role("button", name="Confirm").click()
    await expect(market).to_contain_text("resolved YES")
    await expect(market.get_by_role("button")).to_have_count(0)

    winners = await browser.new_context(base_url=base_url, viewport=PHONE_SCREEN)
    try:
        await with_session(winners, base_url, winner.token)
        wallet = await winners.new_page()
        await wallet.goto("/#/wallet")
        await expect(wallet.locator("dd#wallet-balance")).to_have_text("₹1,055.00")
    finally:
        await winners.close()


async def test_a_trader_at_admin_sees_no_admin_data(
    context: BrowserContext, outbox_path: Path
) -> None:
    asked: list[str] = []

    def record(request: Request) -> None:
        asked.append(request.url)

    context.on("request", record)
    visitor = await context.new_page()
    await visitor.goto("/admin#/kyc")
    await expect(visitor.get_by_role("textbox", name="Phone number")).to_be_visible()
    await visitor.close()

    page = await logged_in_page(context, outbox_path)  # the trader app's login
    await page.goto("/admin#/kyc")
    await expect(page.get_by_role("heading", name="Admins only")).to_be_visible()
    await expect(page.get_by_role("link", name="Go to the trader app")).to_be_visible()
    await page.goto("/admin#/markets")
    await expect(page.get_by_role("heading", name="Admins only")).to_be_visible()
    await expect(page.get_by_role("table", name="KYC requests")).to_have_count(0)
    await expect(page.get_by_role("form", name="Create market")).to_have_count(0)
    assert any(url.endswith("/api/v1/me") for url in asked)
    assert not [url for url in asked if "/api/v1/admin" in url]


async def test_a_visitor_logs_in_at_admin_with_the_login_form(
    context: BrowserContext, outbox_path: Path
) -> None:
    phone = new_phone()
    page = await context.new_page()
    await page.goto("/admin")
    await page.get_by_role("textbox", name="Phone number").fill(phone)
    await page.get_by_role("button", name="Send code").click()
    code = page.get_by_role("textbox", name="Code")
    await expect(code).to_be_visible()  # the code is sent once the form asks for it
    await code.fill(last_otp(outbox_path, phone))
    await page.get_by_role("button", name="Log in").click()
    await expect(page.get_by_role("heading", name="Admins only")).to_be_visible()


async def test_the_admin_pages_fit_a_phone_screen(
    context: BrowserContext,
    base_url: str,
    client: httpx.AsyncClient,
    admin: dict[str, str],
    admin_login: tuple[str, dict],
    outbox_path: Path,
    tmp_path: Path,
) -> None:
    await submitted_kyc(client, outbox_path)
    await create_market(
        client,
        admin,
        title="Will the monsoon reach Kerala before the first of June this year?",
        category="weather",
    )
    page = await admin_page(context, base_url, admin_login, "#/kyc")
    await expect(
        page.get_by_role("table", name="KYC requests").get_by_role("button", name="Approve").first
    ).to_be_visible()
    await no_horizontal_scroll(page)

    await page.get_by_role("link", name="Markets").click()
    await expect(page.get_by_role("form", name="Create market")).to_be_visible()
    await expect(page.get_by_role("region", name=re.compile("monsoon"))).to_be_visible()
    await no_horizontal_scroll(page)
    await shot(page, "admin", tmp_path)
