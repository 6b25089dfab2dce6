#!/usr/bin/env node
// bench.mjs — throughput and latency of `hearth serve` (a benchmark: it
// prints numbers and fails on nothing).
//
//   node tests/server/bench.mjs [--model FILE | --preset NAME] [--threads N]
//        [--parallel N] [--batch N] [--tokens N] [--seconds S] [--streams 1,4,12] [--json]
//
// 1. Aggregate generation speed at 1, 4 and 12 concurrent streams: each
//    stream asks for --tokens tokens (greedy, distinct prompts); tok/s is
//    all generated tokens over the wall time of the round, next to what the
//    same streams would take one after another.
// 2. Time to first token per class under load: --parallel background
//    clients keep every slot busy, --parallel/2 tool clients and
//    --parallel/4 interactive clients come on top, each sending requests
//    back to back for --seconds; the queue and the priorities decide who
//    goes first, next to the TTFT of the same request on an idle server.
// The default model is a random-weight llama of 8 layers, dim 512, Q4_0
// (hearth synth --preset llama-d512).
import { availableParallelism } from 'node:os';
import { median, metrics, startServer, streamRequest, synthModel } from './lib.mjs';

const args = process.argv.slice(2);
const opt = (name, def) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? args[i + 1] : def;
};
const model = opt('model') || synthModel(opt('preset', 'llama-d512'), opt('type', 'q4_0'));
const threads = Number(opt('threads', availableParallelism()));
const parallel = Number(opt('parallel', 12));
const tokens = Number(opt('tokens', 128));
const seconds = Number(opt('seconds', 20));
const streams = opt('streams', '1,4,12').split(',').map(Number);
const json = args.includes('--json');
const batch = Number(opt('batch', 128));

const words = 'the cat sat on a warm mat while rain fell over quiet hills and rivers ran to the sea'.split(' ');
const prompt = (tag, n) => `${tag}: ${Array.from({ length: n }, (_, i) => words[(i * 7 + tag.length) % words.length]).join(' ')}`;
const pct = (xs, p) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length ? s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))] : NaN;
};

const server = await startServer([
  '-m', model, '--parallel', String(parallel), '--ctx', '2048', '-t', String(threads), '--batch', String(batch),
]);
const result = { model, threads, parallel, throughput: [], ttft: {} };
try {
  // Warm up (page in the weights).
  await streamRequest(server.url, '/v1/completions', { prompt: prompt('warm', 16), max_tokens: 8, temperature: 0 });

  for (const n of streams) {
    const t0 = performance.now();
    const runs = await Promise.all(
      Array.from({ length: n }, (_, i) =>
        streamRequest(server.url, '/v1/completions', {
          prompt: prompt(`s${n}-${i}`, 4),
          max_tokens: tokens,
          temperature: 0,
          stream_options: { include_usage: true },
        }),
      ),
    );
    const wall = (performance.now() - t0) / 1000;
    const generated = runs.reduce((s, r) => s + (r.events.at(-1).usage ? r.events.at(-1).usage.completion_tokens : 0), 0);
    const ttft = median(runs.map((r) => r.ttft));
    const promptTokens = runs[0].events.at(-1).usage ? runs[0].events.at(-1).usage.prompt_tokens : 0;
    result.throughput.push({ streams: n, prompt_tokens: promptTokens, tokens: generated, seconds: wall, tok_s: generated / wall, ttft_ms: ttft });
  }
  const single = result.throughput.find((t) => t.streams === 1);

  // TTFT per class: background fills the slots, tool and interactive on top.
  const idle = [];
  for (let i = 0; i < 5; i++) {
    const r = await streamRequest(server.url, '/v1/completions', {
      prompt: prompt(`idle ${i}`, 24), max_tokens: 32, temperature: 0, stream_options: { include_usage: true },
    });
    idle.push(r.ttft);
    result.prompt_tokens = r.events.at(-1).usage.prompt_tokens;
  }
  result.idle_ttft_ms = median(idle);
  const classes = ['interactive', 'tool', 'background'];
  const mix = [
    ...Array(Math.max(1, parallel >> 2)).fill('interactive'),
    ...Array(Math.max(1, parallel >> 1)).fill('tool'),
    ...Array(parallel).fill('background'),
  ];
  const ttft = { interactive: [], tool: [], background: [] };
  const m0 = await metrics(server.url);
  const end = performance.now() + seconds * 1000;
  let k = 0;
  const client = async (cls) => {
    while (performance.now() < end) {
      const r = await streamRequest(server.url, '/v1/completions', {
        prompt: prompt(`request ${k++}`, 24),
        max_tokens: 32,
        temperature: 0,
        priority: cls,
      });
      if (r.ttft !== null) ttft[cls].push(r.ttft);
    }
  };
  const t0 = performance.now();
  await Promise.all(mix.map(client));
  const wall = (performance.now() - t0) / 1000;
  const m1 = await metrics(server.url);
  const gen = classes.reduce((s, c) => s + m1[`hearth_generated_tokens_total{class="${c}"}`] - m0[`hearth_generated_tokens_total{class="${c}"}`], 0);
  for (const c of classes) {
    result.ttft[c] = { clients: mix.filter((x) => x === c).length, requests: ttft[c].length, median_ms: median(ttft[c]), p90_ms: pct(ttft[c], 90), max_ms: Math.max(...ttft[c]) };
  }
  result.load = { clients: mix.length, seconds: wall, tok_s: gen / wall, evictions: m1.hearth_evictions_total - m0.hearth_evictions_total,
    preemptions: m1.hearth_preemptions_total - m0.hearth_preemptions_total };

  if (json) {
    console.log(JSON.stringify(result, null, 2));
  } else {
    console.log(`model ${model}, ${threads} threads, ${parallel} parallel sequences, batch ${batch}; ` +
      `each stream: a ${result.throughput[0].prompt_tokens}-token prompt, ${tokens} tokens generated`);
    console.log('| streams | tokens | seconds | aggregate tok/s | vs one stream | median TTFT ms |');
    console.log('| ------: | -----: | ------: | --------------: | ------------: | -------------: |');
    for (const t of result.throughput) {
      console.log(`| ${t.streams} | ${t.tokens} | ${t.seconds.toFixed(2)} | ${t.tok_s.toFixed(1)} | ` +
        `${single ? (t.tok_s / single.tok_s).toFixed(2) + 'x' : '-'} | ${t.ttft_ms.toFixed(1)} |`);
    }
    console.log(`\nTTFT per class under load: ${mix.length} clients back to back for ${wall.toFixed(0)} s, ` +
      `prompts of ${result.prompt_tokens} tokens, 32 generated; ${result.load.tok_s.toFixed(1)} tok/s generated, ` +
      `${result.load.evictions} evictions, ${result.load.preemptions} preempted sequence-steps; ` +
      `idle TTFT ${result.idle_ttft_ms.toFixed(1)} ms`);
    console.log('| class | clients | requests | median TTFT ms | p90 ms | max ms |');
    console.log('| ----- | ------: | -------: | -------------: | -----: | -----: |');
    for (const c of classes) {
      const t = result.ttft[c];
      console.log(`| ${c} | ${t.clients} | ${t.requests} | ${t.median_ms.toFixed(1)} | ${t.p90_ms.toFixed(1)} | ${t.max_ms.toFixed(1)} |`);
    }
  }
} finally {
  await server.stop();
}
