// Markets: create one, and pause, resume, close or resolve (with a confirmation) each.

import { api, say } from "../api.js";
import { field, h, replace } from "../dom.js";
import { dateTime } from "../format.js";

const OUTCOMES = [
  ["yes", "Yes", "every YES contract pays ₹10.00"],
  ["no", "No", "every NO contract pays ₹10.00"],
  ["void", "Void", "every contract pays ₹5.00"],
];

// The lifecycle (SPEC §5): which admin actions each status allows.
const ACTIONS = {
  open: ["Pause", "Close", "Resolve"],
  paused: ["Resume", "Close", "Resolve"],
  closed: ["Resolve"],
  resolved: [],
};

function createForm(created) {
  const title = field("Title", "market-title", { type: "text", required: true, maxlength: 200 });
  const category = field("Category", "market-category", { type: "text", required: true });
  const closesAt = field("Closes at", "market-closes-at", { type: "datetime-local", required: true });
  const description = h("textarea", { id: "market-description", rows: 3 });
  const error = h("p", { class: "error", role: "alert", id: "create-market-error" });
  const form = h(
    "form",
    { class: "card", "aria-label": "Create market", novalidate: true },
    h("h2", {}, "New market"),
    title.element,
    category.element,
    closesAt.element,
    h(
      "div",
      { class: "field" },
      h("label", { for: "market-description" }, "Description"),
      description,
    ),
    h("button", { type: "submit", class: "primary", "aria-describedby": "create-market-error" }, "Create market"),
    error,
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    for (const each of [title, category, closesAt]) each.error.textContent = "";
    error.textContent = "";
    // A datetime-local value is the admin's local time; the API wants ISO 8601 with a zone.
    const closes = closesAt.input.value ? new Date(closesAt.input.value) : null;
    if (!closes || Number.isNaN(closes.getTime())) {
      closesAt.error.textContent = "Choose the date and time the market closes.";
      return;
    }
    try {
      const market = await api("POST", "/admin/markets", {
        title: title.input.value.trim(),
        category: category.input.value.trim(),
        description: description.value.trim(),
        closes_at: closes.toISOString(),
      });
      form.reset();
      error.textContent = "";
      created(market);
    } catch (failure) {
      say(error, failure);
    }
  });
  return form;
}

function marketItem(market, changed) {
  const error = h("p", { class: "error", role: "alert", id: `market-${market.id}-error` });
  const confirm = h("div", { class: "actions", hidden: true });
  const resolvable = ACTIONS[market.status].includes("Resolve");
  const outcomes = h(
    "div",
    { class: "actions", role: "group", "aria-label": "Outcome", hidden: true },
    OUTCOMES.map(([outcome, label, pays]) =>
      h("button", { type: "button", "aria-pressed": "false", onclick: (event) => choose(event, outcome, label, pays) }, label),
    ),
  );

  function choose(event, outcome, label, pays) {
    for (const button of outcomes.querySelectorAll("button")) button.setAttribute("aria-pressed", "false");
    event.currentTarget.setAttribute("aria-pressed", "true");
    replace(
      confirm,
      h("p", { class: "muted" }, `Resolve as ${label.toUpperCase()}: ${pays}. This cannot be undone.`),
      h("button", { type: "button", class: "primary", onclick: () => act("resolve", { outcome }) }, "Confirm"),
    );
    confirm.hidden = false;
  }

  async function act(path, body) {
    error.textContent = "";
    for (const button of section.querySelectorAll("button")) button.disabled = true;
    try {
      await api("POST", `/admin/markets/${market.id}/${path}`, body);
      changed();
    } catch (failure) {
      say(error, failure);
      for (const button of section.querySelectorAll("button")) button.disabled = false;
    }
  }

  const buttons = ACTIONS[market.status].map((action) =>
    h(
      "button",
      {
        type: "button",
        "aria-describedby": error.id,
        onclick: () => {
          if (action === "Resolve") {
            outcomes.hidden = false;
            return;
          }
          act(action.toLowerCase());
        },
      },
      action,
    ),
  );
  const headingId = `market-${market.id}-title`;
  const status = market.status === "resolved" ? `resolved ${market.outcome.toUpperCase()}` : market.status;
  const section = h(
    "section",
    { class: "card", "aria-labelledby": headingId },
    h("h3", { id: headingId, class: "title" }, market.title),
    h("p", { class: "muted" }, `${market.category} · ${status} · closes ${dateTime(market.closes_at)}`),
    buttons.length ? h("div", { class: "actions" }, buttons) : null,
    resolvable ? outcomes : null,
    resolvable ? confirm : null,
    error,
  );
  return h("li", {}, section);
}

export function marketsAdminView(view) {
  const error = h("p", { class: "error", role: "alert" });
  const list = h("ul", { class: "markets", "aria-label": "Markets" });

  async function load() {
    try {
      const page = await api("GET", "/markets?limit=200");
      error.textContent = "";
      replace(
        list,
        page.items.length ? null : h("li", { class: "muted" }, "No markets yet."),
        page.items.map((market) => marketItem(market, load)),
      );
    } catch (failure) {
      say(error, failure);
    }
  }

  replace(view, h("h1", {}, "Markets"), createForm(load), h("h2", {}, "All markets"), error, list);
  load();
}
