// Small DOM helpers. Text always goes in as text (textContent), never as HTML, so nothing a
// model or a user wrote can run in the page.
import { catalogue, pickLanguage } from "./i18n.js";

export const lang = pickLanguage(navigator.languages);
document.documentElement.lang = lang;

export function t(key, vars = {}) {
  const text = catalogue[lang][key] ?? catalogue.en[key] ?? key;
  return text.replace(/\{(\w+)\}/g, (_, name) => String(vars[name] ?? ""));
}

export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else if (key === "text") node.textContent = value;
    else node.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

export function field(label, input) {
  const id = input.id || `f-${Math.random().toString(36).slice(2, 9)}`;
  input.id = id;
  return el("div", {}, el("label", { for: id, text: label }), input);
}

export function table(columns, rows) {
  return el(
    "table", {},
    el("thead", {}, el("tr", {}, columns.map((c) => el("th", { scope: "col", text: c })))),
    el("tbody", {}, rows.map((cells) => el("tr", {}, cells.map((c) => el("td", {}, c))))),
  );
}

export function when(seconds) {
  return seconds ? new Date(seconds * 1000).toLocaleString(lang) : "";
}

export function say(text, kind = "") {
  const status = document.getElementById("status");
  status.className = kind;
  status.textContent = text;
}

// Markdown, safely: the subset chat answers use (headings, lists, code blocks, bold, italics,
// inline code, http(s) links), built as DOM nodes.
export function markdown(text) {
  const root = el("div");
  const lines = text.split("\n");
  let list = null;
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i];
    if (line.startsWith("```")) {
      const code = [];
      for (i++; i < lines.length && !lines[i].startsWith("```"); i++) code.push(lines[i]);
      root.append(el("pre", {}, el("code", { text: code.join("\n") })));
      list = null;
      continue;
    }
    const heading = line.match(/^(#{1,4})\s+(.*)$/);
    const bullet = line.match(/^\s*(?:[-*]|\d+\.)\s+(.*)$/);
    if (heading) {
      root.append(el(`h${Math.min(6, heading[1].length + 2)}`, {}, inline(heading[2])));
      list = null;
    } else if (bullet) {
      if (!list) root.append((list = el(/^\s*\d/.test(line) ? "ol" : "ul")));
      list.append(el("li", {}, inline(bullet[1])));
    } else if (line.trim()) {
      root.append(el("p", {}, inline(line)));
      list = null;
    } else {
      list = null;
    }
  }
  return root;
}

function inline(text) {
  const out = [];
  const pattern = /(\*\*[^*]+\*\*|\*[^*]+\*|`[^`]+`|\[[^\]]+\]\((https?:\/\/[^)\s]+)\))/g;
  let last = 0;
  for (const match of text.matchAll(pattern)) {
    out.push(text.slice(last, match.index));
    const token = match[0];
    if (token.startsWith("**")) out.push(el("strong", { text: token.slice(2, -2) }));
    else if (token.startsWith("`")) out.push(el("code", { text: token.slice(1, -1) }));
    else if (token.startsWith("[")) {
      const label = token.slice(1, token.indexOf("]"));
      out.push(el("a", { href: match[2], rel: "noopener noreferrer", target: "_blank", text: label }));
    } else out.push(el("em", { text: token.slice(1, -1) }));
    last = match.index + token.length;
  }
  out.push(text.slice(last));
  return out;
}
