// app.js — the hearth dashboard: tabs, the API key dialog, the live
// figures in the header and the polling that feeds every view.
//
// Polls: /v1/queue each second (header and Queue view), /v1/metrics every
// two seconds (only new samples), /v1/agents every five seconds while the
// Agents view is open; nothing while the tab is hidden or a key is needed.

import { apiJson, apiKey, needsKey, onAuth, setApiKey } from './api.js';
import { initAgents, refreshAgents } from './agents.js';
import { initChat, setModel } from './chat.js';
import { initMetrics, metricsSince, showMetrics, updateMetrics } from './metrics.js';
import { updateQueue } from './queue.js';

const $ = (id) => document.getElementById(id);
const TABS = ['chat', 'queue', 'agents', 'metrics'];
let tab = 'chat';

function showTab(name) {
  tab = TABS.includes(name) ? name : 'chat';
  for (const t of TABS) $(`tab-${t}`).hidden = t !== tab;
  for (const a of document.querySelectorAll('nav.tabs a')) a.classList.toggle('active', a.dataset.tab === tab);
  if (tab === 'metrics') showMetrics();
  if (tab === 'agents') refreshAgents();
}

function status(text, cls) {
  const s = $('live-status');
  s.textContent = text;
  s.className = `status ${cls || ''}`;
}

// Runs fn every ms milliseconds (and at once) while the page is visible and
// no key is missing; when() may hold a poll back.
function every(ms, fn, when = () => true) {
  const tick = async () => {
    if (!document.hidden && !needsKey() && when()) {
      try {
        await fn();
        status('live', 'ok');
      } catch (e) {
        // A 401 is shown by the key dialog's listener (initKey).
        if (e.status !== 401) status(e.status ? e.message : 'server unreachable', 'bad');
      }
    }
    setTimeout(tick, ms);
  };
  tick();
}

async function pollQueue() {
  const q = await apiJson('/v1/queue');
  updateQueue(q);
  $('live-slots').textContent = `${q.running}/${q.slots}`;
  $('live-waiting').textContent = String(q.waiting);
}

async function pollMetrics() {
  const since = metricsSince();
  const m = await apiJson(`/v1/metrics${since ? `?since=${since}` : ''}`);
  const tps = updateMetrics(m);
  if (tps != null) $('live-tps').textContent = tps.toFixed(tps < 10 ? 1 : 0);
}

async function loadModel() {
  const r = await apiJson('/v1/models');
  const id = r.data && r.data[0] ? r.data[0].id : 'model';
  setModel(id);
  $('model-name').textContent = id;
}

function keyDialog(refused = false) {
  const d = $('key-dialog');
  $('key-error').hidden = !refused;
  $('key-input').value = apiKey();
  if (!d.open) d.showModal();
  $('key-input').focus();
}

function initKey() {
  $('key-button').addEventListener('click', () => keyDialog());
  $('key-form').addEventListener('submit', (e) => {
    e.preventDefault();
    setApiKey($('key-input').value.trim());
    $('key-dialog').close();
  });
  $('key-cancel').addEventListener('click', () => $('key-dialog').close());
  $('key-forget').addEventListener('click', () => {
    $('key-input').value = '';
    setApiKey('');
  });
  onAuth((e) => {
    if (e.needKey) {
      status(e.refused ? 'API key refused' : 'API key needed', 'bad');
      keyDialog(e.refused);
    }
    if (e.keyChanged) {
      loadModel().catch(() => {});
      if (tab === 'agents') refreshAgents();
    }
  });
}

initKey();
initChat();
initMetrics();
initAgents();
window.addEventListener('hashchange', () => showTab(location.hash.slice(1)));
showTab(location.hash.slice(1));
loadModel().catch(() => {});
every(1000, pollQueue);
every(2000, pollMetrics);
every(5000, refreshAgents, () => tab === 'agents');
