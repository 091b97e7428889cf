// The trader app: who is logged in, the client-side routes, the navigation.

import { api } from "./api.js";
import { replace } from "./dom.js";
import * as feed from "./feed.js";
import { loginView } from "./views/login.js";
import { marketView } from "./views/market.js";
import { marketsView } from "./views/markets.js";
import { portfolioView } from "./views/portfolio.js";
import { walletView } from "./views/wallet.js";

const view = document.getElementById("view");
const nav = document.getElementById("nav");
let me = null;
let leaveView = null; // the current view's clean-up (its feed subscriptions)

const routes = [
  [/^#\/markets\/(\d+)$/, (match) => marketView(view, Number(match[1]))],
  [/^#\/portfolio$/, () => portfolioView(view)],
  [/^#\/wallet$/, () => walletView(view)],
  [/^#\/markets$/, () => marketsView(view)],
];

function render() {
  if (leaveView) leaveView();
  leaveView = null;
  if (!me) {
    nav.hidden = true;
    leaveView = loginView(view, loggedIn);
    return;
  }
  nav.hidden = false;
  for (const link of nav.querySelectorAll("a")) {
    const current = location.hash.startsWith(link.getAttribute("href"));
    if (current) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  for (const [pattern, show] of routes) {
    const match = pattern.exec(location.hash);
    if (match) {
      leaveView = show(match) || null;
      return;
    }
  }
  location.replace("#/markets");
}

async function loggedIn() {
  me = await api("GET", "/me");
  feed.restart(); // the socket now carries the session: the user channel opens
  render();
}

async function logOut() {
  try {
    await api("POST", "/auth/logout");
  } finally {
    me = null;
    feed.restart();
    render();
  }
}

async function start() {
  try {
    me = await api("GET", "/me");
  } catch {
    me = null;
  }
  feed.restart();
  window.addEventListener("hashchange", render);
  document.getElementById("logout").addEventListener("click", logOut);
  if (!location.hash) location.replace("#/markets");
  render();
}

replace(view);
start();
