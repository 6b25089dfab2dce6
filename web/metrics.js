// metrics.js — the Metrics view: uPlot charts of the last minutes from
// GET /v1/metrics, which the server samples once a second and keeps for
// ten minutes.  The first poll takes the whole history, later ones only
// the samples after the newest one held (?since=).

import { CLASSES, fmtBytes } from './api.js';

const COLORS = { all: '#16a34a', interactive: '#2563eb', tool: '#d97706', background: '#7c3aed' };
const MEM_COLORS = ['#0891b2', '#dc2626', '#16a34a', '#64748b'];
let cols = null; // the server's columns, appended to as samples arrive
let maxSamples = 600;
let windowS = 300;
const charts = {}; // id -> uPlot
const raws = {}; // id -> the values before the log scale dropped zeros
const $ = (id) => document.getElementById(id);

const ratio = (a, b) => (b ? (100 * a) / b : null);
const sum = (c, key, i) => CLASSES.reduce((a, k) => a + c[key][k][i], 0);

// Each chart: its series (a label, a colour, a value per sample index) and
// how its y axis reads.
const CHARTS = [
  {
    id: 'chart-tps',
    series: [
      { label: 'all', color: COLORS.all, get: (c, i) => c.tokens_per_s[i], fill: true },
      ...CLASSES.map((k) => ({ label: k, color: COLORS[k], get: (c, i) => c.class_tokens_per_s[k][i] })),
    ],
    fmt: (v) => v.toFixed(v < 10 ? 1 : 0),
  },
  {
    id: 'chart-ttft',
    series: CLASSES.map((k) => ({ label: k, color: COLORS[k], get: (c, i) => c.ttft_s[k][i], points: true })),
    fmt: (v) => (v < 1 ? `${Math.round(v * 1000)} ms` : `${v.toFixed(1)} s`),
    size: 64,
  },
  {
    id: 'chart-kv',
    series: [
      { label: 'positions used', color: '#2563eb', get: (c, i) => ratio(c.kv_positions_used[i], c.kv_positions[i]), fill: true },
      { label: 'prefix cache', color: '#94a3b8', get: (c, i) => ratio(c.kv_positions_cached[i], c.kv_positions[i]) },
      { label: 'slots busy', color: '#d97706', get: (c, i) => ratio(c.kv_slots_busy[i], c.kv_slots[i]) },
    ],
    range: [0, 100],
    fmt: (v) => `${Math.round(v)}%`,
  },
  {
    id: 'chart-mem',
    series: [
      { label: 'resident', color: MEM_COLORS[0], get: (c, i) => c.resident_bytes[i] },
      { label: 'locked', color: MEM_COLORS[1], get: (c, i) => c.locked_bytes[i] },
      { label: 'committed', color: MEM_COLORS[2], get: (c, i) => c.committed_bytes[i] },
      { label: 'budget', color: MEM_COLORS[3], get: (c, i) => c.budget_bytes[i], dash: true },
    ],
    // A budget of many GiB would flatten a process of a few MiB: log scale
    // (where 0, e.g. nothing locked, has no place and shows as a gap).
    log: true,
    fmt: fmtBytes,
    size: 72,
  },
  {
    id: 'chart-queue',
    series: [
      ...CLASSES.map((k) => ({ label: `waiting ${k}`, color: COLORS[k], get: (c, i) => c.waiting[k][i] })),
      { label: 'running', color: COLORS.all, get: (c, i) => sum(c, 'running', i), fill: true },
      { label: 'paused', color: '#dc2626', get: (c, i) => sum(c, 'paused', i) },
    ],
    fmt: (v) => String(Math.round(v)),
    integer: true,
  },
];

function css(name, fallback) {
  return getComputedStyle(document.documentElement).getPropertyValue(name).trim() || fallback;
}

// Appends new columns (same shape) to cols, keeping at most maxSamples.
function append(fresh) {
  if (!cols) {
    cols = fresh;
    return;
  }
  const walk = (dst, src) => {
    for (const [k, v] of Object.entries(src)) {
      if (Array.isArray(v)) {
        dst[k].push(...v);
        if (dst[k].length > maxSamples) dst[k].splice(0, dst[k].length - maxSamples);
      } else {
        walk(dst[k], v);
      }
    }
  };
  walk(cols, fresh);
}

// uPlot's data for one chart: [t, series...] over the chosen window.  On a
// log scale values <= 0 cannot be drawn; the legend still shows them
// (raw[series][i]).
function chartData(def, raw = []) {
  const t = cols ? cols.t : [];
  let from = 0;
  if (t.length) {
    const cut = t[t.length - 1] - windowS;
    while (from < t.length && t[from] < cut) from++;
  }
  const idx = [];
  for (let i = from; i < t.length; i++) idx.push(i);
  raw.length = 0;
  raw.push(null);
  return [
    idx.map((i) => t[i]),
    ...def.series.map((s) => {
      const values = idx.map((i) => {
        const v = s.get(cols, i);
        return v == null || !isFinite(v) ? null : v;
      });
      raw.push(values);
      return def.log ? values.map((v) => (v != null && v <= 0 ? null : v)) : values;
    }),
  ];
}

// Grid lines of a log2 axis: at most six powers of two, evenly spaced.
function logSplits(u, axis, lo, hi) {
  const a = Math.ceil(Math.log2(lo));
  const b = Math.floor(Math.log2(hi));
  const step = Math.max(1, Math.ceil((b - a) / 5));
  const out = [];
  for (let e = b; e >= a; e -= step) out.unshift(2 ** e);
  return out;
}

// The legend shows the newest values unless the cursor is over the chart.
function legendToLatest(u) {
  const n = u.data[0].length;
  if (n && u.cursor.idx == null) u.setLegend({ idx: n - 1 });
}

function makeChart(def, box, raw) {
  const axis = css('--muted', '#64748b');
  const grid = css('--grid', 'rgba(100,116,139,0.15)');
  const opts = {
    width: Math.max(200, box.clientWidth - 16),
    height: 190,
    scales: {
      x: { time: true },
      y: def.log
        ? { distr: 3, log: 2, range: (u, lo, hi) => [2 ** Math.floor(Math.log2(lo || 1)), 2 ** Math.ceil(Math.log2(hi || 2))] }
        : { range: def.range ? def.range : (u, lo, hi) => [0, hi > 0 ? hi * 1.1 : def.integer ? 4 : 1] },
    },
    series: [
      {},
      ...def.series.map((s) => ({
        label: s.label,
        stroke: s.color,
        width: 2,
        fill: s.fill ? `${s.color}22` : undefined,
        dash: s.dash ? [6, 4] : undefined,
        spanGaps: !!s.points,
        points: s.points ? { show: true, size: 6, fill: s.color } : { show: false },
        value: (u, v, si, i) => {
          const r = i == null || !raw[si] ? v : raw[si][i];
          return r == null ? '–' : def.fmt(r);
        },
      })),
    ],
    axes: [
      { stroke: axis, grid: { stroke: grid }, ticks: { stroke: grid } },
      {
        stroke: axis,
        grid: { stroke: grid },
        ticks: { stroke: grid },
        size: def.size || 56,
        values: (u, vals) => vals.map((v) => (v == null ? '' : def.fmt(v))),
        // Only options that differ: an undefined key would replace uPlot's
        // default (no y ticks at all).
        ...(def.integer ? { incrs: [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000] } : {}),
        ...(def.log ? { splits: logSplits, space: 18 } : {}),
      },
    ],
    legend: { live: true },
  };
  return new window.uPlot(opts, chartData(def, raw), box);
}

function visible() {
  return !$('tab-metrics').hidden;
}

function draw() {
  if (!visible() || !window.uPlot) return;
  for (const def of CHARTS) {
    const box = $(def.id);
    if (!charts[def.id]) {
      raws[def.id] = [];
      charts[def.id] = makeChart(def, box, raws[def.id]);
      legendToLatest(charts[def.id]);
      new ResizeObserver(() => {
        const w = Math.max(200, box.clientWidth - 16);
        if (w !== charts[def.id].width) charts[def.id].setSize({ width: w, height: 190 });
      }).observe(box);
    } else {
      charts[def.id].setData(chartData(def, raws[def.id]));
      legendToLatest(charts[def.id]);
    }
  }
  const last = cols && cols.t.length ? cols.t.length - 1 : -1;
  if (last >= 0) {
    const budget = cols.budget_bytes[last];
    $('metrics-note').textContent =
      `sampled every second by the server · resident ${fmtBytes(cols.resident_bytes[last])}` +
      ` · budget ${budget == null ? 'none' : fmtBytes(budget)}`;
  }
}

// The time of the newest sample held (for ?since=), 0 when none.
export function metricsSince() {
  return cols && cols.t.length ? cols.t[cols.t.length - 1] : 0;
}

// Takes a /v1/metrics reply; returns the newest tokens/s (or null).
export function updateMetrics(m) {
  if (m.window_s && m.interval_s) maxSamples = Math.round(m.window_s / m.interval_s);
  append(m.samples);
  draw();
  const n = cols.tokens_per_s.length;
  return n ? cols.tokens_per_s[n - 1] : null;
}

export function showMetrics() {
  draw();
}

export function initMetrics() {
  $('metrics-window').addEventListener('change', (e) => {
    windowS = Number(e.target.value);
    draw();
  });
  window.__hearth = window.__hearth || {};
  window.__hearth.charts = charts;
}
