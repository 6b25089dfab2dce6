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
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { chromium } from 'playwright-core';

import { bin, check, failed, report, root, scratch, startServer, synthModel, test } from '../server/lib.mjs';

const KEY = 'web-test-key';
const AUTH = { Authorization: `Bearer ${KEY}` };
const artifacts = join(root, 'build/web-test');
const chromiumPath = process.env.CHROMIUM || '/usr/bin/chromium';
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
mkdirSync(artifacts, { recursive: true });

// Agents to serve (hearth serve --agents FILE), when this hearth has them:
// HEARTH_WEB_AGENTS, else a small file written here (its store and data
// folder land beside it, in the scratch folder).
function agentsFile() {
  if (process.env.HEARTH_WEB_AGENTS) return process.env.HEARTH_WEB_AGENTS;
  const help = spawnSync(bin, ['serve', '--help'], { encoding: 'utf8' });
  if (!/--agents\b/.test(`${help.stdout}${help.stderr}`)) return null;
  const dir = join(scratch, 'agents');
  mkdirSync(dir, { recursive: true });
  const file = join(dir, 'agents.yaml');
  writeFileSync(file, [
    'store: web.db',
    'workers: 1',
    'agents:',
    '  - name: notes',
    '    description: Writes a short note when asked.',
    '    class: tool',
    '    prompt: You write a short note about the hearth.',
    '    triggers: [api, {daily: "07:30"}]',
    '    limits: {max_tokens: 24}',
    '',
  ].join('\n'));
  return file;
}
const agents = agentsFile();

const model = synthModel('llama-d512', 'q4_0');
const server = await startServer([
  '-m', model, '--chat-template', 'chatml', '--api-key', KEY, '--alias', 'd512',
  '--parallel', '2', '--ctx', '2048', '-t', '1',
  ...(agents ? ['--agents', agents] : []),
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
    check(agents.object === 'list' && Array.isArray(agents.data), 'agents list');
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
    check(await page.isHidden('#key-error'), 'a refusal shown before any key was sent');
    await shot('key-dialog');
    // A wrong key: refused, dropped from the session and asked for again.
    await page.fill('#key-input', 'not-the-key');
    await page.click('#key-form button[type=submit]');
    await page.waitForSelector('#key-dialog[open] #key-error:not([hidden])', { timeout: 10000 });
    check((await page.textContent('#live-status')) === 'API key refused', 'status after a wrong key');
    check((await page.evaluate(() => sessionStorage.getItem('hearth.apiKey'))) === null, 'wrong key kept');
    check((await page.inputValue('#key-input')) === '', 'wrong key left in the field');
    await shot('key-refused');
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
    await page.fill('#s-temperature', '1.5');
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
    await page.fill('#s-top_k', '7');
    await page.fill('#s-seed', '11');
    const sent = page.waitForRequest((r) => r.url().endsWith('/v1/chat/completions'));
    await page.fill('#prompt', 'Tell me about the hearth.');
    await page.press('#prompt', 'Enter');
    const request = await sent;
    await page.waitForSelector('.msg.assistant:not(.streaming) .stats:has-text("tok/s")', { timeout: 30000 });
    // The settings went out as the API's fields, with the key.
    const body = request.postDataJSON();
    check(body.stream === true && body.priority === 'interactive' && body.temperature === 1.5 && body.max_tokens === 160 &&
      body.top_k === 7 && body.seed === 11 && body.user === 'web-test', `request ${JSON.stringify(body)}`);
    check(request.headers().authorization === `Bearer ${KEY}`, 'chat request without the key');
    // What streamed in is the whole reply: the same request, not streamed,
    // from Node gives the same text (a seeded sample).
    const ref = await (await fetch(`${url}/v1/chat/completions`, {
      method: 'POST',
      headers: { ...AUTH, 'Content-Type': 'application/json' },
      body: JSON.stringify({ ...body, stream: false, stream_options: undefined }),
    })).json();
    const kept = await page.evaluate(() => JSON.parse(localStorage.getItem('hearth.conversation')).at(-1));
    check(new Set(kept.content.split(/\s+/)).size >= 5, `a reply too uniform to compare: ${kept.content.slice(0, 200)}`);
    check(kept.role === 'assistant' && kept.content === ref.choices[0].message.content,
      `streamed ${JSON.stringify(kept.content)} vs ${JSON.stringify(ref.choices[0].message.content)}`);
    check(kept.stats.completion_tokens === ref.usage.completion_tokens, `tokens ${kept.stats.completion_tokens} vs ${ref.usage.completion_tokens}`);
    const seen = await page.evaluate(() => ({ lens: [...new Set(window.__lens)], stop: window.__stopEnabled }));
    const partial = seen.lens.filter((n) => n > 0);
    check(partial.length >= 3, `the reply did not stream: lengths seen ${JSON.stringify(seen.lens)}`);
    check(seen.stop, 'the stop button was not enabled while streaming');
    const stats = await page.textContent('.msg.assistant:last-child .stats');
    check(/interactive/.test(stats) && /\d+ prompt tokens/.test(stats) && /\d+ tokens/.test(stats), stats);
    check(/first token \d+ ms/.test(stats) && /[\d.]+ tok\/s/.test(stats), stats);
    check(stats.includes(` ${kept.stats.completion_tokens} tokens`), `${stats}: not ${kept.stats.completion_tokens} tokens`);
    const reply = await page.textContent('.msg.assistant:last-child .body');
    check(reply.trim().length > 0, 'empty reply');
    check(await page.isDisabled('#stop'), 'stop still enabled');
    await shot('chat');
  });

  await test('web/stop_button_ends_the_reply_and_the_sequence', async () => {
    await page.fill('#s-max_tokens', '1800');
    await page.selectOption('#priority', 'background');
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
    // The server runs it at the class chosen in the page, for its user.
    // (Only this page's: agents the server runs may have their own.)
    const mine = (q) => q.sequences.filter((x) => x.user === 'web-test');
    const running = mine(await queue());
    check(running.length === 1 && running[0].class === 'background' && running[0].user === 'web-test',
      `queue while streaming: ${JSON.stringify(running)}`);
    await page.click('#stop');
    await page.waitForSelector('.msg.assistant:last-child .stats:has-text("stopped")', { timeout: 10000 });
    let q;
    for (let i = 0; i < 40; i++) {
      q = await queue();
      if (mine(q).length === 0) break;
      await sleep(50);
    }
    check(mine(q).length === 0, `the server still runs ${JSON.stringify(mine(q))}`);
    await page.fill('#s-max_tokens', '160');
    await page.selectOption('#priority', 'interactive');
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
        const rows = (c, who) => [...document.querySelectorAll(`.qgroup[data-class=${c}] tr.seq`)].filter((r) => r.textContent.includes(who));
        return rows('background', 'batch-bot').length >= 3 && rows('tool', 'tool-runner').length === 1;
      },
      null,
      { timeout: 15000 },
    );
    // Every row in its class's group, with its submitter, age and tokens.
    const rows = await page.$$eval('.qgroup tr.seq', (r) => r.map((x) => ({ group: x.closest('.qgroup').dataset.class, text: x.textContent })));
    const bgRows = rows.filter((r) => r.text.includes('batch-bot'));
    const toolRows = rows.filter((r) => r.text.includes('tool-runner'));
    check(bgRows.length >= 3 && bgRows.every((r) => r.group === 'background'), `background rows: ${JSON.stringify(rows)}`);
    check(toolRows.length === 1 && toolRows[0].group === 'tool', `tool rows: ${JSON.stringify(rows)}`);
    check(bgRows.some((r) => r.text.includes('waiting')), `no waiting row: ${JSON.stringify(bgRows)}`);
    check(bgRows.every((r) => /\d(\.\d)? s/.test(r.text) && /\d+ \/ \d+/.test(r.text)), `age or tokens missing: ${JSON.stringify(bgRows)}`);
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
          // the y axis' grid lines (uPlot 1.6's own record of them)
          yTicks: (u.axes[1]._splits || []).length,
        };
      }
      return out;
    });
    const ids = ['chart-tps', 'chart-ttft', 'chart-kv', 'chart-mem', 'chart-queue'];
    for (const id of ids) {
      check(charts[id], `${id} missing`);
      check(charts[id].coloured > 100, `${id} draws nothing: ${JSON.stringify(charts[id])}`);
      check(charts[id].yTicks >= 2, `${id} has no y axis: ${JSON.stringify(charts[id])}`);
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

  // The server's own agents (hearth serve --agents FILE): a run started
  // from the page appears in its history, as the server records it.
  const served = (await (await fetch(`${url}/v1/agents`, { headers: AUTH })).json()).data;
  if (!served.length) {
    console.log(`skip web/agent_run_appears: the server reports no agents (${agents
      ? `with --agents ${agents}` : 'this hearth serve has no --agents; HEARTH_WEB_AGENTS=FILE forces one'})`);
  } else {
    await test('web/agent_run_appears', async () => {
      const a = served.find((x) => x.enabled !== false) || served[0];
      const card = `.agent[data-agent=${JSON.stringify(a.id)}]`;
      const runsOf = async () =>
        (await (await fetch(`${url}/v1/agents/${encodeURIComponent(a.id)}/runs?limit=50`, { headers: AUTH })).json()).data;
      const before = Math.max(0, ...(await runsOf()).map((r) => r.id));
      await page.click('a[data-tab=agents]');
      await page.waitForSelector(card, { timeout: 10000 });
      const text = await page.textContent(card);
      check(text.includes(a.name || a.id) && text.includes(a.class), `card: ${text}`);
      for (const t of a.triggers) check(text.includes(t.type), `trigger ${t.type} missing: ${text}`);
      await page.click(`${card} .run-now`);
      const run = await page.waitForFunction(
        ({ sel, after }) => {
          const d = [...document.querySelectorAll(`${sel} .runs details.run`)].find((x) => Number(x.dataset.run) > after);
          return d ? Number(d.dataset.run) : null;
        },
        { sel: card, after: before },
        { timeout: 10000 },
      );
      const id = await run.jsonValue();
      // It runs to its end on the server, and the page shows that end.
      const row = `${card} details.run[data-run="${id}"]`;
      await page.waitForSelector(`${row} .badge.run-succeeded, ${row} .badge.run-failed, ${row} .badge.run-interrupted`, { timeout: 90000 });
      const mine = (await runsOf()).find((r) => r.id === id);
      check(mine, `run ${id} is not in the server's history`);
      check(mine.agent === a.id && (mine.trigger === 'api' || mine.trigger === 'manual'), JSON.stringify(mine));
      check((await page.textContent(`${row} .badge`)) === mine.status, `page ${await page.textContent(`${row} .badge`)} vs ${mine.status}`);
      if (mine.output) {
        await page.click(`${row} summary`);
        const shown = await page.textContent(`${row} .run-output`);
        const words = mine.output.split(/\s+/).filter((w) => /^\w{4,}$/.test(w)).slice(0, 3);
        check(words.every((w) => shown.includes(w)), `output not shown: ${words} in ${shown}`);
      }
      await shot('agents');
    });
  }

  if (!served.length) {
    await test('web/agents_panel_renders_empty', async () => {
      await page.click('a[data-tab=agents]');
      await page.waitForSelector('#agents-empty', { timeout: 10000 });
      check((await page.textContent('#agents-empty')).includes('No agents configured'), 'empty state');
      await shot('agents-empty');
    });
  }

  await test('web/agents_panel_against_the_contract', async () => {
    // The page against a stand-in for /v1/agents that follows the contract
    // in web/README.md to the letter (the server's own agents are checked
    // above when it has some).
    const t = Math.floor(Date.now() / 1000);
    const runs = [{
      id: 7, agent: 'digest', trigger: 'daily', status: 'succeeded', attempt: 1, started_at: t - 3600,
      finished_at: t - 3590, prompt_tokens: 210, completion_tokens: 96, error: null, output: 'Yesterday: **3** issues closed.',
    }, {
      id: 6, agent: 'digest', trigger: 'interval', status: 'interrupted', attempt: 2, started_at: t - 7200,
      finished_at: t - 7100, prompt_tokens: 200, completion_tokens: 3, error: 'the server stopped during the run', output: null,
    }];
    const seen = [];
    const agent = () => ({
      id: 'digest', name: 'Morning digest', description: 'Summarises yesterday\'s issues.', class: 'background',
      enabled: true, engine: 'local', output: 'sections', tools: ['read_file', 'query_store'],
      triggers: [
        { type: 'daily', spec: '07:00', next_run_at: t + 3600 },
        { type: 'after', spec: 'summariser', next_run_at: null },
      ],
      last_run: runs[0],
    });
    const stub = (u) => u.pathname.startsWith('/v1/agents');
    await page.route(stub, async (route) => {
      const req = route.request();
      const u = new URL(req.url());
      seen.push({ method: req.method(), path: u.pathname + u.search, auth: req.headers().authorization, body: req.postData() });
      const json = (status, body) => route.fulfill({ status, contentType: 'application/json', body: JSON.stringify(body) });
      if (u.pathname === '/v1/agents' && req.method() === 'GET') return json(200, { object: 'list', data: [agent()] });
      if (u.pathname === '/v1/agents/digest/run' && req.method() === 'POST') {
        runs.unshift({ id: 8, agent: 'digest', trigger: 'api', status: 'queued', attempt: 1, started_at: Math.floor(Date.now() / 1000),
          finished_at: null, prompt_tokens: 0, completion_tokens: 0, error: null, output: null });
        return json(202, runs[0]);
      }
      if (u.pathname === '/v1/agents/digest/runs' && req.method() === 'GET') {
        const body = { object: 'list', data: runs.slice(0, Number(u.searchParams.get('limit')) || 20).map((r) => ({ ...r })) };
        // queued, then running, then done: one step per poll.
        if (runs[0].status === 'running') {
          Object.assign(runs[0], { status: 'succeeded', finished_at: Math.floor(Date.now() / 1000), completion_tokens: 12, output: 'Ran **now**: all quiet.' });
        } else if (runs[0].status === 'queued') {
          Object.assign(runs[0], { status: 'running', prompt_tokens: 210 });
        }
        return json(200, body);
      }
      return json(404, { error: { message: 'no such agent', type: 'invalid_request_error', param: 'agent', code: 'agent_not_found' } });
    });
    await page.reload();
    await page.click('a[data-tab=agents]');
    const card = '.agent[data-agent=digest]';
    await page.waitForSelector(card, { timeout: 10000 });
    const text = await page.textContent(card);
    check(/Morning digest/.test(text) && /background/.test(text) && /sections/.test(text) && /engine: local/.test(text) &&
      /tools: read_file, query_store/.test(text), text);
    check(/daily 07:00 · next/.test(text) && /after summariser/.test(text), `triggers: ${text}`);
    check(/succeeded/.test(text) && (await page.textContent(`${card} .run-output strong`)) === '3', `last run: ${text}`);
    await page.click(`${card} .show-runs`);
    await page.waitForSelector(`${card} details.run[data-run="6"] .badge.run-interrupted`, { timeout: 5000 });
    check((await page.textContent(`${card} details.run[data-run="6"]`)).includes('attempt 2'), 'attempt');
    await page.fill(`${card} .run-input`, 'only the open ones');
    await page.click(`${card} .run-now`);
    await page.waitForSelector(`${card} details.run[data-run="8"] .badge.run-succeeded`, { timeout: 10000 });
    await page.click(`${card} details.run[data-run="8"] summary`);
    await page.waitForSelector(`${card} details.run[data-run="8"] .run-output strong`);
    check((await page.textContent(`${card} details.run[data-run="8"] .run-output`)).includes('all quiet'), 'run output');
    const posts = seen.filter((r) => r.method === 'POST');
    check(posts.length === 1 && posts[0].path === '/v1/agents/digest/run' && JSON.parse(posts[0].body).input === 'only the open ones',
      `run request ${JSON.stringify(posts)}`);
    check(seen.some((r) => r.path === '/v1/agents/digest/runs?limit=20'), `history request ${JSON.stringify(seen.map((r) => r.path))}`);
    check(seen.every((r) => r.auth === `Bearer ${KEY}`), 'agents calls without the key');
    await shot('agents-contract');
    await page.unroute(stub);
  });

  // A server without --api-key: the page never asks for one.
  const open = await startServer(['-m', model, '--chat-template', 'chatml', '--alias', 'open', '--parallel', '1', '--ctx', '512', '-t', '1']);
  try {
    await test('web/no_key_asked_without_api_key', async () => {
      const p2 = await context.newPage();
      p2.on('pageerror', (e) => pageErrors.push(e.message));
      await p2.goto(`${open.url}/#queue`);
      await p2.waitForFunction(() => document.getElementById('model-name').textContent === 'open', null, { timeout: 10000 });
      await p2.waitForFunction(() => document.getElementById('live-status').textContent === 'live', null, { timeout: 10000 });
      await p2.waitForSelector('#queue-cards .card', { timeout: 10000 });
      check(!(await p2.isVisible('#key-dialog')), 'asked for a key the server does not want');
      check((await p2.evaluate(() => sessionStorage.getItem('hearth.apiKey'))) === null, 'a key in the session');
      await p2.close();
    });
  } finally {
    await open.stop();
  }

  await test('web/nothing_left_loopback_and_no_page_errors', () => {
    check(requests.length > 20, `only ${requests.length} requests seen`);
    const ours = (r) => r.startsWith(`${url}/`) || r.startsWith(`${open.url}/`);
    const away = requests.filter((r) => !ours(r) && !r.startsWith('data:'));
    check(leftLoopback.length === 0 && away.length === 0, `left loopback: ${[...leftLoopback, ...away].join(' ')}`);
    // Only the page's own files and the public API of web/README.md.
    const api = /^\/v1\/(models|queue|metrics(\?since=[\d.]+)?|chat\/completions|agents(\/[^/?]+\/(run|runs\?limit=\d+))?)$/;
    const files = /^\/((index\.html)?|[a-z]+\.(js|css)|vendor\/uPlot\.(iife\.min\.js|min\.css))$/;
    const other = requests.filter(ours).map((r) => new URL(r)).map((u) => u.pathname + u.search).filter((p) => !api.test(p) && !files.test(p));
    check(other.length === 0, `calls outside the public API: ${[...new Set(other)].join(' ')}`);
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
