// A market: the live order book and trades, the order ticket, my open orders, my position.

import { api, say } from "../api.js";
import { field, h, replace } from "../dom.js";
import { priceChart } from "../chart.js";
import * as feed from "../feed.js";
import { paiseOf, rupees, time } from "../format.js";

const CONTRACT_PAISE = 1000; // what a contract pays if its outcome happens
const BOOK_LEVELS_SHOWN = 8;
const TRADES_SHOWN = 20;
const CHART_CANDLES = 60; // the last hour, by the minute
const CHART_REDRAW_DELAY_MS = 1000; // trades in a burst redraw the chart once

function bookTable(caption, levels) {
  const best = [...levels.entries()].sort((a, b) => b[0] - a[0]).slice(0, BOOK_LEVELS_SHOWN);
  return h(
    "table",
    { class: "book" },
    h("caption", {}, caption),
    h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "Price"), h("th", { scope: "col" }, "Quantity"))),
    h(
      "tbody",
      {},
      best.length
        ? best.map(([price, quantity]) => h("tr", {}, h("td", {}, rupees(price)), h("td", {}, quantity)))
        : h("tr", {}, h("td", { colspan: 2, class: "muted" }, "No bids")),
    ),
  );
}

function toggle(labels, initial, onChange) {
  let value = initial;
  const buttons = labels.map(([label, key]) =>
    h("button", { type: "button", "aria-pressed": String(key === initial), "data-key": key }, label),
  );
  for (const button of buttons) {
    button.addEventListener("click", () => {
      value = button.dataset.key;
      for (const other of buttons) other.setAttribute("aria-pressed", String(other === button));
      onChange(value);
    });
  }
  return { element: h("div", { class: "toggle", role: "group" }, buttons), get: () => value };
}

function describeOrder(order) {
  const what = `${order.side === "buy" ? "Buy" : "Sell"} ${order.outcome.toUpperCase()}`;
  return `${what} ${order.quantity} at ${rupees(order.price)}, ${order.filled_quantity} filled`;
}

export function marketView(view, marketId) {
  const heading = h("h1", {}, "Market");
  const about = h("p", { class: "muted" });
  const pageError = h("p", { class: "error", role: "alert" });
  const book = h("div", { class: "book-sides" }, h("p", { class: "muted" }, "Connecting…"));
  const trades = h("ol", { class: "trades" });
  const orders = h("ul", { class: "orders" });
  const position = h("div", {});
  const lastPrice = h("p", { class: "muted" }, "Last price —");
  const chart = h("div", {}, h("p", { class: "muted" }, "No trades yet."));
  let chartTimer = null;
  const tradeIds = new Set();
  let market = null;

  // --- the ticket -----------------------------------------------------------------
  const price = field("Price", "price", { type: "number", inputmode: "decimal", min: 0.5, max: 9.5, step: 0.5, value: "5.00" });
  const quantity = field("Quantity", "quantity", { type: "number", inputmode: "numeric", min: 1, step: 1, value: "1" });
  const outcome = toggle([["Yes", "yes"], ["No", "no"]], "yes", update);
  const side = toggle([["Buy", "buy"], ["Sell", "sell"]], "buy", update);
  const place = h("button", { type: "submit", class: "primary" }, "Place order");
  const placeError = h("p", { class: "error", role: "alert", id: "place-error" });
  const placed = h("p", { role: "status", class: "muted" });
  const ticket = h(
    "form",
    { class: "card ticket", "aria-label": "Order ticket", novalidate: true },
    h("h2", {}, "Order ticket"),
    h("p", { class: "toggle-label" }, "Outcome"),
    outcome.element,
    h("p", { class: "toggle-label" }, "Side"),
    side.element,
    price.element,
    quantity.element,
    place,
    placeError,
    placed,
  );
  outcome.element.setAttribute("aria-label", "Outcome");
  side.element.setAttribute("aria-label", "Side");

  function update() {
    const paise = paiseOf(price.input.value);
    const count = Number.parseInt(quantity.input.value, 10);
    if (paise === null || !(count > 0)) {
      place.textContent = "Place order";
      return;
    }
    const total = rupees(paise * count);
    place.textContent =
      side.get() === "buy"
        ? `Place order: cost ${total}, payout if right ${rupees(CONTRACT_PAISE * count)}`
        : `Place order: receive ${total} if it fills`;
  }
  price.input.addEventListener("input", update);
  quantity.input.addEventListener("input", update);
  update();

  ticket.addEventListener("submit", async (event) => {
    event.preventDefault();
    for (const element of [price.error, quantity.error, placeError]) element.textContent = "";
    placed.textContent = "";
    const paise = paiseOf(price.input.value);
    const count = Number(quantity.input.value);
    if (paise === null) {
      price.error.textContent = "Enter a price in rupees, like 6.50.";
      return;
    }
    if (!Number.isInteger(count) || count < 1) {
      quantity.error.textContent = "Enter a whole number of contracts.";
      return;
    }
    place.disabled = true;
    try {
      const order = await api("POST", "/orders", {
        market_id: marketId,
        outcome: outcome.get(),
        side: side.get(),
        type: "limit",
        price: paise,
        quantity: count,
      });
      placed.textContent = `Order ${order.status}: ${describeOrder(order)}.`;
      refreshMine();
    } catch (error) {
      const target = { invalid_price: price.error, validation_error: placeError }[error.code];
      say(target || placeError, error);
    } finally {
      place.disabled = false;
    }
  });

  // --- what is mine -----------------------------------------------------------------
  async function cancel(order, errorElement) {
    try {
      await api("DELETE", `/orders/${order.id}`);
      refreshMine();
    } catch (error) {
      say(errorElement, error);
    }
  }

  // One refresh at a time; a call during one runs another after it (it may have read
  // the state from before the change that called).
  let refreshing = false;
  let again = false;
  async function refreshMine() {
    if (refreshing) {
      again = true;
      return;
    }
    refreshing = true;
    try {
      do {
        again = false;
        await drawMine();
      } while (again);
    } finally {
      refreshing = false;
    }
  }

  async function drawMine() {
    try {
      const [open, held] = await Promise.all([
        api("GET", `/orders?status=open&market_id=${marketId}&limit=200`),
        api("GET", `/portfolio/${marketId}`),
      ]);
      replace(
        orders,
        open.items.length ? null : h("li", { class: "muted" }, "No open orders."),
        open.items.map((order) => {
          const error = h("p", { class: "error", role: "alert" });
          return h(
            "li",
            {},
            h("span", {}, describeOrder(order)),
            h("button", { type: "button", onclick: () => cancel(order, error) }, "Cancel"),
            error,
          );
        }),
      );
      replace(
        position,
        h(
          "dl",
          { class: "stats" },
          h("div", {}, h("dt", {}, "YES held"), " ", h("dd", {}, held.yes_quantity)),
          " ",
          h("div", {}, h("dt", {}, "NO held"), " ", h("dd", {}, held.no_quantity)),
          " ",
          h("div", {}, h("dt", {}, "Invested"), " ", h("dd", {}, rupees(held.invested))),
        ),
      );
    } catch (error) {
      say(pageError, error);
    }
  }

  // --- live market data -------------------------------------------------------------
  function addTrades(items) {
    for (const trade of items) {
      if (tradeIds.has(trade.id)) continue;
      tradeIds.add(trade.id);
      trades.prepend(
        h(
          "li",
          {},
          h("strong", {}, rupees(trade.price)),
          ` YES × ${trade.quantity}`,
          h("span", { class: "muted" }, ` ${time(trade.created_at)}`),
        ),
      );
      lastPrice.textContent = `Last price ${rupees(trade.price)}`;
    }
    if (items.length && chartTimer === null) {
      chartTimer = setTimeout(drawChart, CHART_REDRAW_DELAY_MS);
    }
    while (trades.children.length > TRADES_SHOWN) trades.lastElementChild.remove();
  }

  const leaveBook = feed.watchBook(
    marketId,
    (levels) => replace(book, bookTable("Buyers of YES", levels.yes), bookTable("Buyers of NO", levels.no)),
    addTrades,
  );
  const leaveMarket = feed.subscribe(`market:${marketId}`, (message) => {
    if (message.type === "market" && market) {
      market.status = message.status;
      about.textContent = `${market.category} · ${market.status}`;
    }
  });
  const leaveUser = feed.subscribe("user", (message) => {
    if (message.type === "order" || message.type === "fill") refreshMine();
  });

  async function drawChart() {
    chartTimer = null;
    try {
      const candles = await api("GET", `/markets/${marketId}/candles?interval=1m&limit=${CHART_CANDLES}`);
      if (candles.items.length) {
        replace(chart, priceChart(candles.items, "YES price by the minute, the last hour"));
      }
    } catch (error) {
      say(pageError, error);
    }
  }

  async function load() {
    try {
      market = await api("GET", `/markets/${marketId}`);
      heading.textContent = market.title;
      document.title = `${market.title} · Probo`;
      about.textContent = `${market.category} · ${market.status}`;
      const tick = market.tick / 100;
      Object.assign(price.input, { step: tick, min: tick, max: (CONTRACT_PAISE - market.tick) / 100 });
      if (market.last_price !== null) {
        lastPrice.textContent = `Last price ${rupees(market.last_price)}`;
      }
      const recent = await api("GET", `/markets/${marketId}/trades?limit=${TRADES_SHOWN}`);
      addTrades([...recent.items].reverse());
    } catch (error) {
      say(pageError, error);
    }
  }

  replace(
    view,
    heading,
    about,
    pageError,
    h(
      "div",
      { class: "market-grid" },
      h("section", { "aria-label": "Order book", class: "card" }, h("h2", {}, "Order book"), book),
      ticket,
      h("section", { "aria-label": "My orders", class: "card" }, h("h2", {}, "My orders"), orders),
      h("section", { "aria-label": "Position", class: "card" }, h("h2", {}, "Position"), position),
      h("section", { "aria-label": "Trades", class: "card" }, h("h2", {}, "Trades"), trades),
      h("section", { "aria-label": "Price chart", class: "card" }, h("h2", {}, "Price chart"), chart, lastPrice),
    ),
  );
  load();
  drawChart();
  refreshMine();
  return () => {
    leaveBook();
    leaveMarket();
    leaveUser();
    clearTimeout(chartTimer);
  };
}
