// Served by `anelm serve` (WebPageEndpoints.swift); edit here: this is the file, not a copy of one.
extension WebPage {
    /// `/app.js`: the page's script (chat, documents, feedback). Model output reaches the page only as text nodes.
    static let script = #"""
// The page at / of anelm serve: a window onto the API (chat, documents, feedback). Model output and document text are
// untrusted: every piece of it reaches the page through textContent, never as HTML.
"use strict";

const $ = (id) => document.getElementById(id);
const el = (tag, className, text) => {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
};

// MARK: - The API: key, errors, JSON

const keyStorage = "anelm.apiKey";
let keyWaiters = [];

class APIFailure extends Error {
  constructor(message, status) { super(message); this.status = status; }
}

function headers(json) {
  const h = {};
  if (json) h["Content-Type"] = "application/json";
  const key = sessionStorage.getItem(keyStorage);
  if (key) h["Authorization"] = "Bearer " + key;
  return h;
}

function showNotice(text) {
  const notice = $("notice");
  notice.textContent = text;
  notice.hidden = !text;
}

// Asks for the key once (a form in the page), then the request is tried again.
function askForKey() {
  $("key-form").hidden = false;
  $("key-input").focus();
  return new Promise((resolve) => keyWaiters.push(resolve));
}

async function api(path, options = {}) {
  let response;
  try {
    response = await fetch(path, { ...options, headers: { ...headers(options.body !== undefined), ...(options.headers || {}) } });
  } catch (error) {
    if (error.name === "AbortError") throw error;
    const text = "The server is unreachable: is anelm serve still running at " + location.host + "?";
    showNotice(text);
    throw new APIFailure(text, 0);
  }
  if (response.status === 401) {
    sessionStorage.removeItem(keyStorage);
    await askForKey();
    return api(path, options);
  }
  if (response.ok) {
    showNotice("");
    return response;
  }
  let message = response.status + " " + response.statusText;
  try {
    const body = await response.json();
    if (body && body.error && body.error.message) message = body.error.message;
  } catch (_) { /* not JSON */ }
  if (response.status === 503) {
    message = "The server is busy (503): " + message + ". Try again in a moment.";
    showNotice(message);
  }
  throw new APIFailure(message, response.status);
}

async function getJSON(path, options) { return (await api(path, options)).json(); }

// MARK: - Markdown, safely: blocks and inline spans built as DOM nodes with textContent only

function renderInline(text, parent, citations) {
  // `code`, **bold**, *emphasis*, and [n] citations; everything else is plain text.
  const pattern = /(`[^`\n]+`)|(\*\*[^*\n]+\*\*)|(\*[^*\n]+\*)|(\[(\d{1,2})\])/g;
  let last = 0;
  let match;
  while ((match = pattern.exec(text)) !== null) {
    if (match.index > last) parent.append(document.createTextNode(text.slice(last, match.index)));
    if (match[1]) parent.append(el("code", "", match[1].slice(1, -1)));
    else if (match[2]) parent.append(el("strong", "", match[2].slice(2, -2)));
    else if (match[3]) parent.append(el("em", "", match[3].slice(1, -1)));
    else {
      const n = Number(match[5]);
      if (citations && citations(n)) {
        const button = el("button", "citation", "[" + n + "]");
        button.type = "button";
        button.title = "Show passage " + n;
        button.addEventListener("click", () => citations(n).focus());
        parent.append(button);
      } else {
        parent.append(document.createTextNode(match[0]));
      }
    }
    last = pattern.lastIndex;
  }
  if (last < text.length) parent.append(document.createTextNode(text.slice(last)));
}

// Returns a fragment for `source` (Markdown from the model); `citations(n)` gives the element a citation [n] points at.
function renderMarkdown(source, citations) {
  const fragment = document.createDocumentFragment();
  const lines = String(source).split("\n");
  let i = 0;
  while (i < lines.length) {
    const line = lines[i];
    const fence = line.match(/^\s*```\s*([\w+-]*)/);
    if (fence) {
      const code = [];
      i += 1;
      while (i < lines.length && !/^\s*```/.test(lines[i])) code.push(lines[i++]);
      i += 1; // the closing fence (or the end of a reply still streaming)
      const pre = el("pre");
      const codeNode = el("code", "", code.join("\n"));
      if (fence[1]) codeNode.dataset.language = fence[1];
      pre.append(codeNode);
      fragment.append(pre);
      continue;
    }
    const heading = line.match(/^(#{1,6})\s+(.*)$/);
    if (heading) {
      const h = el("h" + Math.min(6, heading[1].length + 2));
      renderInline(heading[2], h, citations);
      fragment.append(h);
      i += 1;
      continue;
    }
    const bullet = /^\s*([-*+]|\d{1,3}[.)])\s+/;
    if (bullet.test(line)) {
      const ordered = /^\s*\d/.test(line);
      const list = el(ordered ? "ol" : "ul");
      while (i < lines.length && bullet.test(lines[i])) {
        const item = el("li");
        renderInline(lines[i].replace(bullet, ""), item, citations);
        list.append(item);
        i += 1;
      }
      fragment.append(list);
      continue;
    }
    if (line.trim() === "") { i += 1; continue; }
    const paragraph = [];
    while (i < lines.length && lines[i].trim() !== "" && !/^\s*```/.test(lines[i]) && !/^#{1,6}\s/.test(lines[i]) && !bullet.test(lines[i])) {
      paragraph.push(lines[i++]);
    }
    const p = el("p");
    paragraph.forEach((text, k) => {
      if (k > 0) p.append(el("br"));
      renderInline(text, p, citations);
    });
    fragment.append(p);
  }
  return fragment;
}

// MARK: - Conversations, kept in localStorage

const conversationsKey = "anelm.conversations";
let conversations = [];
let current = null;
let streaming = null; // {controller, stopped}

function loadConversations() {
  try { conversations = JSON.parse(localStorage.getItem(conversationsKey) || "[]"); } catch (_) { conversations = []; }
  if (!Array.isArray(conversations)) conversations = [];
  current = conversations.find((c) => c.id === localStorage.getItem("anelm.current")) || conversations[0] || newConversation();
}

function saveConversations() {
  try {
    localStorage.setItem(conversationsKey, JSON.stringify(conversations));
    localStorage.setItem("anelm.current", current.id);
  } catch (_) { showNotice("The browser's storage is full: this conversation is not kept."); }
}

function newConversation() {
  const conversation = { id: String(Date.now()) + Math.random().toString(36).slice(2, 6), title: "New conversation", messages: [] };
  conversations.unshift(conversation);
  current = conversation;
  return conversation;
}

function renderConversationList() {
  const list = $("conversation-list");
  list.replaceChildren();
  for (const conversation of conversations) {
    const item = el("li");
    const open = el("button", conversation === current ? "active" : "", conversation.title);
    open.type = "button";
    open.addEventListener("click", () => { if (!streaming) { current = conversation; saveConversations(); renderAll(); } });
    const remove = el("button", "", "✕");
    remove.type = "button";
    remove.title = "Delete conversation “" + conversation.title + "”";
    remove.setAttribute("aria-label", remove.title);
    remove.addEventListener("click", () => {
      if (streaming) return;
      conversations = conversations.filter((c) => c !== conversation);
      if (current === conversation) current = conversations[0] || newConversation();
      saveConversations();
      renderAll();
    });
    item.append(open, remove);
    list.append(item);
  }
}

function renderAll() {
  renderConversationList();
  const list = $("messages");
  list.replaceChildren();
  current.messages.forEach((message, index) => list.append(messageNode(message, index)));
  list.scrollTop = list.scrollHeight;
}

function statsText(stats) {
  if (!stats) return "";
  const parts = [];
  if (stats.prompt !== undefined) parts.push("prompt " + stats.prompt + " tokens (" + (stats.cached || 0) + " cached)");
  if (stats.generated !== undefined) parts.push("generated " + stats.generated);
  if (stats.tokensPerSecond) parts.push(stats.tokensPerSecond.toFixed(1) + " tokens/s");
  if (stats.firstTokenSeconds !== undefined) parts.push("first token after " + stats.firstTokenSeconds.toFixed(2) + " s");
  if (stats.finish) parts.push(stats.finish === "abort" || stats.finish === "stopped" ? "stopped" : "finish: " + stats.finish);
  return parts.join(" · ");
}

function messageNode(message, index) {
  const item = el("li", "message " + message.role);
  item.dataset.index = String(index);
  item.append(el("div", "role", message.role === "user" ? "You" : message.role === "assistant" ? "Assistant" : message.role));
  const body = el("div", "body");
  const passages = message.grounding ? passagesNode(message) : null;
  const citation = (n) => (passages ? passages.querySelector('[data-citation="' + n + '"]') : null);
  if (message.role === "assistant") body.append(renderMarkdown(message.content, citation));
  else body.textContent = message.content;
  item.append(body);
  if (message.error) item.append(el("div", "error-text", message.error));
  if (message.stats) item.append(el("div", "stats", statsText(message.stats)));
  if (passages) item.append(passages);
  const isLast = index === current.messages.length - 1;
  const actions = el("div", "actions");
  if (message.role === "assistant" && message.grounding && message.grounding.answer_id != null) {
    actions.append(rateButton(message, true), rateButton(message, false));
  }
  if (isLast && !streaming && message.role === "assistant") {
    const regenerate = el("button", "regenerate", "Regenerate");
    regenerate.type = "button";
    regenerate.addEventListener("click", () => { current.messages.pop(); saveConversations(); renderAll(); reply(); });
    actions.append(regenerate);
  }
  const lastUser = current.messages.map((m) => m.role).lastIndexOf("user");
  if (index === lastUser && !streaming) {
    const edit = el("button", "edit", "Edit");
    edit.type = "button";
    edit.addEventListener("click", () => {
      $("prompt").value = message.content;
      current.messages.splice(index);
      saveConversations();
      renderAll();
      $("prompt").focus();
    });
    actions.append(edit);
  }
  if (actions.childElementCount) item.append(actions);
  return item;
}

// MARK: - Feedback on grounded answers

function rateButton(message, good) {
  const button = el("button", "rate" + (message.rating === good ? " marked" : ""), good ? "Good answer" : "Bad answer");
  button.type = "button";
  button.title = good ? "Its passages were useful" : "Its passages were not useful";
  button.addEventListener("click", async () => {
    const g = message.grounding;
    // The passages the answer cites (or, citing none, those the analyzer found used; else all of them).
    const cited = g.passages.filter((p) => message.content.includes("[" + p.citation + "]")).map((p) => p.id);
    const ids = cited.length ? cited : g.used_chunks && g.used_chunks.length ? g.used_chunks : g.chunks;
    if (await sendFeedback(g.answer_id, ids.map((id) => ({ id, useful: good })))) {
      message.rating = good;
      ids.forEach((id) => { g.marks = g.marks || {}; g.marks[id] = good; });
      saveConversations();
      renderAll();
    }
  });
  return button;
}

async function sendFeedback(answerID, chunks) {
  try {
    await api("/v1/feedback", { method: "POST", body: JSON.stringify({ answer_id: answerID, chunks }) });
    return true;
  } catch (error) {
    showNotice("Feedback not recorded: " + error.message);
    return false;
  }
}

function passagesNode(message) {
  const g = message.grounding;
  const list = el("ol", "passages");
  list.setAttribute("aria-label", "Cited passages");
  for (const passage of g.passages || []) {
    const item = el("li");
    item.value = passage.citation;
    item.dataset.citation = String(passage.citation);
    item.tabIndex = -1;
    // Uploads are named as they were uploaded (the part after the store's uploads folder).
    const source = passage.source.includes(".uploads/") ? passage.source.slice(passage.source.indexOf(".uploads/") + 9) : passage.source;
    item.append(el("div", "source", source + (passage.heading ? " › " + passage.heading : "")));
    item.append(el("blockquote", "", passage.text));
    if (g.answer_id != null) {
      const mark = (g.marks || {})[passage.id];
      const row = el("div", "actions");
      for (const [useful, label] of [[true, "Used"], [false, "Not relevant"]]) {
        const button = el("button", "mark" + (mark === useful ? " marked" : ""), label);
        button.type = "button";
        button.setAttribute("aria-label", label + ": passage " + passage.citation);
        button.addEventListener("click", async () => {
          if (await sendFeedback(g.answer_id, [{ id: passage.id, useful }])) {
            g.marks = g.marks || {};
            g.marks[passage.id] = useful;
            saveConversations();
            renderAll();
          }
        });
        row.append(button);
      }
      item.append(row);
    }
    list.append(item);
  }
  return list;
}

// MARK: - Chat

function requestBody(grounded) {
  const messages = [];
  const system = $("system-prompt").value.trim();
  if (system) messages.push({ role: "system", content: system });
  for (const m of current.messages) if (m.role === "user" || (m.role === "assistant" && !m.error)) messages.push({ role: m.role, content: m.content });
  const body = { messages, temperature: Number($("temperature").value), top_p: Number($("top-p").value) };
  const maxTokens = Number($("max-tokens").value);
  if (maxTokens > 0) body.max_tokens = Math.floor(maxTokens);
  if ($("model").value) body.model = $("model").value;
  body.stream = true;
  body.stream_options = { include_usage: true };
  if (grounded) body.context = {};
  return body;
}

function setStreaming(value) {
  streaming = value;
  $("send").hidden = !!value;
  $("stop").hidden = !value;
}

// Streams the assistant's reply to the conversation; with documents, the grounded answer's passages come after its last token.
async function reply() {
  const grounded = $("use-documents").checked;
  const body = JSON.stringify(requestBody(grounded)); // before the reply's own (empty) message joins the conversation
  const message = { role: "assistant", content: "", stats: null };
  current.messages.push(message);
  const controller = new AbortController();
  setStreaming({ controller, stopped: false });
  renderAll();
  const node = () => $("messages").querySelector('[data-index="' + (current.messages.length - 1) + '"]');
  const started = performance.now();
  let firstToken = null;
  let deltas = 0;
  let pending = false;
  const redraw = () => {
    if (pending) return;
    pending = true;
    requestAnimationFrame(() => {
      pending = false;
      const target = node();
      if (target) {
        target.dataset.deltas = String(deltas);
        target.querySelector(".body").replaceChildren(renderMarkdown(message.content));
        $("messages").scrollTop = $("messages").scrollHeight;
      }
    });
  };
  try {
    const response = await api("/v1/chat/completions", { method: "POST", body, signal: controller.signal });
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    let buffer = "";
    let usage = null;
    let finish = null;
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += decoder.decode(value, { stream: true });
      let end;
      while ((end = buffer.indexOf("\n\n")) >= 0) {
        const event = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        for (const line of event.split("\n")) {
          if (!line.startsWith("data: ")) continue;
          const data = line.slice(6);
          if (data === "[DONE]") continue;
          const chunk = JSON.parse(data);
          if (chunk.error) throw new APIFailure(chunk.error.message, 500);
          if (chunk.usage) usage = chunk.usage;
          if (chunk.context) message.grounding = chunk.context; // after the last token: the passages cited and the answer's log id
          const choice = (chunk.choices || [])[0];
          if (choice && choice.delta && choice.delta.content) {
            if (firstToken === null) firstToken = performance.now();
            message.content += choice.delta.content;
            deltas += 1;
            redraw();
          }
          if (choice && choice.finish_reason) finish = choice.finish_reason;
        }
      }
    }
    const decodeSeconds = firstToken === null ? 0 : (performance.now() - firstToken) / 1000;
    message.stats = usageStats(usage, decodeSeconds, firstToken === null ? undefined : (firstToken - started) / 1000, finish);
  } catch (error) {
    if (error.name === "AbortError") {
      message.stats = { ...(message.stats || {}), finish: "stopped" };
    } else {
      message.error = error.message;
    }
  } finally {
    setStreaming(null);
    if (current.messages.length > 0 && current.title === "New conversation") {
      const first = current.messages.find((m) => m.role === "user");
      if (first) current.title = first.content.slice(0, 40);
    }
    saveConversations();
    renderAll();
    const last = node();
    if (last) last.dataset.deltas = String(deltas);
  }
}

function usageStats(usage, seconds, firstTokenSeconds, finish) {
  const stats = { finish: finish || undefined, firstTokenSeconds };
  if (usage) {
    stats.prompt = usage.prompt_tokens;
    stats.cached = (usage.prompt_tokens_details && usage.prompt_tokens_details.cached_tokens) || 0;
    stats.generated = usage.completion_tokens;
    if (seconds > 0 && usage.completion_tokens > 1) stats.tokensPerSecond = (usage.completion_tokens - (firstTokenSeconds === undefined ? 0 : 1)) / seconds;
  }
  return stats;
}

function send() {
  if (streaming) return;
  const text = $("prompt").value;
  if (!text.trim()) return;
  $("prompt").value = "";
  current.messages.push({ role: "user", content: text });
  saveConversations();
  reply();
}

function stop() {
  if (!streaming) return;
  streaming.stopped = true;
  streaming.controller.abort();
}

async function loadModels() {
  try {
    const body = await getJSON("/v1/models");
    const select = $("model");
    const chosen = localStorage.getItem("anelm.model");
    select.replaceChildren();
    for (const model of body.data || []) {
      const option = el("option", "", model.id + (model.context_length ? " (" + model.context_length + " tokens)" : ""));
      option.value = model.id;
      if (model.id === chosen) option.selected = true;
      select.append(option);
    }
  } catch (_) { /* the notice says why */ }
}

// MARK: - Documents

async function loadDocuments() {
  const rows = $("document-rows");
  try {
    const body = await getJSON("/v1/documents");
    rows.replaceChildren();
    $("documents-caption").textContent = "Indexed documents (" + body.data.length + ")";
    for (const d of body.data) {
      const row = el("tr");
      row.append(el("td", "path", d.name), el("td", "", String(d.chunks)), el("td", "", String(d.bytes)));
      const cell = el("td");
      const remove = el("button", "remove", "Remove");
      remove.type = "button";
      remove.setAttribute("aria-label", "Remove " + d.name);
      remove.addEventListener("click", async () => {
        try {
          await api("/v1/documents?path=" + encodeURIComponent(d.path), { method: "DELETE" });
        } catch (error) { showNotice("Not removed: " + error.message); }
        loadDocuments();
      });
      cell.append(remove);
      row.append(cell);
      rows.append(row);
    }
  } catch (error) {
    $("documents-caption").textContent = error.status === 404 ? "No document store: start the server with --store to index documents." : "Indexed documents";
    rows.replaceChildren();
  }
}

async function upload(files) {
  // Hidden files and folders are left out, as a folder walk of anelm index leaves them out.
  const list = Array.from(files).filter((f) => !(f.webkitRelativePath || f.name).split("/").some((part) => part.startsWith(".")));
  const hidden = files.length - list.length;
  if (!list.length) return;
  $("upload-progress").hidden = false;
  const bar = $("upload-bar");
  bar.max = list.length;
  bar.value = 0;
  let chunks = 0;
  const skipped = [];
  for (const [i, file] of list.entries()) {
    const name = file.webkitRelativePath || file.name;
    $("upload-text").textContent = "indexing " + (i + 1) + " of " + list.length + ": " + name;
    try {
      const text = await file.text();
      if (text.includes("\u0000") || text.includes("\uFFFD")) { skipped.push(name + " (not text)"); continue; }
      const result = await getJSON("/v1/documents", { method: "POST", body: JSON.stringify({ name, content: text }) });
      chunks += result.chunks;
    } catch (error) {
      skipped.push(name + " (" + error.message + ")");
    } finally {
      bar.value = i + 1;
    }
  }
  $("upload-text").textContent = "indexed " + (list.length - skipped.length) + " of " + list.length + " files, " + chunks + " chunks" +
    (skipped.length ? "; skipped: " + skipped.join(", ") : "") + (hidden ? "; " + hidden + " hidden left out" : "");
  loadDocuments();
}

// MARK: - Feedback status and training

async function loadStatus() {
  const status = $("status");
  try {
    const s = await getJSON("/v1/context/status");
    status.replaceChildren();
    const rows = [
      ["Store", s.store], ["Embedder", s.embedder.identifier + " (" + s.embedder.dimensions + " dimensions)"],
      ["Documents", s.documents + " (" + s.chunks + " chunks)"], ["Logged answers", s.answers], ["Feedback marks", s.feedback],
      ["Relevance model in use", s.relevance_version === null ? "none (retrieval order)" : "version " + s.relevance_version],
    ];
    for (const [name, value] of rows) {
      const dd = el("dd", "", String(value));
      dd.dataset.field = name;
      status.append(el("dt", "", name), dd);
    }
    const versions = $("version-rows");
    versions.replaceChildren();
    const number = (v) => (typeof v === "number" ? v.toFixed(3) : "–");
    for (const v of s.versions.slice().reverse()) {
      const m = v.metrics || {};
      const before = m.before || {};
      const after = m.after || {};
      const row = el("tr");
      row.append(
        el("td", "", String(v.version)), el("td", "", v.accepted ? "yes" : "no"), el("td", "", new Date(v.created * 1000).toLocaleString()),
        el("td", "", number(before["ndcg@5"]) + " → " + number(after["ndcg@5"])),
        el("td", "", number(before["recall@5"]) + " → " + number(after["recall@5"])));
      versions.append(row);
    }
  } catch (error) {
    status.replaceChildren(el("dd", "", error.status === 404 ? "No document store: start the server with --store." : error.message));
  }
}

async function train() {
  const result = $("train-result");
  const button = $("train");
  button.disabled = true;
  result.textContent = "training…";
  try {
    const r = await getJSON("/v1/context/train", { method: "POST", body: "{}" });
    result.textContent = "version " + r.version + (r.accepted ? " accepted" : " not better, not used") + ": nDCG@5 " + r.before["ndcg@5"].toFixed(3) +
      " → " + r.after["ndcg@5"].toFixed(3) + " on " + r.held_out_answers + " held-out answers (" + r.training_answers + " trained on)";
  } catch (error) {
    result.textContent = "Not trained: " + error.message;
  } finally {
    button.disabled = false;
    loadStatus();
  }
}

// MARK: - Views and keys

const views = ["chat", "documents", "feedback"];

function showView(name) {
  for (const view of views) {
    $("view-" + view).hidden = view !== name;
    $("tab-" + view).setAttribute("aria-selected", String(view === name));
    $("tab-" + view).tabIndex = view === name ? 0 : -1;
  }
  if (name === "documents") loadDocuments();
  if (name === "feedback") loadStatus();
  if (name === "chat") $("prompt").focus();
}

function start() {
  for (const [i, view] of views.entries()) {
    const tab = $("tab-" + view);
    tab.addEventListener("click", () => showView(view));
    tab.addEventListener("keydown", (event) => {
      // Arrow keys move between tabs, as a tablist does.
      const step = event.key === "ArrowRight" ? 1 : event.key === "ArrowLeft" ? -1 : 0;
      if (!step) return;
      const next = views[(i + step + views.length) % views.length];
      showView(next);
      $("tab-" + next).focus();
    });
  }
  $("composer").addEventListener("submit", (event) => { event.preventDefault(); send(); });
  $("prompt").addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) { event.preventDefault(); send(); }
  });
  document.addEventListener("keydown", (event) => { if (event.key === "Escape") stop(); });
  $("stop").addEventListener("click", stop);
  $("new-conversation").addEventListener("click", () => { if (!streaming) { newConversation(); saveConversations(); renderAll(); $("prompt").focus(); } });
  $("model").addEventListener("change", () => localStorage.setItem("anelm.model", $("model").value));
  for (const id of ["temperature", "top-p", "max-tokens", "system-prompt"]) {
    const saved = localStorage.getItem("anelm.setting." + id);
    if (saved !== null) $(id).value = saved;
    $(id).addEventListener("change", () => localStorage.setItem("anelm.setting." + id, $(id).value));
  }
  $("add-files").addEventListener("change", (event) => upload(event.target.files));
  $("add-folder").addEventListener("change", (event) => upload(event.target.files));
  $("train").addEventListener("click", train);
  $("key-form").addEventListener("submit", (event) => {
    event.preventDefault();
    sessionStorage.setItem(keyStorage, $("key-input").value);
    $("key-input").value = "";
    $("key-form").hidden = true;
    const waiters = keyWaiters;
    keyWaiters = [];
    waiters.forEach((resolve) => resolve());
  });
  loadConversations();
  saveConversations();
  renderAll();
  loadModels();
  showView("chat");
}

// For the browser test: the renderer, to feed it hostile text directly.
window.anelmPage = { renderMarkdown };
document.addEventListener("DOMContentLoaded", start);
"""#
}
