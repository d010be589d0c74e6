// The page: sign in with a token, then the sections a role may see. Every call goes to this box.
import { el, field, say, t } from "./ui.js";
import { pages } from "./pages.js";

const USER_PAGES = ["overview", "chat", "collections", "history"];
const ADMIN_PAGES = ["overview", "chat", "models", "plugins", "tokens", "collections", "history", "audit"];
export const session = { me: null };

export async function api(method, path, body, { form = false, stream = false } = {}) {
  const headers = {};
  if (method !== "GET" && session.me) headers["X-CSRF-Token"] = session.me.csrf;
  let payload;
  if (form) payload = body;
  else if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    payload = JSON.stringify(body);
  }
  const response = await fetch(path, { method, headers, body: payload, credentials: "same-origin" });
  if (!response.ok) {
    let message = `${response.status}`;
    try {
      const data = await response.json();
      message = typeof data.error === "string" ? data.error : data.error?.message ?? message;
    } catch { /* not JSON */ }
    const error = new Error(message);
    error.status = response.status;
    throw error;
  }
  if (stream) return response;
  const type = response.headers.get("Content-Type") || "";
  return type.includes("json") ? response.json() : response.text();
}

function allowed() {
  return session.me?.role === "admin" ? ADMIN_PAGES : USER_PAGES;
}

function renderNav(current) {
  const nav = document.getElementById("nav");
  nav.setAttribute("aria-label", t("nav.label"));
  nav.replaceChildren(
    ...allowed().map((name) =>
      el("a", { href: `#/${name}`, "aria-current": name === current ? "page" : null, text: t(`nav.${name}`) }),
    ),
  );
  const out = document.getElementById("sign-out");
  out.hidden = false;
  out.textContent = t("signout");
}

function renderSignIn(message = "") {
  document.getElementById("nav").replaceChildren();
  document.getElementById("sign-out").hidden = true;
  const token = el("input", { type: "password", autocomplete: "off", required: true, name: "token" });
  const form = el(
    "form", {
      onsubmit: async (event) => {
        event.preventDefault();
        try {
          session.me = await api("POST", "/ui/session", { token: token.value });
          say("");
          route();
        } catch (error) {
          say(t("common.error", { message: error.message }), "error");
        }
      },
    },
    el("h1", { text: t("signin.title") }),
    el("p", { class: "muted", text: t("signin.help") }),
    field(t("signin.token"), token),
    el("button", { type: "submit", text: t("signin.button") }),
  );
  document.getElementById("main").replaceChildren(form);
  if (message) say(message);
  token.focus();
}

async function route() {
  if (!session.me) return renderSignIn();
  const wanted = location.hash.replace(/^#\//, "").split("?")[0] || "overview";
  const name = allowed().includes(wanted) ? wanted : "overview";
  renderNav(name);
  const main = document.getElementById("main");
  main.replaceChildren(el("p", { class: "muted", text: t("common.loading") }));
  try {
    main.replaceChildren(await pages[name]());
  } catch (error) {
    if (error.status === 401) {
      session.me = null;
      return renderSignIn();
    }
    main.replaceChildren(el("p", { class: "error", text: t("common.error", { message: error.message }) }));
  }
}

async function start() {
  document.getElementById("skip").textContent = t("skip");
  document.getElementById("sign-out").addEventListener("click", async () => {
    try {
      await api("DELETE", "/ui/session");
    } finally {
      session.me = null;
      renderSignIn(t("signedout"));
    }
  });
  window.addEventListener("hashchange", route);
  const me = await api("GET", "/ui/session");
  session.me = me.signed_in ? me : null;
  route();
}

start();
