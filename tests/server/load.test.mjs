#!/usr/bin/env node
// load.test.mjs — the scheduler under load, through the real server.
//
// priority: with 8 background streams saturating the engine, an interactive
//   request's time to first token stays within 1.5x its idle time plus one
//   engine step, and every background stream still completes in full.
//   (A random-weight llama of 8 layers, dim 512, Q4_0 — big enough that a
//   step is real work, small enough for two CI cores.)
// load: 500 requests from 32 concurrent clients, mixed classes, chat and
//   completions, streamed and not, every 11th stream hanging up mid-way;
//   every request not cancelled returns exactly the greedy text it returns
//   alone (which for completions is `hearth run --temp 0`'s), the server
//   stays up, its resident memory stays flat, and it exits cleanly.
import {
  bin,
  check,
  failed,
  fixtureModel,
  median,
  metrics,
  postJson,
  rssBytes,
  runGreedy,
  startServer,
  streamRequest,
  synthModel,
  test,
} from './lib.mjs';

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const words = 'the cat sat on a warm mat while rain fell over quiet hills and rivers ran to the sea';
const longPrompt = (tag) => `Request ${tag}: ${words}.`;

await test('load/priority_ttft_under_background_load', async () => {
  const model = synthModel('llama-d512', 'q4_0');
  // One forward-pass thread leaves the second CI core to the clients.
  const server = await startServer(['-m', model, '--parallel', '12', '--ctx', '1024', '-t', '1', '--batch', '512']);
  try {
    const interactive = async (tag) => {
      const r = await streamRequest(server.url, '/v1/completions', {
        prompt: longPrompt(tag),
        max_tokens: 4,
        temperature: 0,
        stream_options: { include_usage: true },
      });
      check(r.status === 200 && r.done && r.ttft !== null, `interactive ${tag}: ${r.status} ${r.error || ''}`);
      return r;
    };
    await interactive('warmup');
    const idle = [];
    for (let i = 0; i < 5; i++) idle.push((await interactive(`idle-${i}`)).ttft);
    const promptTokens = (await interactive('count')).events.at(-1).usage.prompt_tokens;

    // Eight background streams, long enough to outlast the measurements.
    const bgTokens = 500;
    const started = [];
    const background = Array.from({ length: 8 }, (_, i) => {
      let first;
      started.push(new Promise((r) => (first = r)));
      return (async () => {
        const r = await streamRequest(
          server.url,
          '/v1/completions',
          { prompt: `Background job ${i} writes`, max_tokens: bgTokens, temperature: 0, priority: 'background',
            stream_options: { include_usage: true } },
        ).finally(first);
        return r;
      })();
    });
    // Wait until every background stream is generating.
    for (let tries = 0; tries < 200; tries++) {
      const m = await metrics(server.url);
      if (m['hearth_running_sequences{class="background"}'] === 8 &&
          m['hearth_generated_tokens_total{class="background"}'] >= 16) break;
      await sleep(25);
    }
    // One step under this load, from the engine's own step histogram.
    const m0 = await metrics(server.url);
    await sleep(300);
    const m1 = await metrics(server.url);
    const steps = m1.hearth_steps_total - m0.hearth_steps_total;
    const step = steps > 0 ? ((m1.hearth_step_seconds_sum - m0.hearth_step_seconds_sum) / steps) * 1000 : 0;
    const loaded = [];
    for (let i = 0; i < 5; i++) {
      loaded.push((await interactive(`loaded-${i}`)).ttft);
      await sleep(20);
    }
    const m2 = await metrics(server.url);
    const bg = await Promise.all(background);
    const idleMs = median(idle);
    const loadedMs = median(loaded);
    const bound = 1.5 * idleMs + step;
    console.log(
      `  priority: prompt ${promptTokens} tokens; interactive TTFT idle ${idleMs.toFixed(1)} ms, ` +
        `under 8 background streams ${loadedMs.toFixed(1)} ms (bound 1.5 x idle + step ${step.toFixed(1)} ms = ` +
        `${bound.toFixed(1)} ms); background preempted ${m2.hearth_preemptions_total - m0.hearth_preemptions_total} sequence-steps`,
    );
    check(steps > 0, 'no steps while the background streams ran');
    check(m2['hearth_running_sequences{class="background"}'] > 0, 'background finished before the measurements ended');
    check(loadedMs <= bound, `interactive TTFT ${loadedMs.toFixed(1)} ms under load exceeds ${bound.toFixed(1)} ms`);
    for (const r of bg) {
      const usage = r.events.at(-1).usage;
      const finish = r.events.at(-2).choices[0].finish_reason;
      check(r.status === 200 && r.done && usage.completion_tokens === bgTokens && finish === 'length',
        `a background stream did not complete: ${JSON.stringify(r.events.at(-1))}`);
    }
  } finally {
    const exit = await server.stop();
    check(exit.code === 0, `server exit ${exit.code}: ${exit.stderr}`);
  }
});

await test('load/500_requests_32_clients', async () => {
  const model = fixtureModel('qwen3');
  const server = await startServer(['-m', model, '--parallel', '8', '--ctx', '512', '-t', '2']);
  try {
    const tasks = [];
    const texts = ['The quick brown fox', 'Once upon a time', 'hello world', 'A B C D E F G', 'numbers 1 2 3'];
    for (let i = 0; i < 5; i++) {
      tasks.push({ path: '/v1/completions', body: { prompt: texts[i], max_tokens: 20 + 8 * i, temperature: 0 } });
      tasks.push({
        path: '/v1/chat/completions',
        body: {
          messages: [
            { role: 'system', content: 'Shared system prompt for every agent. '.repeat(4) },
            { role: 'user', content: `${texts[i]}?` },
          ],
          max_tokens: 16 + 8 * i,
          temperature: 0,
        },
      });
    }
    const textOf = (j) => (j.choices[0].message ? j.choices[0].message.content : j.choices[0].text);
    // Each task alone, and completions against `hearth run`.
    for (const t of tasks) {
      const r = await postJson(server.url, t.path, t.body);
      check(r.status === 200, `single: ${JSON.stringify(r.json)}`);
      t.want = textOf(r.json);
      t.finish = r.json.choices[0].finish_reason;
      if (t.body.prompt) {
        const run = runGreedy(model, t.body.prompt, t.body.max_tokens);
        check(run === t.want, `'${t.body.prompt}': server ${JSON.stringify(t.want)} run ${JSON.stringify(run)}`);
      }
    }
    const classes = ['interactive', 'tool', 'background'];
    const total = 500;
    let next = 0;
    let done = 0;
    let cancelled = 0;
    const bad = [];
    let warmRss = 0;
    const worker = async () => {
      while (next < total) {
        const i = next++;
        const t = tasks[i % tasks.length];
        const body = { ...t.body, priority: classes[i % 3] };
        const streamed = i % 2 === 0;
        const hangUp = streamed && i % 11 === 5;
        try {
          if (streamed) {
            const r = await streamRequest(server.url, t.path, body, { abortAfter: hangUp ? 2 : 0 });
            if (r.aborted) {
              cancelled++;
            } else if (r.status !== 200 || !r.done || r.text !== t.want) {
              bad.push(`#${i} stream ${r.status}: ${JSON.stringify(r.text)} want ${JSON.stringify(t.want)} ${r.error || ''}`);
            }
          } else {
            const r = await postJson(server.url, t.path, body);
            if (r.status !== 200 || textOf(r.json) !== t.want || r.json.choices[0].finish_reason !== t.finish) {
              bad.push(`#${i} ${r.status}: ${JSON.stringify(r.json).slice(0, 300)}`);
            }
          }
        } catch (e) {
          bad.push(`#${i}: ${e}`);
        }
        if (++done === 100) warmRss = rssBytes(server.pid);
      }
    };
    const t0 = performance.now();
    await Promise.all(Array.from({ length: 32 }, worker));
    const secs = (performance.now() - t0) / 1000;
    const endRss = rssBytes(server.pid);
    // Cancelled sequences leave within a step; the queue drains.
    let q;
    for (let tries = 0; tries < 100; tries++) {
      q = await (await fetch(`${server.url}/v1/queue`)).json();
      if (q.sequences.length === 0) break;
      await sleep(20);
    }
    const m = await metrics(server.url);
    const reasons = ['interactive', 'tool', 'background'].reduce(
      (n, c) => n + m[`hearth_requests_finished_total{class="${c}",reason="cancelled"}`], 0);
    console.log(
      `  load: ${total} requests (${cancelled} hung up) from 32 clients in ${secs.toFixed(1)} s; ` +
        `RSS ${(warmRss / 2 ** 20).toFixed(1)} MiB after 100, ${(endRss / 2 ** 20).toFixed(1)} MiB after ${total}; ` +
        `evictions ${m.hearth_evictions_total}, cached prompt tokens ${
          m['hearth_prompt_cached_tokens_total{class="interactive"}'] + m['hearth_prompt_cached_tokens_total{class="tool"}'] +
          m['hearth_prompt_cached_tokens_total{class="background"}']}`,
    );
    check(bad.length === 0, `${bad.length} wrong replies:\n${bad.slice(0, 5).join('\n')}`);
    check(cancelled > 0 && reasons > 0, `hang-ups ${cancelled}, cancelled by the server ${reasons}`);
    check(q.sequences.length === 0, `sequences left: ${JSON.stringify(q.sequences)}`);
    // (An ASan build's quarantine holds freed memory: no RSS check there.)
    if (!/asan/.test(bin)) check(endRss < warmRss * 1.25 + 8 * 2 ** 20, `RSS grew from ${warmRss} to ${endRss}`);
    const h = await fetch(`${server.url}/health`);
    check(h.status === 200, 'server not healthy after the load');
  } finally {
    const exit = await server.stop();
    check(exit.code === 0, `server exit ${exit.code}: ${exit.stderr}`);
  }
});

process.exitCode = failed() ? 1 : 0;
