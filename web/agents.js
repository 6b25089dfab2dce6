// agents.js — the Agents view: the configured agents from GET /v1/agents
// with their trigger, priority class and last run (status and output), the
// run history of one (GET /v1/agents/ID/runs) and a button to run one now
// (POST /v1/agents/ID/runs).  web/README.md has the JSON contract; until
// the agents runtime serves it the list is empty.

import { apiFetch, apiJson, el, fmtTime } from './api.js';
import { renderMarkdown } from './md.js';

const open = new Set(); // agents whose history is shown
const history = new Map(); // id -> runs
const expanded = new Set(); // runs whose output is unfolded
let agents = null;
let error = null;
const $ = (id) => document.getElementById(id);
const DONE = new Set(['succeeded', 'failed', 'cancelled']);

function trigger(t) {
  if (!t) return 'manual';
  const next = t.next_run_at ? ` · next ${fmtTime(t.next_run_at)}` : '';
  return `${t.type || 'manual'}${t.spec ? ` ${t.spec}` : ''}${next}`;
}

function statusBadge(run) {
  return el('span', { class: `badge run-${run ? run.status : 'none'}`, text: run ? run.status : 'never run' });
}

function output(run) {
  const box = el('div', { class: 'run-output' });
  if (run.error) box.append(el('div', { class: 'err', text: run.error }));
  if (run.output) {
    const md = el('div', { class: 'body' });
    md.innerHTML = renderMarkdown(run.output); // escaped by md.js
    box.append(md);
  }
  return box;
}

function runLine(run) {
  const tokens = run.completion_tokens != null ? ` · ${run.completion_tokens} tokens` : '';
  const d = el(
    'details',
    { class: 'run', 'data-run': run.id, open: expanded.has(run.id) },
    el('summary', {}, statusBadge(run), ` ${run.id} · ${fmtTime(run.started_at)}${run.trigger ? ` · ${run.trigger}` : ''}${tokens}`),
    output(run),
  );
  d.addEventListener('toggle', () => (d.open ? expanded.add(run.id) : expanded.delete(run.id)));
  return d;
}

function agentCard(a) {
  const runs = history.get(a.id);
  const card = el(
    'article',
    { class: 'agent', 'data-agent': a.id },
    el(
      'header',
      {},
      el('h3', { text: a.name || a.id }),
      el('span', { class: `badge class-${a.class}`, text: a.class || 'background' }),
      a.enabled === false ? el('span', { class: 'badge muted', text: 'disabled' }) : null,
      el('span', { class: 'grow' }),
      el('button', { type: 'button', class: 'small run-now', onclick: () => runNow(a.id) }, 'Run now'),
      el('button', { type: 'button', class: 'small', onclick: () => toggle(a.id) }, open.has(a.id) ? 'Hide runs' : 'Runs'),
    ),
    a.description ? el('p', { class: 'muted', text: a.description }) : null,
    el('div', { class: 'meta' }, el('span', { text: `trigger: ${trigger(a.trigger)}` })),
    el('div', { class: 'last' }, el('span', { text: 'last run: ' }), statusBadge(a.last_run), a.last_run ? ` ${fmtTime(a.last_run.finished_at || a.last_run.started_at)}` : ''),
  );
  if (a.last_run && (a.last_run.output || a.last_run.error)) card.append(output(a.last_run));
  if (open.has(a.id)) {
    card.append(
      el('div', { class: 'runs' }, ...(runs ? (runs.length ? runs.map(runLine) : [el('p', { class: 'muted', text: 'no runs yet' })]) : [el('p', { class: 'muted', text: 'loading…' })])),
    );
  }
  return card;
}

function render() {
  const box = $('agents');
  if (error) {
    box.replaceChildren(el('p', { class: 'err', text: `cannot list agents: ${error}` }));
    return;
  }
  if (!agents) {
    box.replaceChildren(el('p', { class: 'muted', text: 'loading…' }));
    return;
  }
  if (!agents.length) {
    box.replaceChildren(
      el(
        'div',
        { class: 'empty-state', id: 'agents-empty' },
        el('h3', { text: 'No agents configured' }),
        el('p', { class: 'muted', text: 'Agents this server runs show here with their trigger, class, last run and output, and a button to run one now.' }),
      ),
    );
    return;
  }
  box.replaceChildren(...agents.map(agentCard));
}

async function loadRuns(id) {
  const r = await apiJson(`/v1/agents/${encodeURIComponent(id)}/runs?limit=20`);
  history.set(id, r.data || []);
}

async function toggle(id) {
  if (open.has(id)) {
    open.delete(id);
    render();
    return;
  }
  open.add(id);
  render();
  try {
    await loadRuns(id);
  } catch (e) {
    history.set(id, [{ id: '–', status: 'failed', error: e.message }]);
  }
  render();
}

async function runNow(id) {
  try {
    await apiFetch(`/v1/agents/${encodeURIComponent(id)}/runs`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: '{}',
    });
  } catch (e) {
    error = e.message;
    render();
    error = null;
    return;
  }
  open.add(id);
  // Follow the run until it is over.
  for (let k = 0; k < 600; k++) {
    try {
      await loadRuns(id);
      await refreshAgents();
    } catch {
      break;
    }
    const runs = history.get(id) || [];
    if (runs.length && DONE.has(runs[0].status)) break;
    await new Promise((r) => setTimeout(r, 1000));
  }
}

export async function refreshAgents() {
  try {
    const r = await apiJson('/v1/agents');
    agents = Array.isArray(r.data) ? r.data : [];
    error = null;
  } catch (e) {
    if (e.status !== 401) error = e.message;
  }
  render();
}

export function initAgents() {
  render();
}
