// The sections of the page. Each returns a node; all data comes from the box's own API.
import { api, session } from "./app.js";
import { el, field, markdown, say, t, table, when } from "./ui.js";

const isAdmin = () => session.me?.role === "admin";
const gib = (bytes) => (bytes ? `${(bytes / 2 ** 30).toFixed(2)} GiB` : "");

const offers = (feature) => Boolean(session.me?.features?.[feature]);

async function collectionList() {
  return offers("rag") ? (await api("GET", "/appliance/rag/collections")).collections : [];
}

function section(title, ...children) {
  return el("section", {}, el("h1", { text: title }), ...children);
}

async function overview() {
  const [record, health, hardware] = await Promise.all([
    api("GET", "/.well-known/appliance.json"),
    api("GET", "/appliance/health"),
    api("GET", "/appliance/hardware"),
  ]);
  const choice = hardware.choice || {};
  const speed = hardware.calibration?.measured_tps ?? choice.chat?.predicted_tps;
  const recent = hardware.recent_tokens_per_second || {};
  const loaded = (hardware.running || []).map((m) =>
    el("li", {}, `${m.name}: `, t("overview.slots", { busy: m.slots_busy, slots: m.slots, queued: m.queued }),
      recent[m.name] ? `, ${t("overview.recent")} ${recent[m.name]} tok/s` : ""),
  );
  return section(
    t("overview.title"),
    el(
      "div", { class: "grid" },
      el("div", { class: "card" }, el("h2", { text: t("overview.box") }), el("p", { text: record.name }),
        el("p", { class: "muted", text: `${t("overview.version")} ${record.version}` })),
      el("div", { class: "card" }, el("h2", { text: t("overview.address") }), el("p", { text: location.host }),
        el("p", { class: "muted", text: `${t("overview.mdns")}: ${record.name}._ai-appliance._tcp.local` })),
      el("div", { class: "card" }, el("h2", { text: t("overview.health") }),
        el("p", { class: health.status === "ok" ? "ok" : "error", text: health.status })),
      el("div", { class: "card" }, el("h2", { text: t("overview.profile") }), el("p", { text: hardware.profile.name }),
        speed ? el("p", { class: "muted", text: `${t("overview.speed")}: ${Number(speed).toFixed(1)} tok/s` }) : null),
    ),
    el("h2", { text: t("overview.choice") }),
    table([t("models.kind"), t("common.name")], [
      [t("overview.chat_model"), el("span", { id: "chat-model", text: record.default_models.chat ?? "" })],
      ["embed", record.default_models.embeddings ?? ""],
      ["transcribe", record.default_models.transcription ?? ""],
    ]),
    el("h2", { text: t("overview.reasons") }),
    el("ul", {}, (choice.reasons || []).map((r) => el("li", { text: r }))),
    el("h2", { text: t("overview.loaded") }),
    loaded.length ? el("ul", {}, loaded) : el("p", { class: "muted", text: t("overview.none") }),
  );
}

async function* sse(response) {
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += decoder.decode(value, { stream: true });
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const event = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      for (const line of event.split("\n")) {
        if (line.startsWith("data: ") && line !== "data: [DONE]") yield JSON.parse(line.slice(6));
      }
    }
  }
}

async function chat() {
  const models = (await api("GET", "/v1/models")).data.filter((m) => (m.capabilities || ["completion"]).includes("completion"));
  const collections = await collectionList();
  const conversations = (await api("GET", "/appliance/conversations?limit=30")).conversations;
  const record = await api("GET", "/.well-known/appliance.json");
  const state = { messages: [] };
  const picker = el("select", { name: "model" }, models.map((m) => el("option", { value: m.id, text: m.id })));
  const preferred = record.default_models.chat;
  if (preferred) picker.value = models.some((m) => m.id === preferred) ? preferred : picker.value;
  const source = el("select", { name: "collection" }, el("option", { value: "", text: t("chat.no_collection") }),
    collections.map((c) => el("option", { value: c.name, text: c.name })));
  const log = el("div", { class: "messages", "aria-live": "polite" });
  const box = el("textarea", { name: "message", rows: 3 });
  const audio = el("input", { type: "file", accept: "audio/*", name: "audio" });
  const show = (role, text) => {
    const bubble = el("div", { class: `bubble ${role}` });
    bubble.append(role === "assistant" ? markdown(text) : el("p", { text }));
    log.append(bubble);
    return bubble;
  };
  const open = async (id) => {
    const conversation = await api("GET", `/appliance/conversations/${encodeURIComponent(id)}`);
    state.messages = conversation.messages.map((m) => ({ role: m.role, content: m.content }));
    log.replaceChildren();
    for (const m of state.messages) show(m.role === "assistant" ? "assistant" : "user", m.content);
    if (models.some((m) => m.id === conversation.model)) picker.value = conversation.model;
  };
  audio.addEventListener("change", async () => {
    if (!audio.files.length) return;
    say(t("chat.transcribing"));
    const form = new FormData();
    form.append("file", audio.files[0]);
    form.append("model", "whisper-1");
    try {
      const result = await api("POST", "/v1/audio/transcriptions", form, { form: true });
      box.value = (box.value ? `${box.value} ` : "") + result.text.trim();
      say(t("common.saved"), "ok");
    } catch (error) {
      say(t("common.error", { message: error.message }), "error");
    }
  });
  const send = async (event) => {
    event.preventDefault();
    const text = box.value.trim();
    if (!text) return;
    box.value = "";
    state.messages.push({ role: "user", content: text });
    show("user", text);
    const bubble = show("assistant", t("chat.thinking"));
    const body = { model: picker.value, messages: state.messages, stream: true };
    if (source.value) body.rag = source.value;
    let answer = "";
    let citations = [];
    try {
      const response = await api("POST", "/v1/chat/completions", body, { stream: true });
      for await (const chunk of sse(response)) {
        if (chunk.error) throw new Error(chunk.error.message);
        if (chunk.citations) citations = chunk.citations;
        const delta = chunk.choices?.[0]?.delta?.content;
        if (delta) {
          answer += delta;
          bubble.replaceChildren(markdown(answer));
        }
      }
      state.messages.push({ role: "assistant", content: answer });
      if (citations.length) {
        bubble.append(el("p", { class: "muted", text: t("chat.sources") }), el("ol", {}, citations.map((c) => {
          const where = Object.entries(c.location || {}).map(([k, v]) => `${k} ${v}`).join(", ");
          return el("li", {}, el("a", { href: `file://${c.source}`, text: c.source }), where ? ` (${where})` : "");
        })));
      }
    } catch (error) {
      bubble.replaceChildren(el("p", { class: "error", text: t("common.error", { message: error.message }) }));
    }
  };
  const list = el("ul", { class: "conversations" }, conversations.map((c) =>
    el("li", {}, el("button", { type: "button", class: "secondary", onclick: () => open(c.id), text: c.title || c.id }))));
  return section(
    t("chat.title"),
    el("div", { class: "chat" },
      el("aside", {},
        el("button", { type: "button", onclick: () => { state.messages = []; log.replaceChildren(); }, text: t("chat.new") }),
        el("h2", { text: t("chat.conversations") }), list),
      el("div", {},
        field(t("chat.model"), picker),
        collections.length ? field(t("chat.collection"), source) : null,
        log,
        el("form", { onsubmit: send },
          field(t("chat.message"), box),
          el("button", { type: "submit", text: t("chat.send") })),
        offers("transcription") ? field(t("chat.audio"), audio) : null)),
  );
}

async function models() {
  const [data, hardware] = await Promise.all([api("GET", "/appliance/models"), api("GET", "/appliance/hardware")]);
  const served = Object.entries(data.served).flatMap(([kind, names]) => names.map((n) => [n, kind]));
  const progress = el("ul", { id: "model-tasks", "aria-live": "polite" });
  const showTasks = async () => {
    const { tasks } = await api("GET", "/appliance/models/tasks");
    progress.replaceChildren(...tasks.slice(0, 8).map((task) => el("li", { class: task.status === "failed" ? "error" : "" },
      `${task.kind} ${task.model}: ${task.status} (${task.done}/${task.total})${task.error ? ` ${task.error}` : ""}`)));
    if (tasks.some((task) => task.status === "running") && document.body.contains(progress)) setTimeout(showTasks, 1500);
  };
  const start = (method, path, body) => async () => {
    try {
      await api(method, path, body);
      say(t("common.saved"), "ok");
    } catch (error) {
      say(t("common.error", { message: error.message }), "error");
    }
    showTasks();
  };
  const button = (label, name, action, kind = "secondary") =>
    el("button", { type: "button", class: kind, "aria-label": `${label} ${name}`, onclick: action, text: label });
  const importId = el("select", { name: "import-id" }, data.catalog.map((m) => el("option", { value: m.id, text: m.id })));
  const importPath = el("input", { type: "text", name: "import-path", placeholder: "/media/stick/model.gguf" });
  const importForm = el("form", {
    onsubmit: (event) => {
      event.preventDefault();
      start("POST", "/appliance/models/fetch", { id: importId.value, source: importPath.value })();
    },
  }, el("h2", { text: t("models.import") }), field(t("common.name"), importId), field(t("models.import_path"), importPath),
  el("button", { type: "submit", text: t("models.import_button") }));
  showTasks();
  return section(
    t("models.title"),
    el("h2", { text: t("models.tasks") }),
    progress,
    el("button", { type: "button", onclick: start("POST", "/appliance/models/verify"), text: t("models.verify") }),
    el("h2", { text: t("models.served") }),
    table([t("common.name"), t("models.kind")], served),
    el("h2", { text: t("models.running") }),
    table([t("common.name"), "slots", "queue"], data.running.map((m) => [m.name, `${m.slots_busy}/${m.slots}`, m.queued])),
    el("h2", { text: t("models.wanted") }),
    el("ul", {}, hardware.missing.map((m) => el("li", {}, `${m.model}: `, el("code", { text: m.command || m.note }), " ",
      m.command ? button(t("models.fetch_button"), m.model, start("POST", "/appliance/models/fetch", { id: m.model })) : null))),
    el("h2", { text: t("models.stored") }),
    table([t("common.name"), t("models.size"), t("common.actions")], (data.stored || []).map((s) =>
      [`${s.id} ${s.quant ?? ""}`, gib(s.size),
        button(t("models.remove_button"), s.id, start("DELETE", `/appliance/models/${encodeURIComponent(s.id)}`), "danger")])),
    el("h2", { text: t("models.catalog") }),
    table([t("common.name"), t("models.kind"), t("models.fetch")], data.catalog.map((m) =>
      [m.id, m.kind, el("span", {}, el("code", { text: `appliance models fetch ${m.id}` }), " ",
        button(t("models.fetch_button"), m.id, start("POST", "/appliance/models/fetch", { id: m.id })))])),
    importForm,
  );
}

async function plugins() {
  const data = await api("GET", "/appliance/plugins");
  const toggle = (name, verb) => async () => {
    try {
      await api("POST", `/appliance/plugins/${encodeURIComponent(name)}/${verb}`);
      say(t("plugins.restart"), "ok");
    } catch (error) {
      say(t("common.error", { message: error.message }), "error");
    }
  };
  const wheel = el("input", { type: "file", accept: ".whl", name: "file" });
  const sha = el("input", { type: "text", name: "sha256", pattern: "[0-9a-fA-F]{64}", autocomplete: "off" });
  const install = async (event) => {
    event.preventDefault();
    const form = new FormData();
    form.append("sha256", sha.value.trim());
    form.append("file", wheel.files[0]);
    try {
      await api("POST", "/appliance/plugins", form, { form: true });
      say(t("plugins.restart"), "ok");
    } catch (error) {
      say(t("common.error", { message: error.message }), "error");
    }
  };
  return section(
    t("plugins.title"),
    table([t("common.name"), t("plugins.status"), t("common.actions")], data.plugins.map((p) => [
      `${p.name} ${p.version ?? ""}`,
      p.loaded ? el("span", { class: "ok", text: t("plugins.loaded") }) : el("span", { class: "error", text: `${t("plugins.failed")}: ${p.error ?? ""}` }),
      p.builtin ? "" : el("span", {},
        el("button", { type: "button", class: "secondary", onclick: toggle(p.name, "enable"), "aria-label": `${t("plugins.enable")} ${p.name}`, text: t("plugins.enable") }),
        el("button", { type: "button", class: "secondary", onclick: toggle(p.name, "disable"), "aria-label": `${t("plugins.disable")} ${p.name}`, text: t("plugins.disable") })),
    ])),
    el("form", { onsubmit: install }, field(t("plugins.wheel"), wheel), field(t("plugins.sha256"), sha),
      el("button", { type: "submit", text: t("plugins.install") })),
  );
}

async function tokens() {
  const data = await api("GET", "/appliance/tokens");
  const name = el("input", { type: "text", name: "name", required: true });
  const role = el("select", { name: "role" }, ["user", "admin", "metrics"].map((r) => el("option", { value: r, text: r })));
  const shown = el("div", { "aria-live": "polite" });
  const create = async (event) => {
    event.preventDefault();
    try {
      const made = await api("POST", "/appliance/tokens", { name: name.value, role: role.value });
      const secret = el("p", { class: "secret", id: "new-token", text: made.token });
      shown.replaceChildren(el("div", { class: "card" }, el("p", { text: t("tokens.once") }), secret,
        el("button", { type: "button", onclick: async () => { await navigator.clipboard.writeText(made.token); say(t("tokens.copied"), "ok"); }, text: t("tokens.copy") })));
      rows.replaceWith((rows = list((await api("GET", "/appliance/tokens")).tokens)));
    } catch (error) {
      say(t("common.error", { message: error.message }), "error");
    }
  };
  const list = (items) => table([t("common.name"), t("tokens.role"), t("tokens.created"), t("tokens.last_used"), t("common.actions")],
    items.map((row) => [row.name, row.role, when(row.created_at), when(row.last_used_at),
      el("button", { type: "button", class: "danger", "aria-label": `${t("tokens.revoke")} ${row.name}`, onclick: async () => {
        await api("DELETE", `/appliance/tokens/${encodeURIComponent(row.id)}`);
        rows.replaceWith((rows = list((await api("GET", "/appliance/tokens")).tokens)));
      }, text: t("tokens.revoke") })]));
  let rows = list(data.tokens);
  return section(
    t("tokens.title"),
    el("form", { onsubmit: create }, field(t("tokens.name"), name), field(t("tokens.role"), role),
      el("button", { type: "submit", text: t("tokens.create") })),
    shown,
    rows,
  );
}

async function collections() {
  const data = { collections: await collectionList() };
  const name = el("input", { type: "text", name: "name", required: true, pattern: "[a-z0-9][a-z0-9_-]*" });
  const folder = el("input", { type: "text", name: "folder", required: true, placeholder: "/srv/share/handbook" });
  const add = async (event) => {
    event.preventDefault();
    try {
      await api("POST", "/appliance/rag/collections", { name: name.value, paths: [folder.value] });
      location.hash = "#/collections?added";
      say(t("common.saved"), "ok");
    } catch (error) {
      say(t("common.error", { message: error.message }), "error");
    }
  };
  const rows = data.collections.map((c) => [
    c.name, c.roots.join(", "), String(c.files), String(c.chunks),
    `${c.status} ${c.progress?.files_done ?? ""}${c.progress?.files_total ? `/${c.progress.files_total}` : ""}`,
    isAdmin() ? el("button", { type: "button", class: "secondary", "aria-label": `${t("collections.reindex")} ${c.name}`, onclick: async () => {
      await api("POST", `/appliance/rag/collections/${encodeURIComponent(c.name)}/reindex`);
      say(t("common.saved"), "ok");
    }, text: t("collections.reindex") }) : "",
  ]);
  return section(
    t("collections.title"),
    rows.length ? table([t("collections.name"), t("collections.folder"), t("collections.files"), t("collections.chunks"), t("collections.progress"), t("common.actions")], rows)
      : el("p", { class: "muted", text: t("collections.none") }),
    isAdmin() && offers("rag") ? el("form", { onsubmit: add }, field(t("collections.name"), name), field(t("collections.folder"), folder),
      el("button", { type: "submit", text: t("collections.add") })) : null,
  );
}

async function history() {
  const query = el("input", { type: "search", name: "q" });
  const results = el("div");
  const detail = el("div", { "aria-live": "polite" });
  const load = async () => {
    const path = `/appliance/conversations?limit=100${query.value ? `&q=${encodeURIComponent(query.value)}` : ""}`;
    const found = (await api("GET", path)).conversations;
    results.replaceChildren(found.length ? table([t("common.name"), t("chat.model"), t("audit.when"), t("common.actions")],
      found.map((c) => [c.title || c.id, c.model, when(c.updated_at), el("span", {},
        el("button", { type: "button", class: "secondary", "aria-label": `${t("history.open")} ${c.title}`, onclick: () => openOne(c.id), text: t("history.open") }),
        el("button", { type: "button", class: "secondary", "aria-label": `${t("history.export")} ${c.title}`, onclick: () => exportOne(c.id), text: t("history.export") }),
        el("button", { type: "button", class: "danger", "aria-label": `${t("history.delete")} ${c.title}`, onclick: async () => {
          await api("DELETE", `/appliance/conversations/${encodeURIComponent(c.id)}`);
          await load();
        }, text: t("history.delete") }))]))
      : el("p", { class: "muted", text: t("history.none") }));
  };
  const openOne = async (id) => {
    const c = await api("GET", `/appliance/conversations/${encodeURIComponent(id)}`);
    detail.replaceChildren(el("h2", { text: c.title || c.id }), el("div", { class: "messages" },
      c.messages.map((m) => el("div", { class: `bubble ${m.role === "assistant" ? "assistant" : "user"}` },
        m.role === "assistant" ? markdown(m.content) : el("p", { text: m.content })))));
  };
  const exportOne = async (id) => {
    const c = await api("GET", `/appliance/conversations/${encodeURIComponent(id)}`);
    const link = el("a", { href: URL.createObjectURL(new Blob([JSON.stringify(c, null, 2)], { type: "application/json" })), download: `${id}.json` });
    document.body.append(link);
    link.click();
    link.remove();
  };
  await load();
  return section(
    t("history.title"),
    el("form", { role: "search", onsubmit: async (event) => { event.preventDefault(); await load(); } },
      field(t("history.search"), query), el("button", { type: "submit", text: t("history.find") })),
    results,
    detail,
  );
}

async function audit() {
  const who = el("input", { type: "text", name: "actor" });
  const what = el("input", { type: "text", name: "action" });
  const since = el("input", { type: "date", name: "since" });
  const results = el("div");
  const load = async () => {
    const params = new URLSearchParams({ limit: "200" });
    if (who.value) params.set("actor", who.value);
    if (what.value) params.set("action", what.value);
    if (since.value) params.set("since", String(new Date(since.value).getTime() / 1000));
    const rows = (await api("GET", `/appliance/audit?${params}`)).audit;
    results.replaceChildren(table([t("audit.when"), t("audit.who"), t("audit.what"), t("audit.address"), t("audit.status")],
      rows.map((r) => [when(r.at), `${r.actor} (${r.role})`, `${r.action} ${r.resource}`, r.address, String(r.status ?? "")])));
  };
  await load();
  return section(
    t("audit.title"),
    el("form", { onsubmit: async (event) => { event.preventDefault(); await load(); } },
      field(t("audit.who"), who), field(t("audit.what"), what), field(t("audit.since"), since),
      el("button", { type: "submit", text: t("audit.filter") })),
    results,
  );
}

export const pages = { overview, chat, models, plugins, tokens, collections, history, audit };
