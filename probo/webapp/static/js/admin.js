// The admin dashboard: the same modules as the trader app, for admins only. Who is
// logged in decides everything: a visitor sees the login form, a non-admin a short
// note, and no admin endpoint is asked before `/me` says `role: "admin"`.

import { api } from "./api.js";
import { kycView } from "./admin/kyc.js";
import { marketsAdminView } from "./admin/markets.js";
import { h, replace } from "./dom.js";
import { loginView } from "./views/login.js";

const view = document.getElementById("view");
const nav = document.getElementById("nav");
let me = null;

const routes = [
  [/^#\/kyc$/, () => kycView(view)],
  [/^#\/markets$/, () => marketsAdminView(view)],
];

function adminsOnly() {
  replace(
    view,
    h("h1", {}, "Admins only"),
    h("p", {}, "This dashboard is for Probo's admins."),
    h("p", {}, h("a", { href: "/" }, "Go to the trader app")),
  );
}

function render() {
  if (!me) {
    nav.hidden = true;
    loginView(view, loggedIn);
    return;
  }
  if (me.role !== "admin") {
    nav.hidden = false;
    for (const link of nav.querySelectorAll("a")) link.hidden = true;
    adminsOnly();
    return;
  }
  nav.hidden = false;
  for (const link of nav.querySelectorAll("a")) {
    link.hidden = false;
    if (location.hash.startsWith(link.getAttribute("href"))) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  for (const [pattern, show] of routes) {
    if (pattern.test(location.hash)) {
      show();
      return;
    }
  }
  location.replace("#/kyc");
}

async function loggedIn() {
  me = await api("GET", "/me");
  render();
}

async function logOut() {
  try {
    await api("POST", "/auth/logout");
  } finally {
    me = null;
    render();
  }
}

async function start() {
  try {
    me = await api("GET", "/me");
  } catch {
    me = null;
  }
  window.addEventListener("hashchange", render);
  document.getElementById("logout").addEventListener("click", logOut);
  if (!location.hash) location.replace("#/kyc");
  render();
}

replace(view);
start();
