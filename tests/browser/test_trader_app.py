"""The trader app in Chromium (SPEC §14): log in, wallet, trade, live market data, a
phone screen. Every element is found by its role and accessible name."""

from __future__ import annotations

import os
import re
from pathlib import Path

import httpx
from playwright.async_api import Browser, BrowserContext, Page, WebSocketRoute, expect

from tests.browser.conftest import PHONE_SCREEN, logged_in_page
from tests.conftest import ROOT
from tests.trading import create_market, funded_trader

SCREENSHOTS_DIR = ROOT / "docs" / "screenshots"


async def test_pages_say_where_they_may_load_from_and_stay_out_of_the_api_document(
    client: httpx.AsyncClient,
) -> None:
    page = await client.get("/")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    policy = page.headers["content-security-policy"]
    assert "default-src 'self'" in policy and "script-src 'self'" in policy
    assert "unsafe-inline" not in policy
    assert page.headers["referrer-policy"] == "same-origin"
    assert page.headers["x-content-type-options"] == "nosniff"
    assert '<script type="module" src="/static/js/app.js"></script>' in page.text
    script = await client.get("/static/js/app.js")
    assert script.status_code == 200
    assert "javascript" in script.headers["content-type"]
    assert script.headers["x-content-type-options"] == "nosniff"
    document = (await client.get("/schema/openapi.json")).json()
    assert "/" not in document["paths"]
    assert not any(path.startswith("/static") for path in document["paths"])


async def test_log_in_deposit_and_see_the_balance_change(
    context: BrowserContext, outbox_path: Path
) -> None:
    page = await logged_in_page(context, outbox_path)
    await page.get_by_role("link", name="Wallet").click()
    balance = page.locator("dd#wallet-balance")
    await expect(balance).to_have_text("₹15.00")  # the signup bonus
    await expect(page.get_by_text("Balance", exact=True)).to_be_visible()
    await expect(page.get_by_text("Available", exact=True)).to_be_visible()

    await page.get_by_role("textbox", name="Amount").fill("250.50")
    await page.get_by_role("button", name="Deposit").click()
    await expect(balance).to_have_text("₹265.50")
    await expect(page.locator("dd#wallet-available")).to_have_text("₹265.50")
    deposits = page.get_by_role("table", name="Deposits")
    await expect(deposits.get_by_role("cell", name="completed")).to_be_visible()

    # A withdrawal without KYC is refused, in words, next to the amount.
    amount = page.get_by_role("textbox", name="Amount")
    await amount.fill("10")
    await page.get_by_role("button", name="Withdraw").click()
    await expect(page.locator("#amount-error")).to_contain_text(re.compile("kyc", re.I))
    await expect(amount).to_have_accessible_description(re.compile("kyc", re.I))

    await page.get_by_role("button", name="Log out").click()
    await expect(page.get_by_role("textbox", name="Phone number")).to_be_visible()


async def open_market(page: Page, title: str) -> None:
    await page.get_by_role("link", name="Markets").click()
    await page.get_by_role("searchbox", name="Search markets").fill(title)
    await page.get_by_role("link", name=title, exact=True).click()
    await expect(page.get_by_role("heading", level=1, name=title)).to_be_visible()


async def test_trade_from_the_ticket_and_cancel_a_resting_order_while_another_page_watches(
    browser: Browser,
    base_url: str,
    context: BrowserContext,
    client: httpx.AsyncClient,
    admin: dict[str, str],
    outbox_path: Path,
) -> None:
    market = await create_market(client, admin, title="Will the web app ship this week?")
    title = market["title"]
    seller = await funded_trader(client, outbox_path, deposit=10_000)
    await seller.placed(market["id"], "no", "buy", 2, price=350)  # asks YES at 650

    # Another person watches the same market in their own browser.
    watcher_context = await browser.new_context(base_url=base_url, viewport=PHONE_SCREEN)
    watcher = await logged_in_page(watcher_context, outbox_path)
    await open_market(watcher, title)
    watched_book = watcher.get_by_role("region", name="Order book")
    await expect(watched_book.get_by_role("table", name="Buyers of NO")).to_contain_text("₹3.50")
    await expect(watcher.get_by_role("region", name="Trades")).not_to_contain_text("₹6.50")

    page = await logged_in_page(context, outbox_path)
    await open_market(page, title)
    book = page.get_by_role("region", name="Order book")
    await expect(book.get_by_role("table", name="Buyers of NO")).to_contain_text("₹3.50")

    await page.get_by_role("button", name="Yes", exact=True).click()
    await page.get_by_role("button", name="Buy", exact=True).click()
    await page.get_by_role("spinbutton", name="Price").fill("6.50")
    await page.get_by_role("spinbutton", name="Quantity").fill("2")
    place = page.get_by_role("button", name=re.compile("^Place order"))
    await expect(place).to_have_accessible_name("Place order: cost ₹13.00, payout if right ₹20.00")
    await place.click()

    position = page.get_by_role("region", name="Position")
    await expect(position).to_contain_text(re.compile(r"YES held\s*2"))
    trades = page.get_by_role("region", name="Trades")
    await expect(trades).to_contain_text("₹6.50")
    await expect(book.get_by_role("table", name="Buyers of NO")).not_to_contain_text("₹3.50")
    # ...and the watcher sees the trade and the book change without a reload.
    await expect(watcher.get_by_role("region", name="Trades")).to_contain_text("₹6.50")
    await expect(watched_book.get_by_role("table", name="Buyers of NO")).to_contain_text("No bids")
    await watcher_context.close()

    # A resting order appears under My orders and goes with its Cancel button.
    await page.get_by_role("spinbutton", name="Price").fill("1")  # ₹2.00 is left
    await page.get_by_role("spinbutton", name="Quantity").fill("1")
    await expect(place).to_have_accessible_name("Place order: cost ₹1.00, payout if right ₹10.00")
    await place.click()
    orders = page.get_by_role("region", name="My orders")
    await expect(orders.get_by_role("button", name="Cancel")).to_have_count(1)
    await expect(book.get_by_role("table", name="Buyers of YES")).to_contain_text("₹1.00")
    await orders.get_by_role("button", name="Cancel").click()
    await expect(orders.get_by_role("button", name="Cancel")).to_have_count(0)
    await expect(book.get_by_role("table", name="Buyers of YES")).not_to_contain_text("₹1.00")

    # An off-tick price is refused in words next to the price.
    await page.get_by_role("spinbutton", name="Price").fill("5.25")
    await place.click()
    await expect(page.get_by_role("spinbutton", name="Price")).to_have_accessible_description(
        re.compile(r"\S")
    )


async def no_horizontal_scroll(page: Page) -> None:
    width = await page.evaluate("document.documentElement.scrollWidth")
    assert width <= PHONE_SCREEN["width"], f"{page.url}: {width} px wide"


async def shot(page: Page, name: str, tmp_path: Path) -> None:
    """Screenshots go to docs/screenshots/ when PROBO_UPDATE_SCREENSHOTS=1 (to refresh
    the committed ones), else next to the test's other files."""
    directory = SCREENSHOTS_DIR if os.environ.get("PROBO_UPDATE_SCREENSHOTS") else tmp_path
    await page.screenshot(path=directory / f"{name}.png", full_page=True)


async def test_every_page_fits_a_phone_screen_without_horizontal_scroll(
    context: BrowserContext,
    client: httpx.AsyncClient,
    admin: dict[str, str],
    outbox_path: Path,
    tmp_path: Path,
) -> None:
    market = await create_market(
        client,
        admin,
        title="Will India win the cricket final at Wankhede by more than 50 runs?",
        category="cricket",
        description="Resolves YES if India wins the final by a margin of more than 50 runs.",
    )
    maker = await funded_trader(client, outbox_path, deposit=100_000)
    taker = await funded_trader(client, outbox_path, deposit=100_000)
    for outcome, price, quantity in [("yes", 600, 10), ("yes", 550, 30), ("no", 350, 20)]:
        await maker.placed(market["id"], outcome, "buy", quantity, price=price)
    await taker.placed(market["id"], "no", "buy", 4, price=400)  # trades at YES 600

    page = await logged_in_page(context, outbox_path)
    await page.get_by_role("link", name="Wallet").click()
    await page.get_by_role("textbox", name="Amount").fill("500")
    await page.get_by_role("button", name="Deposit").click()
    await expect(page.locator("dd#wallet-balance")).to_have_text("₹515.00")
    await no_horizontal_scroll(page)
    await shot(page, "wallet", tmp_path)

    await open_market(page, market["title"])
    await expect(page.get_by_role("region", name="Trades")).to_contain_text("₹6.00")
    chart = page.get_by_role("region", name="Price chart")
    await expect(chart.get_by_role("img", name=re.compile("^YES price"))).to_be_visible()
    await page.get_by_role("spinbutton", name="Price").fill("5.50")
    await page.get_by_role("spinbutton", name="Quantity").fill("3")
    await page.get_by_role("button", name=re.compile("^Place order")).click()
    await expect(
        page.get_by_role("region", name="My orders").get_by_role("button", name="Cancel")
    ).to_have_count(1)
    await no_horizontal_scroll(page)
    await shot(page, "market", tmp_path)

    await page.get_by_role("link", name="Markets").click()
    await page.get_by_role("searchbox", name="Search markets").fill("Wankhede")
    found = page.get_by_role("list", name="Markets").get_by_role("link")
    await expect(found).to_have_count(1)
    await expect(found).to_have_accessible_name(market["title"])
    await no_horizontal_scroll(page)
    await shot(page, "markets", tmp_path)

    await page.get_by_role("link", name="Portfolio").click()
    await expect(page.get_by_role("table", name="Positions")).to_be_visible()
    await no_horizontal_scroll(page)
    await shot(page, "portfolio", tmp_path)

    await page.get_by_role("button", name="Log out").click()
    await expect(page.get_by_role("button", name="Send code")).to_be_visible()
    await no_horizontal_scroll(page)
    await shot(page, "login", tmp_path)


async def test_a_closed_socket_reconnects_and_the_book_is_snapshotted_again(
    context: BrowserContext,
    client: httpx.AsyncClient,
    admin: dict[str, str],
    outbox_path: Path,
) -> None:
    market = await create_market(client, admin)
    other = await funded_trader(client, outbox_path, deposit=10_000)
    sockets: list[WebSocketRoute] = []

    async def through(route: WebSocketRoute) -> None:
        route.connect_to_server()
        sockets.append(route)

    page = await logged_in_page(context, outbox_path)
    await page.route_web_socket(re.compile(r"/api/v1/ws$"), through)
    await page.reload()  # the page's socket now goes through `through`
    await open_market(page, market["title"])
    yes_bids = page.get_by_role("region", name="Order book").get_by_role(
        "table", name="Buyers of YES"
    )
    await expect(yes_bids).to_contain_text("No bids")
    opened = len(sockets)
    assert opened >= 1

    await sockets[-1].close(code=4008, reason="test")
    # What changes while the page reconnects reaches it in the new snapshot.
    await other.placed(market["id"], "yes", "buy", 3, price=450)
    await expect(yes_bids).to_contain_text("₹4.50")
    assert len(sockets) > opened
