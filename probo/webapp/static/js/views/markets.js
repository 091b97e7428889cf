// Markets: search, category, and each market's live prices (the `ticker` channel).

import { api, say } from "../api.js";
import { h, replace } from "../dom.js";
import * as feed from "../feed.js";
import { rupees } from "../format.js";

const SEARCH_DELAY_MS = 200;

function prices(line) {
  return [
    h("span", {}, "Yes ", h("strong", {}, rupees(line.best_yes_bid))),
    h("span", {}, "No ", h("strong", {}, rupees(line.best_no_bid))),
    h("span", {}, "Last ", h("strong", {}, rupees(line.last_price))),
    h("span", {}, `Volume ${line.volume}`),
  ];
}

export function marketsView(view) {
  const search = h("input", {
    type: "search",
    id: "market-search",
    placeholder: "Search markets",
    "aria-label": "Search markets",
  });
  const category = h("select", { id: "market-category" }, h("option", { value: "" }, "All"));
  const error = h("p", { class: "error", role: "alert" });
  const list = h("ul", { class: "markets", "aria-label": "Markets" });
  const rows = new Map(); // market id → its prices element
  let timer = null;
  let asked = 0;

  async function load() {
    const query = new URLSearchParams();
    if (search.value.trim()) query.set("q", search.value.trim());
    if (category.value) query.set("category", category.value);
    const mine = ++asked;
    try {
      const page = await api("GET", `/markets?${query}`);
      if (mine !== asked) return; // an older answer arriving late
      error.textContent = "";
      rows.clear();
      replace(
        list,
        page.items.length ? null : h("li", { class: "muted" }, "No markets match."),
        page.items.map((market) => {
          const line = h("p", { class: "prices" }, prices(market));
          rows.set(market.id, line);
          return h(
            "li",
            { class: "card" },
            h("a", { href: `#/markets/${market.id}`, class: "title" }, market.title),
            h("p", { class: "muted" }, `${market.category} · ${market.status}`),
            line,
          );
        }),
      );
    } catch (failure) {
      say(error, failure);
    }
  }

  search.addEventListener("input", () => {
    clearTimeout(timer);
    timer = setTimeout(load, SEARCH_DELAY_MS);
  });
  category.addEventListener("change", load);
  api("GET", "/categories")
    .then((page) => {
      for (const item of page.items) {
        category.append(h("option", { value: item.category }, item.category));
      }
    })
    .catch(() => {});

  const leave = feed.subscribe("ticker", (message) => {
    if (message.type !== "ticker") return;
    const line = rows.get(message.market_id);
    if (line) replace(line, prices(message));
  });

  replace(
    view,
    h("h1", {}, "Markets"),
    h(
      "div",
      { class: "filters" },
      search,
      h("span", { class: "nowrap" }, h("label", { for: "market-category" }, "Category "), category),
    ),
    error,
    list,
  );
  load();
  return () => {
    clearTimeout(timer);
    leave();
  };
}
