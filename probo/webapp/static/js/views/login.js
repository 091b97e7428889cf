// Log in with a one-time code sent by SMS: phone, then code.

import { api, say } from "../api.js";
import { field, h, replace } from "../dom.js";

export function loginView(view, loggedIn) {
  const phone = field("Phone number", "phone", {
    type: "tel",
    autocomplete: "tel",
    inputmode: "tel",
    required: true,
  });
  const code = field("Code", "otp", {
    type: "text",
    inputmode: "numeric",
    autocomplete: "one-time-code",
    maxlength: 6,
  });
  const status = h("p", { class: "muted", role: "status" });
  const codeForm = h(
    "form",
    { class: "card", hidden: true, novalidate: true },
    code.element,
    h("button", { type: "submit", class: "primary" }, "Log in"),
  );
  const phoneForm = h(
    "form",
    { class: "card", novalidate: true },
    phone.element,
    h("button", { type: "submit" }, "Send code"),
  );
  phoneForm.addEventListener("submit", async (event) => {
    event.preventDefault();
    phone.error.textContent = "";
    try {
      await api("POST", "/auth/otp", { phone: phone.input.value.trim() });
      codeForm.hidden = false;
      status.textContent = `We sent a 6-digit code to ${phone.input.value.trim()}.`;
      code.input.focus();
    } catch (error) {
      say(phone.error, error);
    }
  });
  codeForm.addEventListener("submit", async (event) => {
    event.preventDefault();
    code.error.textContent = "";
    try {
      await api("POST", "/auth/verify", {
        phone: phone.input.value.trim(),
        otp: code.input.value.trim(),
      });
      await loggedIn();
    } catch (error) {
      say(code.error, error);
    }
  });
  replace(view, h("h1", {}, "Log in"), phoneForm, status, codeForm);
}
