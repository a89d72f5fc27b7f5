// The live dashboard: connects to /ws, renders the snapshot, applies every
// pushed message as it arrives. Text reaches the DOM through textContent only.
import { Fleet } from "./fleet.js";

const KEY_STORAGE = "vmsapp.apiKey";
const ONLINE = "online";
const SNAPSHOT_DEADLINE = 10_000; // ms from opening the socket to a snapshot
const RETRY_FIRST = 500;          // ms; grows 1.6 times per failed attempt, with jitter
const RETRY_GROWTH = 1.6;
const RETRY_MAX = 15_000;
const THROTTLED_RETRY = 60_000;   // the server's per-address lockout lasts a minute
const HISTORY_PAGE = 20;

const CLOSE_REASONS = {
  1000: "closed",
  1001: "the server is restarting",
  1006: "the connection was lost",
  1008: "refused by the server",
  1011: "server error",
  1012: "the server is restarting",
  1013: "this page fell behind",
};

const $ = (id) => document.getElementById(id);
const ui = {
  connection: $("connection"),
  connectionText: $("connection-text"),
  connectionDetail: $("connection-detail"),
  retryNow: $("retry-now"),
  changeKey: $("change-key"),
  keyPanel: $("key-panel"),
  keyMessage: $("key-message"),
  keyForm: $("key-form"),
  keyInput: $("key-input"),
  keyCancel: $("key-cancel"),
  fleet: $("fleet"),
  stale: $("stale-banner"),
  staleTime: $("stale-time"),
  staleReason: $("stale-reason"),
  table: $("nvr-table"),
  filterText: $("filter-text"),
  filterStatus: $("filter-status"),
  shown: $("shown-count"),
  empty: $("empty"),
  totals: {
    nvrsOnline: $("nvrs-online"), nvrsTotal: $("nvrs-total"), nvrsOffline: $("nvrs-offline"),
    camerasOnline: $("cameras-online"), camerasTotal: $("cameras-total"),
    camerasOffline: $("cameras-offline"),
  },
  rowTemplate: $("nvr-template"),
  detailTemplate: $("detail-template"),
};

const fleet = new Fleet();
const collator = new Intl.Collator(undefined, { numeric: true, sensitivity: "base" });

// ---- The API key ------------------------------------------------------------

const memoryStore = new Map(); // when the browser refuses storage (private modes)

function loadKey() {
  try { return localStorage.getItem(KEY_STORAGE); } catch { return memoryStore.get(KEY_STORAGE) ?? null; }
}

function saveKey(value) {
  try { localStorage.setItem(KEY_STORAGE, value); } catch { memoryStore.set(KEY_STORAGE, value); }
}

function forgetKey() {
  try { localStorage.removeItem(KEY_STORAGE); } catch { /* storage refused */ }
  memoryStore.delete(KEY_STORAGE);
}

/** `/#key=…` (what `make run` prints): keep the key, take it out of the address bar. */
function takeKeyFromFragment() {
  const params = new URLSearchParams(location.hash.slice(1));
  const value = params.get("key");
  if (value === null) return false;
  params.delete("key");
  const rest = params.toString();
  history.replaceState(null, "", location.pathname + location.search + (rest ? `#${rest}` : ""));
  if (!value.trim()) return false;
  saveKey(value.trim());
  return true;
}

// ---- Server clock -------------------------------------------------------------

// Browser clock minus server clock (ms), so "12 s ago" is right on a screen
// whose clock is off. Each estimate includes some latency, so the smallest wins.
let skew = 0;
let skewKnown = false;

function noteServerTime(serverMs) {
  if (serverMs == null || Number.isNaN(serverMs)) return;
  const estimate = Date.now() - serverMs;
  if (!skewKnown || estimate < skew) skew = estimate;
  skewKnown = true;
}

const serverNow = () => Date.now() - skew;

// ---- Connection -------------------------------------------------------------

const link = {
  authMode: null, // "token" | "open", from /config.json
  socket: null,
  synced: false,  // a snapshot arrived on this socket: what is shown is live
  attempt: 0,
  retryTimer: 0,
  retryAt: 0,
  watchdog: 0,
  everSynced: false,
};

function setState(state, detail = "") {
  const labels = {
    connecting: "Connecting…", live: "Live", reconnecting: "Reconnecting…",
    "key-needed": "API key needed", refused: "Key refused", throttled: "Too many attempts",
  };
  ui.connection.dataset.state = state;
  ui.connectionText.textContent = labels[state];
  ui.connectionDetail.textContent = detail;
  ui.retryNow.hidden = !(state === "reconnecting" || state === "throttled");
  document.body.classList.toggle("is-stale", state !== "live");
  if (state !== "live" && link.everSynced) {
    ui.stale.hidden = false;
  } else if (state === "live") {
    ui.stale.hidden = true;
  }
}

async function loadConfig() {
  const response = await fetch("/config.json", { cache: "no-store" });
  if (!response.ok) throw new Error(`HTTP ${response.status}`);
  const date = Date.parse(response.headers.get("Date") || "");
  if (!Number.isNaN(date)) noteServerTime(date + 500); // the header is rounded down to seconds
  skewKnown = false; // messages' own times are better; let them replace this
  return (await response.json()).auth_mode;
}

async function begin() {
  while (link.authMode === null) {
    try {
      link.authMode = await loadConfig();
    } catch {
      await new Promise((resolve) => scheduleRetry(resolve, "the server is not answering"));
    }
  }
  ui.changeKey.hidden = link.authMode !== "token";
  if (link.authMode === "token" && !loadKey()) {
    askForKey("Enter an API key (viewer or admin) to watch the fleet.");
    return;
  }
  connect();
}

function wsUrl() {
  return `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/ws`;
}

function connect() {
  clearTimeout(link.retryTimer);
  link.retryThen = null;
  dropSocket();
  setState(link.everSynced || link.attempt ? "reconnecting" : "connecting",
    link.attempt ? "connecting…" : "");
  const socket = new WebSocket(wsUrl());
  const refusal = { code: null, opened: false };
  link.socket = socket;
  link.synced = false;
  socket.onopen = () => {
    refusal.opened = true;
    const hello = { type: "dashboard" };
    if (link.authMode === "token") hello.token = loadKey() || "";
    socket.send(JSON.stringify(hello));
  };
  socket.onmessage = (event) => {
    if (socket === link.socket) receive(event.data, refusal);
  };
  socket.onclose = (event) => {
    if (socket === link.socket) closed(event, refusal);
  };
  // A socket that opens but never brings a snapshot is as good as none.
  link.watchdog = setTimeout(() => {
    if (socket === link.socket && !link.synced) socket.close();
  }, SNAPSHOT_DEADLINE);
}

function dropSocket() {
  clearTimeout(link.watchdog);
  const socket = link.socket;
  link.socket = null;
  link.synced = false;
  if (socket && socket.readyState <= WebSocket.OPEN) socket.close(1000);
}

function receive(data, refusal) {
  let message;
  try {
    message = JSON.parse(data);
  } catch {
    return;
  }
  switch (message.type) {
    case "dashboard_ok":
      return;
    case "snapshot":
      // The first, or a resync after the server missed broadcasts: a full replacement.
      clearTimeout(link.watchdog);
      skewKnown = false;
      fleet.reset(message);
      if (!link.synced) hideKeyPanel(); // a resync leaves an open "Change key" alone
      link.synced = true;
      link.everSynced = true;
      link.attempt = 0;
      view.full = true;
      scheduleFrame();
      setState("live");
      return;
    case "error":
      // Decided by the error frame, not by the close code that follows: a
      // browser may report the close as 1006 (simple-websocket issue #42).
      if (message.code === "unauthorized" || message.code === "too_many_attempts") {
        refusal.code = message.code;
      }
      return;
    default: {
      if (!link.synced) return; // nothing to apply it to yet
      noteServerTime(Date.parse(message.at));
      const ids = fleet.apply(message);
      if (ids.length) {
        for (const id of ids) view.dirty.add(id);
        scheduleFrame();
      }
    }
  }
}

function closed(event, { code, opened }) {
  clearTimeout(link.watchdog);
  if (link.synced) ui.staleTime.textContent = new Date().toLocaleTimeString();
  link.socket = null;
  link.synced = false;
  if (!opened) {
    // Never connected (the server is down or restarting): always 1006, says nothing.
    scheduleRetry(connect, "the server cannot be reached");
    return;
  }
  // The close of a connection that was open, as this browser reports it.
  ui.connection.dataset.closeCode = String(event.code);
  ui.staleReason.textContent = CLOSE_REASONS[event.code] || `the connection closed (${event.code})`;
  if (code === "unauthorized") {
    keyRefused();
    return;
  }
  if (code === "too_many_attempts") {
    scheduleRetry(connect, "too many failed attempts from this address", THROTTLED_RETRY, "throttled");
    return;
  }
  scheduleRetry(connect, CLOSE_REASONS[event.code] || `closed with code ${event.code}`);
}

/** Call ``then`` after a backoff, showing "Reconnecting…" and a countdown. */
function scheduleRetry(then, reason, delay = null, state = "reconnecting") {
  if (delay === null) {
    const ceiling = Math.min(RETRY_MAX, RETRY_FIRST * RETRY_GROWTH ** link.attempt);
    delay = ceiling / 2 + Math.random() * (ceiling / 2); // jitter: restarts bring everyone back at once
    link.attempt += 1;
  }
  link.retryAt = Date.now() + delay;
  link.retryReason = reason;
  link.retryState = state;
  clearTimeout(link.retryTimer);
  link.retryTimer = setTimeout(then, delay);
  link.retryThen = then;
  setState(state, retryDetail());
}

function retryDetail() {
  const seconds = Math.max(0, Math.ceil((link.retryAt - Date.now()) / 1000));
  return `${link.retryReason}; retrying in ${seconds} s`;
}

function retryNow() {
  if (!link.retryThen) return;
  clearTimeout(link.retryTimer);
  const then = link.retryThen;
  link.retryThen = null;
  then();
}

function keyRefused() {
  const hadKey = link.authMode === "token" && loadKey();
  forgetKey();
  link.authMode = "token"; // an open-mode server may have restarted in token mode
  dropSocket();
  askForKey(hadKey
    ? "The server refused this API key: it is wrong, or it was revoked. Enter another one."
    : "The server now needs an API key (viewer or admin).", "refused");
}

function askForKey(message, state = "key-needed") {
  clearTimeout(link.retryTimer);
  link.retryThen = null;
  ui.keyMessage.textContent = message;
  ui.keyPanel.hidden = false;
  ui.changeKey.hidden = true;
  ui.keyCancel.hidden = !link.synced;
  ui.fleet.hidden = !link.synced;
  ui.keyInput.value = "";
  ui.keyInput.focus();
  if (!link.synced) setState(state);
}

function hideKeyPanel() {
  ui.keyPanel.hidden = true;
  ui.changeKey.hidden = link.authMode !== "token";
  ui.fleet.hidden = false;
}

// ---- REST (camera names, history) --------------------------------------------

async function api(path) {
  const headers = {};
  const key = loadKey();
  if (link.authMode === "token" && key) headers.Authorization = `Bearer ${key}`;
  const response = await fetch(path, { headers, cache: "no-store" });
  const body = await response.json().catch(() => null);
  if (response.status === 401) {
    keyRefused();
    throw new Error("the API key was refused");
  }
  if (!response.ok) throw new Error(body?.error?.message || `HTTP ${response.status}`);
  return body;
}

// ---- Rendering ---------------------------------------------------------------

const view = {
  rows: new Map(),       // nvr id -> Row
  dirty: new Set(),      // nvr ids to re-render next frame
  full: false,           // re-render everything (a snapshot)
  reorder: false,        // re-sort and re-filter everything (sort or filter changed)
  order: [],             // the rows shown, in display order
  pruned: false,         // rows were removed: drop them from ``order``
  frame: 0,
  sort: { key: "status", dir: 1 },
  text: "",
  status: "",
};

function scheduleFrame() {
  if (!view.frame) view.frame = requestAnimationFrame(flush);
}

class Row {
  constructor(id) {
    this.id = id;
    this.body = ui.rowTemplate.content.firstElementChild.cloneNode(true);
    this.body.dataset.nvrId = String(id);
    this.tr = this.body.querySelector(".nvr-row");
    this.toggle = this.body.querySelector(".toggle");
    this.toggle.setAttribute("aria-controls", `detail-${id}`);
    const part = (name) => this.body.querySelector(`.${name}`);
    this.el = {
      name: part("name"), hostInline: part("host-inline"), hostname: part("hostname"),
      ip: part("ip"), badge: part("badge"), badgeText: part("badge-text"),
      seen: part("seen"), cams: part("cams"), camsOff: part("cams-off"),
    };
    this.shown = {};          // what the DOM shows, to touch it only on change
    this.nvr = null;
    this.visible = false;
    this.order = "";
    this.expanded = false;
    this.detail = null;
    this.flashPhase = false;
    this.search = "";
  }

  /** Write ``value`` into part ``name`` if it changed; true when it did. */
  text(name, value) {
    if (this.shown[name] === value) return false;
    this.shown[name] = value;
    this.el[name].textContent = value;
    return true;
  }

  flash() {
    // Two identical animations under different names: swapping restarts it
    // without forcing a layout per row.
    this.flashPhase = !this.flashPhase;
    this.tr.classList.toggle("flash-a", this.flashPhase);
    this.tr.classList.toggle("flash-b", !this.flashPhase);
  }
}

function renderRow(row, nvr, flash) {
  row.nvr = nvr;
  let changed = false;
  if (row.text("name", nvr.name)) {
    changed = true;
    row.toggle.setAttribute("aria-label", `Cameras and history of ${nvr.name}`);
  }
  changed = row.text("hostname", nvr.hostname) || changed;
  row.text("hostInline", nvr.hostname);
  row.text("ip", nvr.ip_address || "");
  if (row.shown.status !== nvr.status) {
    row.shown.status = nvr.status;
    row.body.dataset.status = nvr.status;
    row.el.badge.className = `badge badge--${nvr.status === ONLINE ? "online" : "offline"}`;
    row.el.badgeText.textContent = nvr.status === ONLINE ? "Online" : "Offline";
    changed = true;
  }
  const cams = fleet.cameraCounts(nvr.id);
  row.cams = cams;
  changed = row.text("cams", `${cams.online} / ${cams.total}`) || changed;
  const off = cams.total - cams.online;
  row.text("camsOff", off && nvr.status === ONLINE ? `${off} offline` : "");
  renderSeen(row, serverNow());
  row.search = [nvr.name, nvr.hostname, nvr.ip_address || "", nvr.location || ""].join("\n").toLowerCase();
  if (changed && flash) row.flash();
  if (row.expanded) renderDetail(row);
}

function renderSeen(row, now) {
  const nvr = row.nvr;
  let label;
  let title;
  if (nvr.status === ONLINE) {
    label = "now";
    title = "Online: its heartbeats are arriving";
  } else if (nvr.last_seen == null) {
    label = "never";
    title = "Never connected";
  } else {
    label = ago(now - nvr.last_seen);
    title = new Date(nvr.last_seen + skew).toLocaleString();
  }
  if (row.text("seen", label) || row.shown.seenTitle !== title) {
    row.shown.seenTitle = title;
    row.el.seen.title = title;
    if (nvr.last_seen != null) row.el.seen.dateTime = new Date(nvr.last_seen).toISOString();
  }
}

function ago(ms) {
  const s = Math.floor(Math.max(0, ms) / 1000);
  if (s < 5) return "just now";
  if (s < 60) return `${s} s ago`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} min ago`;
  const h = Math.floor(m / 60);
  if (h < 48) return `${h} h ago`;
  return `${Math.floor(h / 24)} days ago`;
}

function matches(row) {
  if (view.status && row.nvr.status !== view.status) return false;
  return !view.text || row.search.includes(view.text);
}

/** A string that changes exactly when the row's place in the sort can change. */
function orderToken(row) {
  const nvr = row.nvr;
  switch (view.sort.key) {
    case "name": return nvr.name;
    case "hostname": return nvr.hostname;
    case "status": return `${nvr.status}\n${nvr.name}`;
    case "last_seen": return `${nvr.status}\n${nvr.last_seen}`;
    case "cameras": return `${row.cams.online}/${row.cams.total}`;
    default: return "";
  }
}

function seenRank(nvr) {
  if (nvr.status === ONLINE) return Number.MAX_SAFE_INTEGER;
  return nvr.last_seen ?? -1;
}

function compareRows(a, b) {
  const x = a.nvr;
  const y = b.nvr;
  let r = 0;
  switch (view.sort.key) {
    case "name": r = collator.compare(x.name, y.name); break;
    case "hostname": r = collator.compare(x.hostname, y.hostname); break;
    case "status": r = (x.status === ONLINE) - (y.status === ONLINE); break; // offline first
    case "last_seen": r = seenRank(x) - seenRank(y); break;
    case "cameras": r = (a.cams.online - b.cams.online) || (a.cams.total - b.cams.total); break;
    default: break;
  }
  return r * view.sort.dir || collator.compare(x.name, y.name) || x.id - y.id;
}

function flush() {
  view.frame = 0;
  const focused = document.activeElement;
  const moved = new Set();
  if (view.full) {
    view.full = false;
    view.dirty.clear();
    for (const [id, row] of view.rows) {
      if (!fleet.nvrs.has(id)) removeRow(row);
    }
    for (const nvr of fleet.nvrs.values()) {
      let row = view.rows.get(nvr.id);
      const isNew = !row;
      if (isNew) {
        row = new Row(nvr.id);
        view.rows.set(nvr.id, row);
      }
      renderRow(row, nvr, !isNew);
    }
    view.reorder = true;
  } else {
    for (const id of view.dirty) {
      const nvr = fleet.nvrs.get(id);
      let row = view.rows.get(id);
      if (!nvr) {
        if (row) removeRow(row);
        continue;
      }
      if (!row) {
        row = new Row(id);
        view.rows.set(id, row);
        renderRow(row, nvr, true);
        moved.add(row);
        continue;
      }
      const before = row.order;
      const wasVisible = row.visible;
      renderRow(row, nvr, true);
      if (orderToken(row) !== before || matches(row) !== wasVisible) moved.add(row);
    }
    view.dirty.clear();
  }
  if (view.reorder) {
    view.reorder = false;
    placeAll();
  } else if (moved.size || view.pruned) {
    placeMoved(moved);
  }
  view.pruned = false;
  if (focused && focused !== document.activeElement && focused.isConnected) {
    focused.focus({ preventScroll: true }); // moving a row must not lose the keyboard's place
  }
  renderTotals();
}

function removeRow(row) {
  row.body.remove();
  view.rows.delete(row.id);
  view.pruned = true;
}

function visibleSorted() {
  const list = [];
  for (const row of view.rows.values()) {
    row.visible = matches(row);
    row.order = orderToken(row);
    if (row.visible) list.push(row);
    else row.body.remove();
  }
  return list.sort(compareRows);
}

/** Re-sort and re-filter every row (a snapshot, or the sort or filter changed). */
function placeAll() {
  view.order = visibleSorted();
  const fragment = document.createDocumentFragment();
  for (const row of view.order) fragment.append(row.body);
  ui.table.append(fragment);
}

/**
 * Put the rows whose place may have changed where they belong. The others
 * stay sorted, so each moved row finds its place by binary search and a
 * handful of changes costs a handful of comparisons and DOM moves.
 */
function placeMoved(moved) {
  view.order = view.order.filter((row) => !moved.has(row) && view.rows.get(row.id) === row);
  for (const row of moved) {
    row.visible = matches(row);
    row.order = orderToken(row);
    if (!row.visible) {
      row.body.remove();
      continue;
    }
    let low = 0;
    let high = view.order.length;
    while (low < high) {
      const middle = (low + high) >>> 1;
      if (compareRows(view.order[middle], row) < 0) low = middle + 1;
      else high = middle;
    }
    const next = view.order[low];
    view.order.splice(low, 0, row);
    if (row.body.nextElementSibling !== (next?.body ?? null) || !row.body.isConnected) {
      ui.table.insertBefore(row.body, next ? next.body : null);
    }
  }
}

function renderTotals() {
  const t = fleet.totals();
  const set = (el, value) => {
    const text = String(value);
    if (el.textContent !== text) el.textContent = text;
  };
  set(ui.totals.nvrsOnline, t.nvrsOnline);
  set(ui.totals.nvrsTotal, fleet.nvrs.size);
  set(ui.totals.nvrsOffline, t.nvrsOffline);
  set(ui.totals.camerasOnline, t.camerasOnline);
  set(ui.totals.camerasTotal, fleet.cameras.size);
  set(ui.totals.camerasOffline, t.camerasOffline);
  document.body.classList.toggle("has-offline-nvrs", t.nvrsOffline > 0);
  document.body.classList.toggle("has-offline-cameras", t.camerasOffline > 0);
  const shown = view.order.length;
  const nvrs = (n) => `${n} NVR${n === 1 ? "" : "s"}`;
  set(ui.shown, shown === fleet.nvrs.size ? nvrs(shown) : `${shown} of ${nvrs(fleet.nvrs.size)}`);
  ui.empty.hidden = shown > 0;
  ui.empty.textContent = fleet.nvrs.size ? "No NVR matches the filter." : "No NVRs yet: add one with POST /api/nvrs.";
}

// ---- Expanded rows: cameras and history -------------------------------------------

function toggleRow(row) {
  row.expanded = !row.expanded;
  row.toggle.setAttribute("aria-expanded", String(row.expanded));
  row.body.classList.toggle("is-expanded", row.expanded);
  if (!row.expanded) {
    row.detail?.tr.remove();
    return;
  }
  if (!row.detail) row.detail = makeDetail(row);
  row.body.append(row.detail.tr);
  renderDetail(row);
  loadCameraNames(row);
}

function makeDetail(row) {
  const tr = ui.detailTemplate.content.firstElementChild.cloneNode(true);
  tr.id = `detail-${row.id}`;
  const part = (name) => tr.querySelector(`.${name}`);
  const detail = {
    tr, ip: part("d-ip"), location: part("d-location"), hostname: part("d-hostname"),
    transitions: part("d-transitions"), camCount: part("d-cam-count"), camNote: part("d-cam-note"),
    cameras: part("camera-list"), historyLoad: part("history-load"), historyNote: part("history-note"),
    historyTable: part("history-table"), historyBody: part("history-table").tBodies[0],
    historyMore: part("history-more"), historyShown: 0,
  };
  detail.historyLoad.addEventListener("click", () => loadHistory(row, false));
  detail.historyMore.addEventListener("click", () => loadHistory(row, true));
  return detail;
}

function renderDetail(row) {
  const d = row.detail;
  const nvr = row.nvr;
  d.ip.textContent = nvr.ip_address || "—";
  d.location.textContent = nvr.location || "—";
  d.hostname.textContent = nvr.hostname;
  d.transitions.textContent = String(Math.max(0, nvr.status_version));
  const ids = [...fleet.cameraIdsOf(nvr.id)];
  const info = (id) => fleet.cameraInfo.get(id);
  ids.sort((a, b) => (info(a)?.channel ?? Infinity) - (info(b)?.channel ?? Infinity) || a - b);
  const items = ids.map((id) => {
    const camera = fleet.cameras.get(id);
    const li = document.createElement("li");
    li.className = "camera";
    li.dataset.cameraId = String(id);
    const text = document.createElement("span");
    text.className = "camera-text";
    const name = document.createElement("span");
    name.className = "camera-name";
    name.textContent = info(id)?.name || `Camera #${id}`;
    name.title = name.textContent;
    const channel = document.createElement("span");
    channel.className = "muted camera-channel";
    channel.textContent = info(id)?.channel != null ? `Channel ${info(id).channel}` : "No channel";
    text.append(name, channel);
    li.append(text, badge(camera.status));
    return li;
  });
  d.cameras.replaceChildren(...items);
  const { online, total } = fleet.cameraCounts(nvr.id);
  d.camCount.textContent = `${online} of ${total} online`;
  if (!total) d.camNote.textContent = "This NVR has no cameras.";
  else if (d.camNote.dataset.kind !== "error") d.camNote.textContent = "";
}

function badge(status) {
  const span = document.createElement("span");
  span.className = `badge badge--${status === ONLINE ? "online" : "offline"}`;
  const icon = document.createElement("span");
  icon.className = "badge-icon";
  icon.setAttribute("aria-hidden", "true");
  const text = document.createElement("span");
  text.className = "badge-text";
  text.textContent = status === ONLINE ? "Online" : "Offline";
  span.append(icon, text);
  return span;
}

async function loadCameraNames(row) {
  const d = row.detail;
  try {
    const nvr = await api(`/api/nvrs/${row.id}`);
    for (const camera of nvr.cameras || []) fleet.cameraInfo.set(camera.id, { name: camera.name, channel: camera.channel });
    delete d.camNote.dataset.kind;
  } catch (error) {
    d.camNote.dataset.kind = "error";
    d.camNote.textContent = `Camera names could not be loaded: ${error.message}.`;
  }
  if (row.expanded && view.rows.get(row.id) === row) renderDetail(row);
}

async function loadHistory(row, more) {
  const d = row.detail;
  const offset = more ? d.historyShown : 0;
  d.historyLoad.disabled = true;
  d.historyMore.disabled = true;
  d.historyNote.textContent = "Loading…";
  try {
    const page = await api(`/api/nvrs/${row.id}/events?limit=${HISTORY_PAGE}&offset=${offset}`);
    const lines = page.items.map((event) => historyLine(row, event));
    if (more) d.historyBody.append(...lines);
    else d.historyBody.replaceChildren(...lines);
    d.historyShown = offset + page.items.length;
    d.historyTable.hidden = d.historyShown === 0;
    d.historyMore.hidden = d.historyShown >= page.total;
    d.historyNote.textContent = page.total
      ? `${d.historyShown} of ${page.total} changes, newest first.`
      : "No status changes recorded yet.";
    d.historyLoad.textContent = "Refresh history";
  } catch (error) {
    d.historyNote.textContent = `History could not be loaded: ${error.message}.`;
  } finally {
    d.historyLoad.disabled = false;
    d.historyMore.disabled = false;
  }
}

function historyLine(row, event) {
  const tr = document.createElement("tr");
  const cell = (content, className) => {
    const td = document.createElement("td");
    if (className) td.className = className;
    if (content instanceof Node) td.append(content);
    else td.textContent = content;
    tr.append(td);
    return td;
  };
  const at = Date.parse(event.at);
  const when = document.createElement("time");
  when.dateTime = event.at;
  const local = new Date(at + skew);
  when.textContent = local.toDateString() === new Date().toDateString()
    ? local.toLocaleTimeString() : local.toLocaleString();
  when.title = ago(serverNow() - at);
  cell(when, "h-when");
  const subject = event.camera_id == null
    ? "NVR"
    : fleet.cameraInfo.get(event.camera_id)?.name || `Camera #${event.camera_id}`;
  cell(subject, "h-subject");
  const change = document.createElement("span");
  change.className = "change";
  const arrow = document.createElement("span");
  arrow.className = "arrow";
  arrow.textContent = "→";
  change.append(badge(event.from_status), arrow, badge(event.to_status));
  cell(change, "h-change");
  cell(event.reason, "h-reason");
  return tr;
}

// ---- Controls: sort, filter, keyboard --------------------------------------------

function setSort(key) {
  view.sort = { key, dir: view.sort.key === key ? -view.sort.dir : 1 };
  for (const th of ui.table.tHead.querySelectorAll("th[data-sort]")) {
    if (th.dataset.sort === key) th.setAttribute("aria-sort", view.sort.dir > 0 ? "ascending" : "descending");
    else th.removeAttribute("aria-sort");
  }
  view.reorder = true;
  scheduleFrame();
}

function applyFilter() {
  view.text = ui.filterText.value.trim().toLowerCase();
  view.status = ui.filterStatus.value;
  view.reorder = true;
  scheduleFrame();
}

function rowOf(element) {
  const body = element.closest("tbody.nvr");
  return body ? view.rows.get(Number(body.dataset.nvrId)) : null;
}

function moveFocus(from, key) {
  const bodies = ui.table.tBodies;
  if (!bodies.length) return;
  let target;
  if (key === "Home") target = bodies[0];
  else if (key === "End") target = bodies[bodies.length - 1];
  else {
    const body = from.closest("tbody.nvr");
    target = key === "ArrowDown" ? body.nextElementSibling : body.previousElementSibling;
    if (target?.tagName !== "TBODY") target = null;
  }
  target?.querySelector(".toggle").focus();
}

function wireControls() {
  for (const th of ui.table.tHead.querySelectorAll("th[data-sort]")) {
    th.querySelector("button").addEventListener("click", () => setSort(th.dataset.sort));
  }
  ui.filterText.addEventListener("input", applyFilter);
  ui.filterStatus.addEventListener("change", applyFilter);
  ui.filterText.addEventListener("keydown", (event) => {
    if (event.key === "Escape") {
      ui.filterText.value = "";
      applyFilter();
    }
  });
  ui.table.addEventListener("click", (event) => {
    const row = rowOf(event.target);
    if (!row || String(getSelection())) return; // selecting text is not a click
    if (event.target.closest(".toggle") || (event.target.closest(".nvr-row") && !event.target.closest("a, button"))) {
      toggleRow(row);
    }
  });
  ui.table.addEventListener("keydown", (event) => {
    if (!event.target.classList.contains("toggle")) return;
    if (["ArrowDown", "ArrowUp", "Home", "End"].includes(event.key)) {
      event.preventDefault();
      moveFocus(event.target, event.key);
    } else if ((event.key === "ArrowRight" && !rowOf(event.target).expanded)
      || (event.key === "ArrowLeft" && rowOf(event.target).expanded)) {
      event.preventDefault();
      toggleRow(rowOf(event.target));
    }
  });
  document.addEventListener("keydown", (event) => {
    const typing = event.target.closest?.("input, select, textarea");
    if (event.key === "/" && !typing && !event.ctrlKey && !event.metaKey && !ui.fleet.hidden) {
      event.preventDefault();
      ui.filterText.focus();
    }
  });
  ui.keyForm.addEventListener("submit", (event) => {
    event.preventDefault();
    const value = ui.keyInput.value.trim();
    if (!value) return;
    saveKey(value);
    ui.keyInput.value = "";
    link.attempt = 0;
    hideKeyPanel();
    connect();
  });
  ui.keyCancel.addEventListener("click", hideKeyPanel);
  $("key-forget").addEventListener("click", () => {
    forgetKey();
    dropSocket();
    link.everSynced = false;
    askForKey("The key was removed from this browser. Enter an API key to watch the fleet.");
  });
  ui.changeKey.addEventListener("click", () => askForKey("Enter a different API key (viewer or admin)."));
  ui.retryNow.addEventListener("click", retryNow);
  window.addEventListener("online", retryNow);
  window.addEventListener("hashchange", () => {
    if (takeKeyFromFragment() && link.authMode) {
      link.attempt = 0;
      hideKeyPanel();
      connect();
    }
  });
}

// One timer for every relative time on the page and the retry countdown.
function tick() {
  const now = serverNow();
  for (const row of view.rows.values()) if (row.nvr) renderSeen(row, now);
  if (link.retryThen && ui.connection.dataset.state !== "live") {
    ui.connectionDetail.textContent = retryDetail();
  }
}

takeKeyFromFragment();
wireControls();
setInterval(tick, 1000);
begin();
