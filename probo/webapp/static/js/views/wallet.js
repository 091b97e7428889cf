// The wallet: balance, locked, available; deposit and withdraw; history.

import { api, idempotencyKey, say } from "../api.js";
import { field, h, replace } from "../dom.js";
import * as feed from "../feed.js";
import { dateTime, paiseOf, rupees } from "../format.js";

function stat(label, id) {
  const value = h("dd", { id }, "—");
  return { element: h("div", {}, h("dt", {}, label), " ", value), value };
}

function table(caption, headings, rows, empty) {
  return h(
    "div",
    { class: "table-wrap" },
    h(
      "table",
      {},
      h("caption", {}, caption),
      h("thead", {}, h("tr", {}, headings.map((text) => h("th", { scope: "col" }, text)))),
      h(
        "tbody",
        {},
        rows.length
          ? rows.map((cells) => h("tr", {}, cells.map((cell) => h("td", {}, cell))))
          : h("tr", {}, h("td", { colspan: headings.length, class: "muted" }, empty)),
      ),
    ),
  );
}

export function walletView(view) {
  const balance = stat("Balance", "wallet-balance");
  const locked = stat("Locked", "wallet-locked");
  const available = stat("Available", "wallet-available");
  const amount = field("Amount", "amount", { type: "text", inputmode: "decimal", autocomplete: "off" });
  const done = h("p", { role: "status", class: "muted" });
  const checkout = h("p", {});
  const history = h("div", {});
  const pageError = h("p", { class: "error", role: "alert" });

  async function refresh() {
    try {
      const [wallet, transactions, deposits, withdrawals] = await Promise.all([
        api("GET", "/wallet"),
        api("GET", "/wallet/transactions?limit=20"),
        api("GET", "/wallet/deposits?limit=10"),
        api("GET", "/wallet/withdrawals?limit=10"),
      ]);
      balance.value.textContent = rupees(wallet.balance);
      locked.value.textContent = rupees(wallet.locked);
      available.value.textContent = rupees(wallet.available);
      replace(
        history,
        table(
          "History",
          ["When", "What", "Amount"],
          transactions.items.map((item) => [dateTime(item.created_at), item.kind.replaceAll("_", " "), rupees(item.amount)]),
          "Nothing yet.",
        ),
        table(
          "Deposits",
          ["When", "Amount", "Status"],
          deposits.items.map((item) => [dateTime(item.created_at), rupees(item.amount), item.status]),
          "No deposits yet.",
        ),
        table(
          "Withdrawals",
          ["When", "Amount", "Fee", "Status"],
          withdrawals.items.map((item) => [dateTime(item.created_at), rupees(item.amount), rupees(item.fee), item.reason ? `${item.status}: ${item.reason}` : item.status]),
          "No withdrawals yet.",
        ),
      );
    } catch (error) {
      say(pageError, error);
    }
  }

  async function move(kind) {
    amount.error.textContent = "";
    done.textContent = "";
    replace(checkout);
    const paise = paiseOf(amount.input.value);
    if (paise === null) {
      amount.error.textContent = "Enter an amount in rupees, like 100 or 99.50.";
      return;
    }
    try {
      const path = kind === "deposit" ? "/wallet/deposits" : "/wallet/withdrawals";
      const result = await api("POST", path, { amount: paise, idempotency_key: idempotencyKey() });
      const noun = kind === "deposit" ? "Deposit" : "Withdrawal";
      done.textContent = `${noun} of ${rupees(result.amount)}: ${result.status}.`;
      if (result.checkout) {
        replace(
          checkout,
          `Complete the payment with Cashfree (order ${result.checkout.order_id}); `,
          "the deposit shows as completed once Cashfree confirms it.",
        );
      }
      amount.input.value = "";
      refresh();
    } catch (error) {
      say(amount.error, error);
    }
  }

  const form = h(
    "form",
    { class: "card", novalidate: true, "aria-label": "Deposit or withdraw" },
    amount.element,
    h(
      "div",
      { class: "actions" },
      h("button", { type: "submit", class: "primary" }, "Deposit"),
      h("button", { type: "button", onclick: () => move("withdraw") }, "Withdraw"),
    ),
    done,
    checkout,
  );
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    move("deposit");
  });

  const leave = feed.subscribe("user", (message) => {
    if (message.type === "balance") refresh();
  });
  replace(
    view,
    h("h1", {}, "Wallet"),
    pageError,
    h("dl", { class: "stats card" }, balance.element, " ", locked.element, " ", available.element),
    form,
    history,
  );
  refresh();
  return leave;
}
