// api.js — how the dashboard talks to hearth: every call goes through the
// public API with `Authorization: Bearer KEY` when a key is set.  The key
// is asked for once (on the first 401) and kept in sessionStorage, so it
// lasts as long as the browser tab and is never written to disk.

const KEY_ITEM = 'hearth.apiKey';
const listeners = new Set();
let keyWanted = false;

export function apiKey() {
  return sessionStorage.getItem(KEY_ITEM) || '';
}

export function setApiKey(key) {
  if (key) sessionStorage.setItem(KEY_ITEM, key);
  else sessionStorage.removeItem(KEY_ITEM);
  keyWanted = false;
  for (const f of listeners) f({ keyChanged: true });
}

// True while the server refused the key (or none was given): polling waits.
export function needsKey() {
  return keyWanted;
}

// f({ needKey, refused }) when a request comes back 401 (refused: the key
// sent was wrong), f({ keyChanged }) when the key is set.
export function onAuth(f) {
  listeners.add(f);
}

export class ApiError extends Error {
  constructor(status, message, body) {
    super(message);
    this.status = status;
    this.body = body;
  }
}

// fetch() on the API with the key; throws ApiError for non-2xx replies
// (with the server's error message).  Returns the Response.
export async function apiFetch(path, opts = {}) {
  const headers = { ...(opts.headers || {}) };
  const key = apiKey();
  if (key) headers.Authorization = `Bearer ${key}`;
  const res = await fetch(path, { ...opts, headers, cache: 'no-store' });
  if (res.ok) return res;
  let body = null;
  let message = `${res.status} ${res.statusText}`;
  try {
    body = await res.json();
    if (body && body.error && body.error.message) message = body.error.message;
  } catch {
    // not JSON: keep the status line
  }
  if (res.status === 401) {
    // A refused key is dropped (it would only be refused again); the
    // listeners ask for another one once.
    const refused = !!key && key === apiKey();
    if (refused) sessionStorage.removeItem(KEY_ITEM);
    if (!keyWanted || refused) {
      keyWanted = true;
      for (const f of listeners) f({ needKey: true, refused });
    }
  }
  throw new ApiError(res.status, message, body);
}

export async function apiJson(path, opts) {
  return (await apiFetch(path, opts)).json();
}

// ---------------------------------------------------------------- formatting

export function fmtBytes(n) {
  if (n == null || !isFinite(n)) return '–';
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let u = 0;
  while (Math.abs(n) >= 1024 && u < units.length - 1) {
    n /= 1024;
    u++;
  }
  return `${n >= 100 || u === 0 ? n.toFixed(0) : n.toFixed(1)} ${units[u]}`;
}

export function fmtAge(s) {
  if (s == null || !isFinite(s)) return '–';
  if (s < 10) return `${s.toFixed(1)} s`;
  if (s < 60) return `${Math.round(s)} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} min ${String(Math.round(s % 60)).padStart(2, '0')} s`;
  return `${Math.floor(m / 60)} h ${String(m % 60).padStart(2, '0')} min`;
}

export function fmtTime(unixSeconds) {
  if (!unixSeconds) return '–';
  return new Date(unixSeconds * 1000).toLocaleTimeString();
}

// A DOM element: el('td', { class: 'x', text: 'y' }, child...).  Text goes
// in with textContent, never as HTML.
export function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v == null || v === false) continue;
    if (k === 'text') e.textContent = v;
    else if (k === 'class') e.className = v;
    else if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v === true ? '' : v);
  }
  for (const c of children) if (c != null) e.append(c);
  return e;
}

export const CLASSES = ['interactive', 'tool', 'background'];
