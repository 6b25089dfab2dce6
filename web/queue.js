// queue.js — the Queue view: running and waiting sequences from
// GET /v1/queue, grouped by priority class, with their state, age, tokens
// so far and who submitted them; and a log of scheduler events seen
// between polls (arrivals, preemptions, evictions, departures).

import { CLASSES, el, fmtAge } from './api.js';

const MAX_EVENTS = 100;
let previous = null; // Map id -> sequence, from the last poll
let lastTotals = null;
const events = [];
const $ = (id) => document.getElementById(id);

const plural = (n, what) => `${n} ${what}${n === 1 ? '' : 's'}`;

function card(label, value, cls, id) {
  return el('div', { class: `card${cls ? ` ${cls}` : ''}`, id }, el('div', { class: 'value', text: String(value) }), el('div', { class: 'label', text: label }));
}

function stateBadge(seq) {
  return el('span', { class: `badge state-${seq.state}`, text: seq.state });
}

function row(seq) {
  const aged = seq.effective_class !== seq.class ? el('span', { class: 'aged', text: ` ↑ ${seq.effective_class}` }) : null;
  const tokens = `${seq.generated_tokens} / ${seq.prompt_tokens}${seq.cached_tokens ? ` (${seq.cached_tokens} cached)` : ''}`;
  const pre = [];
  if (seq.paused_steps) pre.push(`paused ${plural(seq.paused_steps, 'step')}`);
  if (seq.evictions) pre.push(`evicted ${seq.evictions}×`);
  return el(
    'tr',
    { class: `seq state-${seq.state}`, 'data-id': seq.id, 'data-class': seq.class },
    el('td', { class: 'mono', text: seq.id }),
    el('td', {}, stateBadge(seq), aged),
    el('td', { class: 'num', text: fmtAge(seq.age_s) }),
    el('td', { class: 'num', text: tokens }),
    el('td', { class: 'user', text: seq.user || '–' }),
    el('td', { class: pre.length ? 'preempted' : 'muted', text: pre.join(', ') || '–' }),
    el('td', { class: 'num', text: seq.slot == null ? '–' : String(seq.slot) }),
  );
}

function group(cls, seqs) {
  const running = seqs.filter((s) => s.slot != null).length;
  const head = el(
    'tr',
    {},
    ...['sequence', 'state', 'age', 'generated / prompt', 'submitted by', 'preemptions', 'slot'].map((h) => el('th', { text: h })),
  );
  const body = el('tbody', {}, ...seqs.map(row));
  if (!seqs.length) body.append(el('tr', { class: 'none' }, el('td', { colspan: '7', class: 'muted', text: 'nothing' })));
  return el(
    'div',
    { class: `qgroup class-${cls}`, 'data-class': cls },
    el('h3', {}, el('span', { class: `dot class-${cls}` }), `${cls} `, el('span', { class: 'muted', text: `${running} running, ${seqs.length - running} waiting` })),
    el('table', { class: 'grid' }, el('thead', {}, head), body),
  );
}

function log(kind, text) {
  events.unshift({ t: new Date(), kind, text });
  if (events.length > MAX_EVENTS) events.length = MAX_EVENTS;
}

// What changed since the last poll.  Pauses and evictions are counted per
// sequence; the server's totals catch those of sequences that came and
// went between two polls.
function diff(q) {
  const now = new Map(q.sequences.map((s) => [s.id, s]));
  let seenPaused = 0;
  let seenEvicted = 0;
  if (previous) {
    for (const s of q.sequences) {
      const who = `${s.id} (${s.class}${s.user ? `, ${s.user}` : ''})`;
      const p = previous.get(s.id);
      if (!p) {
        log('arrive', `${who} ${s.slot != null ? 'started' : 'queued'}`);
        seenPaused += s.paused_steps;
        seenEvicted += s.evictions;
        continue;
      }
      seenPaused += s.paused_steps - p.paused_steps;
      seenEvicted += s.evictions - p.evictions;
      if (s.evictions > p.evictions) log('evict', `${who} evicted: back in the queue for a higher class`);
      if (s.paused_steps > p.paused_steps) {
        log('preempt', `${who} paused ${plural(s.paused_steps - p.paused_steps, 'step')} for a higher class`);
      } else if (s.state === 'paused' && p.state !== 'paused') {
        log('preempt', `${who} paused for a higher class`);
      }
      if (p.slot == null && s.slot != null) log('start', `${who} got slot ${s.slot}`);
    }
    for (const [id, p] of previous) {
      if (!now.has(id)) log('leave', `${id} (${p.class}${p.user ? `, ${p.user}` : ''}) left after ${plural(p.generated_tokens, 'token')}`);
    }
  }
  if (lastTotals) {
    const dp = q.preemptions_total - lastTotals.preemptions_total - seenPaused;
    const de = q.evictions_total - lastTotals.evictions_total - seenEvicted;
    if (dp > 0) log('preempt', `${plural(dp, 'more sequence-step')} paused for a higher class (between polls)`);
    if (de > 0) log('evict', `${plural(de, 'more eviction')} (between polls)`);
  }
  previous = now;
  lastTotals = { preemptions_total: q.preemptions_total, evictions_total: q.evictions_total };
}

export function updateQueue(q) {
  diff(q);
  $('queue-cards').replaceChildren(
    card('running', `${q.running} / ${q.slots}`),
    card('waiting', q.waiting, q.waiting ? 'warn' : ''),
    card('paused now', q.paused, q.paused ? 'warn' : ''),
    card('preemptions', q.preemptions_total, q.preemptions_total ? 'hot' : '', 'preemptions-total'),
    card('evictions', q.evictions_total, q.evictions_total ? 'hot' : '', 'evictions-total'),
  );
  $('queue-groups').replaceChildren(...CLASSES.map((c) => group(c, q.sequences.filter((s) => s.class === c))));
  $('queue-events').replaceChildren(
    ...events.map((e) => el('li', { class: `ev-${e.kind}` }, el('time', { text: e.t.toLocaleTimeString() }), ` ${e.text}`)),
  );
  if (!events.length) $('queue-events').append(el('li', { class: 'muted', text: 'nothing yet' }));
  const n = q.running + q.waiting;
  $('nav-queue').textContent = n ? String(n) : '';
}
