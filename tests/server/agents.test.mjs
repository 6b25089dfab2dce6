#!/usr/bin/env node
// agents.test.mjs — a person chatting while the agents work.
//
// Eight background agents are started at once through the API (POST
// /v1/agents/NAME/run) on a random-weight llama of 8 layers, dim 512, Q4_0
// (the model of load.test.mjs's priority test).  While their runs
// generate, an interactive chat request's time to first token stays within
// the scheduler's bound — 1.5x its idle time plus one engine step — and
// every agent run still succeeds, recorded with its tokens.
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { check, failed, median, metrics, postJson, scratch, startServer, streamRequest, synthModel, test } from './lib.mjs';

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

await test('agents/chat_ttft_during_an_agent_burst', async () => {
  const model = synthModel('llama-d512', 'q4_0');
  const n = 8;
  const tokens = 400;
  let yaml = 'store: burst.db\nworkers: 8\nagents:\n';
  for (let i = 0; i < n; i++) {
    yaml += `  - name: worker${i}\n    class: background\n    prompt: You are background worker ${i}. Write a long report.\n`;
    yaml += `    triggers: [api]\n    limits: {max_tokens: ${tokens}, retries: 0}\n`;
  }
  const cfg = join(scratch, 'burst.yaml');
  writeFileSync(cfg, yaml);
  const server = await startServer(['-m', model, '--chat-template', 'chatml', '--parallel', '12', '--ctx', '1024', '-t', '1', '--batch', '512', '--agents', cfg]);
  try {
    const chat = async (tag) => {
      const r = await streamRequest(server.url, '/v1/chat/completions', {
        messages: [{ role: 'user', content: `Question ${tag}: the cat sat on a warm mat while rain fell over quiet hills.` }],
        max_tokens: 4,
        temperature: 0,
      });
      check(r.status === 200 && r.done && r.ttft !== null, `chat ${tag}: ${r.status} ${r.error || ''}`);
      return r.ttft;
    };
    await chat('warmup');
    const idle = [];
    for (let i = 0; i < 5; i++) idle.push(await chat(`idle-${i}`));

    for (let i = 0; i < n; i++) {
      const r = await postJson(server.url, `/v1/agents/worker${i}/run`, { input: `job ${i}` });
      check(r.status === 202 && r.json.agent === `worker${i}`, `run worker${i}: ${r.status} ${JSON.stringify(r.json)}`);
    }
    for (let tries = 0; tries < 400; tries++) {
      const m = await metrics(server.url);
      if (m['hearth_running_sequences{class="background"}'] === n && m['hearth_generated_tokens_total{class="background"}'] >= 16) break;
      await sleep(25);
    }
    const m0 = await metrics(server.url);
    await sleep(300);
    const m1 = await metrics(server.url);
    const steps = m1.hearth_steps_total - m0.hearth_steps_total;
    const step = steps > 0 ? ((m1.hearth_step_seconds_sum - m0.hearth_step_seconds_sum) / steps) * 1000 : 0;
    const loaded = [];
    for (let i = 0; i < 5; i++) {
      loaded.push(await chat(`busy-${i}`));
      await sleep(20);
    }
    const m2 = await metrics(server.url);
    const idleMs = median(idle);
    const loadedMs = median(loaded);
    const bound = 1.5 * idleMs + step;
    console.log(
      `  agents: chat TTFT idle ${idleMs.toFixed(1)} ms, during ${n} agent runs ${loadedMs.toFixed(1)} ms ` +
        `(bound 1.5 x idle + step ${step.toFixed(1)} ms = ${bound.toFixed(1)} ms)`,
    );
    check(m0['hearth_running_sequences{class="background"}'] === n, `${m0['hearth_running_sequences{class="background"}']} agent sequences running, want ${n}`);
    check(m2['hearth_running_sequences{class="background"}'] > 0, 'the agent runs finished before the measurements ended');
    check(loadedMs <= bound, `chat TTFT ${loadedMs.toFixed(1)} ms during the burst exceeds ${bound.toFixed(1)} ms`);

    // Every run completes and is recorded.
    for (let i = 0; i < n; i++) {
      let run;
      for (let t = 0; t < 1200; t++) {
        const r = await fetch(`${server.url}/v1/agents/worker${i}/runs?limit=1`);
        run = (await r.json()).data[0];
        if (run && run.status !== 'queued' && run.status !== 'running') break;
        await sleep(100);
      }
      check(run && run.status === 'succeeded' && run.completion_tokens > 0 && run.prompt_tokens > 0,
        `worker${i}: ${JSON.stringify(run)}`);
    }
  } finally {
    const exit = await server.stop();
    check(exit.code === 0, `server exit ${exit.code}: ${exit.stderr}`);
  }
});

process.exitCode = failed() ? 1 : 0;
