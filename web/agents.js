// agents.js — the Agents view: the configured agents from GET /v1/agents
// with their triggers, priority class, engine, output form and last run
// (status and output), the run history of one
// (GET /v1/agents/NAME/runs?limit=N) and a button to run one now
// (POST /v1/agents/NAME/run, with an optional {"input"}).  web/README.md
// has the JSON contract; a server without agents lists none.

import { apiFetch, apiJson, el, fmtAge, fmtTime } from './api.js';
import { renderMarkdown } from './md.js';

const RUNS_LIMIT = 20;
const open = new Set(); // agents whose history is shown
const history = new Map(); // name -> runs, newest first
const expanded = new Set(); // runs whose output is unfolded ("name/id")
const inputs = new Map(); // name -> the input typed for "Run now"
let agents = null;
let error = null;
const $ = (id) => document.getElementById(id);
const DONE = new Set(['succeeded', 'failed', 'interrupted']);
const path = (name) => `/v1/agents/${encodeURIComponent(name)}`;

function triggerText(t) {
  const next = t.next_run_at ? ` · next ${fmtTime(t.next_run_at)}` : '';
  return `${t.type}${t.spec ? ` ${t.spec}` : ''}${next}`;
}

function triggers(a) {
  const ts = Array.isArray(a.triggers) ? a.triggers : [];
  if (!ts.length) return el('span', { class: 'muted', text: 'no triggers (run by hand or the API)' });
  return el('ul', { class: 'triggers' }, ...ts.map((t) => el('li', { class: `trigger trigger-${t.type}`, text: triggerText(t) })));
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
  } else if (!run.error) {
    box.append(el('div', { class: 'muted', text: DONE.has(run.status) ? 'no output' : 'no output yet' }));
  }
  return box;
}

function runSummary(run) {
  const parts = [`#${run.id}`, fmtTime(run.started_at)];
  if (run.trigger) parts.push(run.trigger);
  if (run.attempt > 1) parts.push(`attempt ${run.attempt}`);
  if (run.prompt_tokens != null || run.completion_tokens != null) {
    parts.push(`${run.prompt_tokens ?? '–'} prompt + ${run.completion_tokens ?? '–'} tokens`);
  }
  if (run.started_at && run.finished_at) parts.push(`took ${fmtAge(run.finished_at - run.started_at)}`);
  return ` ${parts.join(' · ')}`;
}

function runLine(agent, run) {
  const key = `${agent}/${run.id}`;
  const d = el(
    'details',
    { class: 'run', 'data-run': run.id, open: expanded.has(key) },
    el('summary', {}, statusBadge(run), runSummary(run)),
    output(run),
  );
  d.addEventListener('toggle', () => (d.open ? expanded.add(key) : expanded.delete(key)));
  return d;
}

function runsBox(a) {
  const runs = history.get(a.id);
  let body;
  if (!runs) body = [el('p', { class: 'muted', text: 'loading…' })];
  else if (runs.error) body = [el('p', { class: 'err', text: `cannot list runs: ${runs.error}` })];
  else if (!runs.length) body = [el('p', { class: 'muted', text: 'no runs yet' })];
  else body = runs.map((r) => runLine(a.id, r));
  return el('div', { class: 'runs' }, ...body);
}

function agentCard(a) {
  const input = el('input', {
    type: 'text',
    class: 'run-input',
    placeholder: 'input (optional)',
    'aria-label': `input for ${a.name || a.id}`,
    value: inputs.get(a.id) || '',
    oninput: (e) => inputs.set(a.id, e.target.value),
  });
  const card = el(
    'article',
    { class: 'agent', 'data-agent': a.id },
    el(
      'header',
      {},
      el('h3', { text: a.name || a.id }),
      el('span', { class: `badge class-${a.class}`, text: a.class }),
      a.enabled === false ? el('span', { class: 'badge muted', text: 'disabled' }) : null,
      el('span', { class: 'grow' }),
      input,
      el('button', { type: 'button', class: 'small run-now', disabled: a.enabled === false, onclick: () => runNow(a.id) }, 'Run now'),
      el('button', { type: 'button', class: 'small show-runs', onclick: () => toggle(a.id) }, open.has(a.id) ? 'Hide runs' : 'Runs'),
    ),
    a.description ? el('p', { class: 'muted', text: a.description }) : null,
    el(
      'div',
      { class: 'meta' },
      el('span', { text: `engine: ${a.engine || 'local'}` }),
      el('span', { text: ` · output: ${a.output || 'text'}` }),
      Array.isArray(a.tools) && a.tools.length ? el('span', { text: ` · tools: ${a.tools.join(', ')}` }) : null,
    ),
    el('div', { class: 'meta' }, el('span', { text: 'triggers: ' }), triggers(a)),
    el(
      'div',
      { class: 'last' },
      el('span', { text: 'last run: ' }),
      statusBadge(a.last_run),
      a.last_run ? runSummary(a.last_run) : '',
    ),
  );
  if (a.last_run && (a.last_run.output || a.last_run.error)) card.append(output(a.last_run));
  if (open.has(a.id)) card.append(runsBox(a));
  return card;
}

function render() {
  const box = $('agents');
  const notice = error ? el('p', { class: 'err', id: 'agents-error', text: error }) : null;
  if (!agents) {
    box.replaceChildren(notice || el('p', { class: 'muted', text: 'loading…' }));
    return;
  }
  if (!agents.length) {
    box.replaceChildren(
      ...[notice].filter(Boolean),
      el(
        'div',
        { class: 'empty-state', id: 'agents-empty' },
        el('h3', { text: 'No agents configured' }),
        el('p', { class: 'muted', text: 'Agents this server runs show here with their triggers, class, last run and output, and a button to run one now.' }),
      ),
    );
    return;
  }
  // Keep the focus (and the caret) of an input being typed in.
  const focused = document.activeElement && document.activeElement.closest('.agent[data-agent] .run-input');
  const focusedAgent = focused ? focused.closest('.agent').dataset.agent : null;
  box.replaceChildren(...[notice].filter(Boolean), ...agents.map(agentCard));
  if (focusedAgent != null) {
    for (const card of box.querySelectorAll('.agent[data-agent]')) {
      if (card.dataset.agent !== focusedAgent) continue;
      const input = card.querySelector('.run-input');
      input.focus();
      input.setSelectionRange(input.value.length, input.value.length);
    }
  }
}

async function loadRuns(name) {
  try {
    const r = await apiJson(`${path(name)}/runs?limit=${RUNS_LIMIT}`);
    history.set(name, Array.isArray(r.data) ? r.data : []);
  } catch (e) {
    if (e.status === 401) throw e;
    history.set(name, Object.assign([], { error: e.message }));
  }
}

async function toggle(name) {
  if (open.has(name)) {
    open.delete(name);
    render();
    return;
  }
  open.add(name);
  render();
  await loadRuns(name).catch(() => {});
  render();
}

// Queues a run and follows it (its history open) until it is over.
async function runNow(name) {
  const text = (inputs.get(name) || '').trim();
  let run;
  try {
    const res = await apiFetch(`${path(name)}/run`, {
      method: 'POST',
      headers: text ? { 'Content-Type': 'application/json' } : {},
      body: text ? JSON.stringify({ input: text }) : undefined,
    });
    run = await res.json();
  } catch (e) {
    error = `cannot run ${name}: ${e.message}`;
    render();
    return;
  }
  error = null;
  inputs.delete(name);
  open.add(name);
  const runs = history.get(name);
  history.set(name, [run, ...(Array.isArray(runs) && !runs.error ? runs.filter((r) => r.id !== run.id) : [])]);
  render();
  for (let k = 0; k < 600; k++) {
    await new Promise((r) => setTimeout(r, 1000));
    try {
      await refreshAgents();
    } catch {
      break;
    }
    const now = (history.get(name) || []).find((r) => r.id === run.id);
    if (!open.has(name) || (now && DONE.has(now.status))) break;
  }
}

// Reloads the list and the history of every agent whose runs are shown.
export async function refreshAgents() {
  try {
    const r = await apiJson('/v1/agents');
    agents = Array.isArray(r.data) ? r.data : [];
    for (const name of open) if (agents.some((a) => a.id === name)) await loadRuns(name);
    error = null;
  } catch (e) {
    if (e.status !== 401) error = `cannot list agents: ${e.message}`;
  }
  render();
}

export function initAgents() {
  render();
}
