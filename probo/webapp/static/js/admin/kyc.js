// The KYC queue: pending requests, each approved or rejected (with a reason) in place.

import { api, say } from "../api.js";
import { h, replace } from "../dom.js";
import { dateTime } from "../format.js";

const COLUMNS = ["Name", "Phone", "PAN", "Bank account", "IFSC", "Submitted", "Decision"];

function row(request, rows) {
  const error = h("p", { class: "error", role: "alert", id: `kyc-${request.id}-error` });
  const reason = h("input", {
    type: "text",
    id: `kyc-${request.id}-reason`,
    maxlength: 500,
    "aria-describedby": `kyc-${request.id}-error`,
  });
  const rejectForm = h(
    "form",
    { class: "reason", hidden: true, novalidate: true },
    h("label", { for: `kyc-${request.id}-reason` }, "Reason"),
    reason,
    h("button", { type: "submit" }, "Confirm"),
  );
  const element = h(
    "tr",
    {},
    h("td", {}, request.name),
    h("td", { class: "nowrap" }, request.phone),
    h("td", {}, request.pan),
    h("td", {}, request.bank_account),
    h("td", {}, request.ifsc),
    h("td", {}, dateTime(request.created_at)),
    h(
      "td",
      {},
      h(
        "div",
        { class: "actions" },
        h("button", { type: "button", onclick: () => decide("VERIFIED", null) }, "Approve"),
        h(
          "button",
          {
            type: "button",
            onclick: () => {
              rejectForm.hidden = false;
              reason.focus();
            },
          },
          "Reject",
        ),
      ),
      rejectForm,
      error,
    ),
  );

  async function decide(decision, why) {
    error.textContent = "";
    for (const button of element.querySelectorAll("button")) button.disabled = true;
    try {
      await api("POST", `/admin/kyc/${request.id}/decision`, { decision, reason: why });
      element.remove();
      if (!rows.querySelector("tr")) rows.append(empty());
    } catch (failure) {
      say(error, failure);
      for (const button of element.querySelectorAll("button")) button.disabled = false;
    }
  }

  rejectForm.addEventListener("submit", (event) => {
    event.preventDefault();
    const why = reason.value.trim();
    if (!why) {
      error.textContent = "Say why the request is rejected.";
      reason.focus();
      return;
    }
    decide("REJECTED", why);
  });
  return element;
}

function empty() {
  return h("tr", { class: "empty" }, h("td", { colspan: COLUMNS.length }, "No pending requests."));
}

export function kycView(view) {
  const error = h("p", { class: "error", role: "alert" });
  const rows = h("tbody");
  const table = h(
    "table",
    { "aria-label": "KYC requests" },
    h("thead", {}, h("tr", {}, COLUMNS.map((name) => h("th", { scope: "col" }, name)))),
    rows,
  );
  replace(
    view,
    h("h1", {}, "KYC requests"),
    h("p", { class: "muted" }, "Pending requests, newest first."),
    error,
    h("div", { class: "table-wrap" }, table),
  );
  api("GET", "/admin/kyc?status=PENDING&limit=200")
    .then((page) => {
      replace(rows, page.items.length ? page.items.map((item) => row(item, rows)) : empty());
    })
    .catch((failure) => say(error, failure));
}
