#!/usr/bin/env node
// dashboard.test.mjs — the web dashboard in a real browser: playwright-core
// driving Debian's chromium (headless) against a real `hearth serve` on
// loopback, started with --api-key.
//
// The browser may reach 127.0.0.1 only: every other request is aborted by
// a route and recorded (and chromium resolves no other host), and the last
// test asserts that nothing tried to leave.  The model is a random-weight
// llama (hearth synth, 8 layers of dim 512, Q4_0) served with the ChatML
// template: slow enough on one thread that a reply visibly streams and
// background work stays in the queue while the page looks at it.
//
// Screenshots go to build/web-test/ (test artifacts, not committed).
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { chromium } from 'playwright-core';

import { check, failed, report, root, startServer, synthModel, test } from '../server/lib.mjs';

const KEY = 'web-test-key';
const AUTH = { Authorization: `Bearer ${KEY}` };
const artifacts = join(root, 'build/web-test');
const chromiumPath = process.env.CHROMIUM || '/usr/bin/chromium';
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
mkdirSync(artifacts, { recursive: true });

const model = synthModel('llama-d512', 'q4_0');
const server = await startServer([
  '-m', model, '--chat-template', 'chatml', '--api-key', KEY, '--alias', 'd512',
  '--parallel', '2', '--ctx', '2048', '-t', '1',
]);
const url = server.url;
const profile = mkdtempSync(join(tmpdir(), 'hearth-chromium-'));
let context = null;

// What the browser did: every request, those that tried to leave loopback,
// uncaught errors and console errors (CSP violations among them).
const requests = [];
const leftLoopback = [];
const pageErrors = [];
const consoleErrors = [];

async function queue() {
  return (await fetch(`${url}/v1/queue`, { headers: AUTH })).json();
}

// Streams a completion from Node until it ends or ctl aborts it.
function backgroundStream(body, ctl) {
  return (async () => {
    try {
      const res = await fetch(`${url}/v1/completions`, {
        method: 'POST',
        headers: { ...AUTH, 'Content-Type': 'application/json' },
        body: JSON.stringify({ ...body, stream: true }),
        signal: ctl.signal,
      });
      for await (const chunk of res.body) void chunk;
    } catch (e) {
      if (e.name !== 'AbortError') throw e;
    }
  })();
}

try {
  await test('web/static_files_open_data_endpoints_need_the_key', async () => {
    for (const [path, type] of [
      ['/', 'text/html'],
      ['/app.js', 'text/javascript'],
      ['/style.css', 'text/css'],
      ['/vendor/uPlot.iife.min.js', 'text/javascript'],
    ]) {
      const r = await fetch(url + path);
      check(r.status === 200 && r.headers.get('content-type').startsWith(type), `${path}: ${r.status}`);
      check(/script-src 'self'/.test(r.headers.get('content-security-policy') || ''), `${path}: no CSP`);
    }
    for (const path of ['/v1/queue', '/v1/metrics', '/v1/agents', '/v1/models', '/metrics']) {
      const r = await fetch(url + path);
      check(r.status === 401, `${path} without the key: ${r.status}`);
      const ok = await fetch(url + path, { headers: AUTH });
      check(ok.status === 200, `${path} with the key: ${ok.status}`);
    }
    const agents = await (await fetch(`${url}/v1/agents`, { headers: AUTH })).json();
    check(agents.object === 'list' && Array.isArray(agents.data) && agents.data.length === 0, 'agents list');
    const none = await fetch(`${url}/nothing.js`);
    check(none.status === 404, 'unknown file');
  });

  context = await chromium.launchPersistentContext(profile, {
    executablePath: chromiumPath,
    headless: true,
    args: [
      '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync',
      '--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1',
    ],
    viewport: { width: 1400, height: 900 },
    serviceWorkers: 'block',
  });
  await context.route('**/*', (route) => {
    const u = new URL(route.request().url());
    if (u.hostname === '127.0.0.1') return route.continue();
    leftLoopback.push(u.href);
    return route.abort('internetdisconnected');
  });
  context.on('request', (r) => requests.push(r.url()));
  const page = context.pages()[0] || (await context.newPage());
  page.on('pageerror', (e) => pageErrors.push(e.message));
  page.on('console', (m) => {
    // 401s before the key is entered are expected; nothing else is.
    if (m.type() === 'error' && !/status of 401/.test(m.text())) consoleErrors.push(m.text());
  });
  const shot = (name) => page.screenshot({ path: join(artifacts, `${name}.png`), fullPage: false });

  await test('web/page_loads_offline_and_asks_for_the_key_once', async () => {
    await page.goto(`${url}/`);
    await page.waitForSelector('#key-dialog[open]', { timeout: 10000 });
    await shot('key-dialog');
    await page.fill('#key-input', KEY);
    await page.click('#key-form button[type=submit]');
    await page.waitForFunction(() => document.getElementById('model-name').textContent === 'd512', null, { timeout: 10000 });
    await page.waitForFunction(() => document.getElementById('live-status').textContent === 'live', null, { timeout: 10000 });
    const where = await page.evaluate(() => ({
      session: sessionStorage.getItem('hearth.apiKey'),
      local: Object.keys(localStorage).filter((k) => localStorage.getItem(k).includes('web-test-key')),
    }));
    check(where.session === KEY && where.local.length === 0, `key kept in ${JSON.stringify(where)}`);
    // A reload keeps the session's key: no second prompt.
    await page.reload();
    await page.waitForFunction(() => document.getElementById('live-status').textContent === 'live', null, { timeout: 10000 });
    check(!(await page.isVisible('#key-dialog')), 'asked for the key again');
  });

  await test('web/chat_streams_a_reply_with_counts_and_speed', async () => {
    await page.click('a[data-tab=chat]');
    await page.fill('#s-temperature', '0');
    await page.fill('#s-max_tokens', '160');
    await page.fill('#s-user', 'web-test');
    await page.selectOption('#priority', 'interactive');
    // Record the reply's length at every change of the DOM while it streams.
    await page.evaluate(() => {
      window.__lens = [];
      window.__stopEnabled = false;
      const box = document.getElementById('messages');
      new MutationObserver(() => {
        const body = box.querySelector('.msg.assistant.streaming .body');
        if (!body) return;
        window.__lens.push(body.textContent.length);
        if (!document.getElementById('stop').disabled) window.__stopEnabled = true;
      }).observe(box, { subtree: true, childList: true, characterData: true });
    });
    await page.fill('#prompt', 'Tell me about the hearth.');
    await page.press('#prompt', 'Enter');
    await page.waitForSelector('.msg.assistant:not(.streaming) .stats:has-text("tok/s")', { timeout: 30000 });
    const seen = await page.evaluate(() => ({ lens: [...new Set(window.__lens)], stop: window.__stopEnabled }));
    const partial = seen.lens.filter((n) => n > 0);
    check(partial.length >= 3, `the reply did not stream: lengths seen ${JSON.stringify(seen.lens)}`);
    check(seen.stop, 'the stop button was not enabled while streaming');
    const stats = await page.textContent('.msg.assistant:last-child .stats');
    check(/interactive/.test(stats) && /\d+ prompt tokens/.test(stats) && /\d+ tokens/.test(stats), stats);
    check(/first token \d+ ms/.test(stats) && /[\d.]+ tok\/s/.test(stats), stats);
    const reply = await page.textContent('.msg.assistant:last-child .body');
    check(reply.trim().length > 0, 'empty reply');
    check(await page.isDisabled('#stop'), 'stop still enabled');
    await shot('chat');
  });

  await test('web/stop_button_ends_the_reply_and_the_sequence', async () => {
    await page.fill('#s-max_tokens', '1800');
    await page.fill('#prompt', 'Now a long one, please.');
    await page.click('#send');
    await page.waitForFunction(
      () => {
        const b = document.querySelector('.msg.assistant.streaming .body');
        return b && b.textContent.length > 40;
      },
      null,
      { timeout: 20000 },
    );
    await page.click('#stop');
    await page.waitForSelector('.msg.assistant:last-child .stats:has-text("stopped")', { timeout: 10000 });
    let q;
    for (let i = 0; i < 40; i++) {
      q = await queue();
      if (q.sequences.length === 0) break;
      await sleep(50);
    }
    check(q.sequences.length === 0, `the server still runs ${JSON.stringify(q.sequences)}`);
    await page.fill('#s-max_tokens', '160');
  });

  await test('web/conversation_survives_a_reload', async () => {
    const before = await page.$$eval('#messages .msg', (n) => n.map((m) => m.className + m.textContent.length));
    await page.reload();
    await page.waitForSelector('#messages .msg');
    const after = await page.$$eval('#messages .msg', (n) => n.map((m) => m.className + m.textContent.length));
    check(before.length === 4 && JSON.stringify(before) === JSON.stringify(after), `${before} vs ${after}`);
  });

  await test('web/markdown_and_code_render_safely', async () => {
    const reply = [
      'Here is **bold**, *italic* and `inline <code>`.',
      '',
      '```c',
      'int main(void) { return 1 < 2; }',
      '```',
      '',
      '| class | waits |',
      '|---|--:|',
      '| interactive | 0 ms |',
      '',
      '- one',
      '- two',
      '',
      '<img src=x onerror="window.__pwned=1"> [click](javascript:window.__pwned=2)',
    ].join('\n');
    await page.evaluate((text) => {
      const c = JSON.parse(localStorage.getItem('hearth.conversation'));
      c.push({ role: 'user', content: 'Show me <b>markdown</b>' }, { role: 'assistant', content: text, stats: null });
      localStorage.setItem('hearth.conversation', JSON.stringify(c));
    }, reply);
    await page.reload();
    const last = '#messages .msg.assistant:last-child';
    await page.waitForSelector(`${last} .code-block pre code.language-c`);
    check((await page.textContent(`${last} pre code`)) === 'int main(void) { return 1 < 2; }', 'code text');
    check((await page.$$(`${last} table td`)).length === 2, 'table');
    check((await page.$$(`${last} ul li`)).length === 2, 'list');
    check((await page.textContent(`${last} strong`)) === 'bold', 'bold');
    check((await page.$$('#messages img, #messages a[href^="javascript"], #messages b')).length === 0, 'markup from text');
    check((await page.evaluate(() => window.__pwned)) === undefined, 'script ran');
    check((await page.textContent('#messages .msg.user:nth-last-child(2) .body')) === 'Show me <b>markdown</b>', 'user text');
    await page.evaluate(() => document.querySelector('#messages .msg.assistant:last-child').scrollIntoView());
    await shot('chat-markdown');
  });

  // Background load from Node (not the page): four background streams and
  // a tool stream on two slots, then an interactive request.
  const load = new AbortController();
  const streams = [];
  await test('web/queue_shows_rows_by_class_and_preemptions', async () => {
    await page.click('a[data-tab=queue]');
    for (let i = 0; i < 4; i++) {
      streams.push(backgroundStream({ prompt: `Background job ${i} writes`, max_tokens: 1800, priority: 'background', user: 'batch-bot' }, load));
    }
    await sleep(300);
    streams.push(backgroundStream({ prompt: 'A tool call', max_tokens: 1800, priority: 'tool', user: 'tool-runner' }, load));
    await page.waitForFunction(
      () => {
        const bg = document.querySelectorAll('.qgroup[data-class=background] tr.seq');
        const tool = document.querySelectorAll('.qgroup[data-class=tool] tr.seq');
        return bg.length >= 3 && tool.length === 1;
      },
      null,
      { timeout: 15000 },
    );
    const bgRows = await page.$$eval('.qgroup[data-class=background] tr.seq', (r) => r.map((x) => x.textContent));
    check(bgRows.every((t) => t.includes('batch-bot')), `submitter missing: ${bgRows}`);
    check(bgRows.some((t) => t.includes('waiting')), `no waiting row: ${bgRows}`);
    check((await page.textContent('.qgroup[data-class=tool] tr.seq')).includes('tool-runner'), 'tool row');
    // An interactive request: no slot is free, so a background one is evicted.
    const r = await fetch(`${url}/v1/completions`, {
      method: 'POST',
      headers: { ...AUTH, 'Content-Type': 'application/json', 'X-Hearth-User': 'alice' },
      body: JSON.stringify({ prompt: 'Quick question from a person', max_tokens: 48 }),
    });
    check(r.status === 200, `interactive: ${r.status}`);
    await page.waitForFunction(
      () => Number(document.querySelector('#evictions-total .value').textContent) >= 2 &&
        Number(document.querySelector('#preemptions-total .value').textContent) >= 1,
      null,
      { timeout: 10000 },
    );
    await page.waitForSelector('#queue-events li.ev-evict', { timeout: 5000 });
    const events = await page.textContent('#queue-events');
    check(/evicted/.test(events), events);
    await shot('queue');
  });

  await test('web/metrics_plots_render_non_empty', async () => {
    await page.click('a[data-tab=metrics]');
    await sleep(2500); // two metrics polls with the load running
    const charts = await page.evaluate(() => {
      const out = {};
      for (const [id, u] of Object.entries(window.__hearth.charts)) {
        const c = u.ctx.canvas;
        const img = u.ctx.getImageData(0, 0, c.width, c.height).data;
        let coloured = 0; // saturated pixels: series, not the grey axes and grid
        for (let i = 0; i < img.length; i += 4) {
          if (img[i + 3] > 128 && Math.max(img[i], img[i + 1], img[i + 2]) - Math.min(img[i], img[i + 1], img[i + 2]) > 60) coloured++;
        }
        out[id] = {
          points: u.data.slice(1).map((s) => s.filter((v) => v != null).length),
          max: u.data.slice(1).map((s) => Math.max(0, ...s.filter((v) => v != null))),
          coloured,
        };
      }
      return out;
    });
    const ids = ['chart-tps', 'chart-ttft', 'chart-kv', 'chart-mem', 'chart-queue'];
    for (const id of ids) {
      check(charts[id], `${id} missing`);
      check(charts[id].coloured > 100, `${id} draws nothing: ${JSON.stringify(charts[id])}`);
    }
    check(charts['chart-tps'].points[0] >= 3 && charts['chart-tps'].max[0] > 0, `tokens/s ${JSON.stringify(charts['chart-tps'])}`);
    check(charts['chart-ttft'].points.reduce((a, b) => a + b, 0) >= 1, `ttft ${JSON.stringify(charts['chart-ttft'])}`);
    check(charts['chart-kv'].max[0] > 0, `kv ${JSON.stringify(charts['chart-kv'])}`);
    check(charts['chart-mem'].points[0] >= 3 && charts['chart-mem'].max[0] > 1e6, `memory ${JSON.stringify(charts['chart-mem'])}`);
    check(charts['chart-queue'].max.some((m) => m > 0), `queue ${JSON.stringify(charts['chart-queue'])}`);
    await shot('metrics');
  });
  load.abort();
  await Promise.allSettled(streams);

  await test('web/agents_panel_renders_empty', async () => {
    await page.click('a[data-tab=agents]');
    await page.waitForSelector('#agents-empty', { timeout: 10000 });
    check((await page.textContent('#agents-empty')).includes('No agents configured'), 'empty state');
    await shot('agents-empty');
  });

  await test('web/agents_panel_runs_one_against_the_contract_stub', async () => {
    // The agents runtime does not exist yet: a stub of the documented
    // contract (web/README.md) stands in for /v1/agents.
    const t = Date.now() / 1000;
    const runs = [{
      id: 'run-1', agent_id: 'digest', status: 'succeeded', trigger: 'schedule', started_at: t - 3600,
      finished_at: t - 3590, prompt_tokens: 210, completion_tokens: 96, output: 'Yesterday: **3** issues closed.', error: null,
    }];
    const auth = [];
    const agent = () => ({
      id: 'digest', name: 'Morning digest', description: 'Summarises yesterday\'s issues.',
      trigger: { type: 'schedule', spec: '0 7 * * *', next_run_at: t + 3600 }, class: 'background', enabled: true,
      last_run: runs[0],
    });
    await page.route((u) => u.pathname.startsWith('/v1/agents'), async (route) => {
      const req = route.request();
      const path = new URL(req.url()).pathname;
      auth.push(req.headers().authorization);
      const json = (status, body) => route.fulfill({ status, contentType: 'application/json', body: JSON.stringify(body) });
      if (path === '/v1/agents') return json(200, { object: 'list', data: [agent()] });
      if (path === '/v1/agents/digest/runs' && req.method() === 'POST') {
        runs.unshift({ id: 'run-2', agent_id: 'digest', status: 'running', trigger: 'manual', started_at: Date.now() / 1000,
          finished_at: null, prompt_tokens: 210, completion_tokens: null, output: '', error: null });
        return json(202, runs[0]);
      }
      if (path === '/v1/agents/digest/runs') {
        const body = { object: 'list', data: runs.map((r) => ({ ...r })) };
        if (runs[0].status === 'running') {
          Object.assign(runs[0], { status: 'succeeded', finished_at: Date.now() / 1000, completion_tokens: 12, output: 'Ran **now**: all quiet.' });
        }
        return json(200, body);
      }
      return json(404, { error: { message: 'no such agent', type: 'invalid_request_error', param: 'agent', code: 'agent_not_found' } });
    });
    await page.reload();
    await page.waitForSelector('.agent[data-agent=digest]', { timeout: 10000 });
    const card = await page.textContent('.agent[data-agent=digest]');
    check(/Morning digest/.test(card) && /0 7 \* \* \*/.test(card) && /background/.test(card) && /succeeded/.test(card), card);
    await page.click('.agent[data-agent=digest] .run-now');
    await page.waitForSelector('.agent[data-agent=digest] details.run[data-run=run-2] .badge.run-succeeded', { timeout: 10000 });
    await page.click('details.run[data-run=run-2] summary');
    await page.waitForSelector('details.run[data-run=run-2] .run-output strong');
    check((await page.textContent('details.run[data-run=run-2] .run-output')).includes('all quiet'), 'run output');
    check(auth.length > 0 && auth.every((a) => a === `Bearer ${KEY}`), `agents calls without the key: ${auth}`);
    await shot('agents-stub');
    await page.unroute((u) => u.pathname.startsWith('/v1/agents'));
  });

  await test('web/nothing_left_loopback_and_no_page_errors', () => {
    check(requests.length > 20, `only ${requests.length} requests seen`);
    const away = requests.filter((r) => !r.startsWith(`${url}/`) && !r.startsWith('data:'));
    check(leftLoopback.length === 0 && away.length === 0, `left loopback: ${[...leftLoopback, ...away].join(' ')}`);
    check(pageErrors.length === 0, `page errors: ${pageErrors.join(' | ')}`);
    check(consoleErrors.length === 0, `console errors: ${consoleErrors.join(' | ')}`);
  });
} catch (e) {
  report('web/dashboard (setup)', false, e && e.stack ? e.stack : e);
} finally {
  if (context) await context.close().catch(() => {});
  rmSync(profile, { recursive: true, force: true });
  const r = await server.stop();
  if (r.code !== 0) report('web/server_exit_status', false, `exit ${r.code} ${r.signal}: ${r.stderr.slice(-2000)}`);
}

process.exit(failed() ? 1 : 0);
