// The portfolio: every position with cost, mark and P&L, and the totals.

import { api, say } from "../api.js";
import { h, replace } from "../dom.js";
import { rupees } from "../format.js";

function money(value) {
  return rupees(value === null ? null : Math.round(value));
}

export function portfolioView(view) {
  const body = h("div", { class: "table-wrap" }, h("p", { class: "muted" }, "Loading…"));
  const error = h("p", { class: "error", role: "alert" });
  replace(view, h("h1", {}, "Portfolio"), error, body);
  api("GET", "/portfolio")
    .then((portfolio) => {
      const headings = ["Market", "YES", "NO", "Invested", "Value", "Unrealised", "Realised"];
      const totals = portfolio.totals;
      replace(
        body,
        h(
          "table",
          { class: "portfolio" },
          h("caption", {}, "Positions"),
          h("thead", {}, h("tr", {}, headings.map((text) => h("th", { scope: "col" }, text)))),
          h(
            "tbody",
            {},
            portfolio.positions.length
              ? portfolio.positions.map((p) =>
                  h(
                    "tr",
                    {},
                    h("th", { scope: "row" }, h("a", { href: `#/markets/${p.market_id}` }, p.title)),
                    h("td", {}, p.yes_quantity),
                    h("td", {}, p.no_quantity),
                    h("td", {}, money(p.invested)),
                    h("td", {}, money(p.mark_value)),
                    h("td", {}, money(p.unrealized_pnl)),
                    h("td", {}, money(p.realized_pnl)),
                  ),
                )
              : h("tr", {}, h("td", { colspan: headings.length, class: "muted" }, "No positions yet.")),
          ),
          h(
            "tfoot",
            {},
            h(
              "tr",
              {},
              h("th", { scope: "row", colspan: 3 }, "Totals"),
              h("td", {}, money(totals.invested)),
              h("td", {}, money(totals.mark_value)),
              h("td", {}, money(totals.unrealized_pnl)),
              h("td", {}, money(totals.realized_pnl)),
            ),
          ),
        ),
      );
    })
    .catch((failure) => say(error, failure));
}
