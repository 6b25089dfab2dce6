// chat.js — the Chat view: streamed replies rendered as Markdown, a stop
// button, the priority class and sampling settings of each request, and
// token counts, time to first token and tok/s under every reply.  The
// conversation and the settings live in localStorage.

import { apiFetch, el } from './api.js';
import { escapeHtml, renderMarkdown } from './md.js';

const CONV_ITEM = 'hearth.conversation';
const SETTINGS_ITEM = 'hearth.settings';
const DEFAULTS = {
  temperature: 0.8,
  top_p: 0.95,
  top_k: 40,
  min_p: 0.05,
  repeat_penalty: 1.0,
  max_tokens: '',
  seed: '',
  system: '',
  user: 'dashboard',
  priority: 'interactive',
};
const NUMERIC = ['temperature', 'top_p', 'top_k', 'min_p', 'repeat_penalty', 'max_tokens', 'seed'];

let messages = []; // [{ role, content, stats?, error? }]
let settings = { ...DEFAULTS };
let running = null; // { ctl, msg, node } while a reply streams
let modelId = 'model';
const $ = (id) => document.getElementById(id);

function load() {
  try {
    const c = JSON.parse(localStorage.getItem(CONV_ITEM) || '[]');
    if (Array.isArray(c)) messages = c.filter((m) => m && typeof m.content === 'string');
  } catch {
    messages = [];
  }
  try {
    settings = { ...DEFAULTS, ...JSON.parse(localStorage.getItem(SETTINGS_ITEM) || '{}') };
  } catch {
    settings = { ...DEFAULTS };
  }
}

function save() {
  try {
    localStorage.setItem(CONV_ITEM, JSON.stringify(messages));
  } catch {
    // full or unavailable: the conversation still lives in the page
  }
}

function saveSettings() {
  localStorage.setItem(SETTINGS_ITEM, JSON.stringify(settings));
}

function showSettings() {
  for (const k of NUMERIC) $(`s-${k}`).value = settings[k];
  $('s-system').value = settings.system;
  $('s-user').value = settings.user;
  $('priority').value = settings.priority;
}

function readSettings() {
  for (const k of NUMERIC) settings[k] = $(`s-${k}`).value;
  settings.system = $('s-system').value;
  settings.user = $('s-user').value;
  settings.priority = $('priority').value;
  saveSettings();
}

// A reply's text: a leading <think>…</think> (reasoning models) goes in a
// collapsed block of plain text, the rest is Markdown.
function replyHtml(text, streaming) {
  const m = /^\s*<think>([\s\S]*?)(<\/think>|$)/.exec(text);
  if (!m) return renderMarkdown(text);
  const open = streaming && !m[2];
  const think = `<details class="think"${open ? ' open' : ''}><summary>thinking</summary><div class="think-text">${escapeHtml(m[1].trim())}</div></details>`;
  return think + renderMarkdown(text.slice(m[0].length));
}

function statsText(s) {
  if (!s) return '';
  const parts = [];
  if (s.priority) parts.push(s.priority);
  if (s.prompt_tokens != null) {
    parts.push(`${s.prompt_tokens} prompt tokens${s.cached_tokens ? ` (${s.cached_tokens} cached)` : ''}`);
  }
  parts.push(`${s.approx ? '~' : ''}${s.completion_tokens} tokens`);
  if (s.ttft_ms != null) parts.push(`first token ${Math.round(s.ttft_ms)} ms`);
  if (s.tok_s != null) parts.push(`${s.tok_s.toFixed(1)} tok/s`);
  if (s.finish) parts.push(s.finish);
  return parts.join(' · ');
}

function messageNode(m) {
  const body = el('div', { class: 'body' });
  if (m.role === 'assistant') body.innerHTML = replyHtml(m.content, false); // escaped by md.js
  else body.textContent = m.content;
  const node = el(
    'div',
    { class: `msg ${m.role}${m.error ? ' error' : ''}` },
    el('div', { class: 'role', text: m.role === 'assistant' ? modelId : m.role }),
    body,
  );
  if (m.error) node.append(el('div', { class: 'err', text: m.error }));
  node.append(el('div', { class: 'stats', text: statsText(m.stats) }));
  return node;
}

function renderAll() {
  const box = $('messages');
  box.replaceChildren(...messages.map(messageNode));
  if (!messages.length) {
    box.append(el('div', { class: 'empty muted', text: 'Say something to the model.' }));
  }
  box.scrollTop = box.scrollHeight;
}

function setRunning(r) {
  running = r;
  $('send').disabled = !!r;
  $('stop').disabled = !r;
}

// The request body from the conversation and the settings.
function requestBody() {
  const msgs = [];
  if (settings.system.trim()) msgs.push({ role: 'system', content: settings.system });
  for (const m of messages) {
    if (m.error && !m.content) continue;
    msgs.push({ role: m.role, content: m.content });
  }
  const body = {
    model: modelId,
    messages: msgs,
    stream: true,
    stream_options: { include_usage: true },
    priority: settings.priority,
  };
  for (const k of ['temperature', 'top_p', 'min_p', 'repeat_penalty']) {
    if (settings[k] !== '' && isFinite(Number(settings[k]))) body[k] = Number(settings[k]);
  }
  for (const k of ['top_k', 'max_tokens', 'seed']) {
    if (settings[k] !== '' && Number.isInteger(Number(settings[k]))) body[k] = Number(settings[k]);
  }
  if (settings.user.trim()) body.user = settings.user.trim();
  return body;
}

// Reads an SSE body, calling onEvent(json) for every data event.
async function readEvents(res, onEvent) {
  const reader = res.body.getReader();
  const decoder = new TextDecoder();
  let buf = '';
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buf += decoder.decode(value, { stream: true });
    let at;
    while ((at = buf.indexOf('\n\n')) >= 0) {
      const ev = buf.slice(0, at);
      buf = buf.slice(at + 2);
      for (const line of ev.split('\n')) {
        if (!line.startsWith('data:')) continue;
        const data = line.slice(5).trim();
        if (data === '[DONE]') return;
        onEvent(JSON.parse(data));
      }
    }
  }
}

async function send(text) {
  readSettings();
  messages.push({ role: 'user', content: text });
  const reply = { role: 'assistant', content: '', stats: null };
  const body = requestBody();
  messages.push(reply);
  save();
  renderAll();
  const node = $('messages').lastElementChild;
  const bodyNode = node.querySelector('.body');
  const statsNode = node.querySelector('.stats');
  node.classList.add('streaming');
  const ctl = new AbortController();
  setRunning({ ctl, reply });
  const t0 = performance.now();
  let tFirst = null;
  let tLast = null;
  let chunks = 0;
  let usage = null;
  let finish = null;
  let pending = false;
  let lastSave = t0;
  const paint = () => {
    pending = false;
    bodyNode.innerHTML = replyHtml(reply.content, true); // escaped by md.js
    const live = { priority: body.priority, completion_tokens: chunks, approx: true };
    if (tFirst != null) live.ttft_ms = tFirst - t0;
    if (chunks > 1 && tLast > tFirst) live.tok_s = ((chunks - 1) * 1000) / (tLast - tFirst);
    statsNode.textContent = statsText(live);
    const box = $('messages');
    if (box.scrollHeight - box.scrollTop - box.clientHeight < 120) box.scrollTop = box.scrollHeight;
  };
  try {
    const res = await apiFetch('/v1/chat/completions', {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify(body),
      signal: ctl.signal,
    });
    await readEvents(res, (j) => {
      if (j.error) throw new Error(j.error.message || 'the server ended the reply with an error');
      if (j.usage) usage = j.usage;
      const c = j.choices && j.choices[0];
      if (!c) return;
      if (c.finish_reason) finish = c.finish_reason;
      const piece = c.delta && c.delta.content;
      if (!piece) return;
      const now = performance.now();
      if (tFirst == null) tFirst = now;
      tLast = now;
      chunks++;
      reply.content += piece;
      if (now - lastSave > 1000) {
        lastSave = now;
        save();
      }
      if (!pending) {
        pending = true;
        requestAnimationFrame(paint);
      }
    });
  } catch (e) {
    if (e.name === 'AbortError') {
      finish = 'stopped';
    } else {
      reply.error = e.message || String(e);
      ctl.abort(); // hang up: the server cancels the sequence
    }
  }
  const n = usage ? usage.completion_tokens : chunks;
  reply.stats = {
    priority: body.priority,
    prompt_tokens: usage ? usage.prompt_tokens : null,
    cached_tokens: usage && usage.prompt_tokens_details ? usage.prompt_tokens_details.cached_tokens : 0,
    completion_tokens: n,
    approx: !usage,
    ttft_ms: tFirst != null ? tFirst - t0 : null,
    tok_s: n > 1 && tLast > tFirst ? ((n - 1) * 1000) / (tLast - tFirst) : null,
    finish,
  };
  setRunning(null);
  save();
  const fresh = messageNode(reply);
  node.replaceWith(fresh);
  const box = $('messages');
  box.scrollTop = box.scrollHeight;
}

export function setModel(id) {
  modelId = id || 'model';
  for (const r of document.querySelectorAll('#messages .msg.assistant .role')) r.textContent = modelId;
}

export function initChat() {
  load();
  showSettings();
  renderAll();
  $('composer').addEventListener('submit', (e) => {
    e.preventDefault();
    const text = $('prompt').value;
    if (!text.trim() || running) return;
    $('prompt').value = '';
    send(text);
  });
  $('prompt').addEventListener('keydown', (e) => {
    if (e.key === 'Enter' && !e.shiftKey && !e.isComposing) {
      e.preventDefault();
      $('composer').requestSubmit();
    }
  });
  $('stop').addEventListener('click', () => running && running.ctl.abort());
  $('new-chat').addEventListener('click', () => {
    if (running) running.ctl.abort();
    messages = [];
    save();
    renderAll();
  });
  $('reset-settings').addEventListener('click', () => {
    settings = { ...DEFAULTS };
    saveSettings();
    showSettings();
  });
  document.querySelector('.settings').addEventListener('change', readSettings);
  $('priority').addEventListener('change', readSettings);
  // Copy buttons of code blocks (the markup comes from md.js).
  $('messages').addEventListener('click', (e) => {
    const b = e.target.closest('.copy-code');
    if (!b) return;
    const code = b.parentElement.querySelector('code');
    if (code && navigator.clipboard) {
      navigator.clipboard.writeText(code.textContent).then(
        () => (b.textContent = 'copied'),
        () => (b.textContent = 'copy failed'),
      );
    }
  });
}
