#!/usr/bin/env node
// sdk.test.mjs — the official OpenAI JavaScript SDK (`openai`, pinned in
// package-lock.json) against the real `hearth serve` process, unchanged:
// models list, chat and completions, streamed and not, errors as the SDK's
// error classes, API keys, priorities passed as a body field or header.
import OpenAI from 'openai';
import { check, failed, fixtureModel, runGreedy, startServer, test } from './lib.mjs';

const model = fixtureModel('qwen3'); // ChatML template, byte-level BPE
const server = await startServer(['-m', model, '--parallel', '4', '-t', '2', '--api-key', 'test-key']);
const client = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: 'test-key', maxRetries: 0 });
const messages = [
  { role: 'system', content: 'You are terse.' },
  { role: 'user', content: 'Say hello.' },
];

await test('sdk/models_list', async () => {
  const list = await client.models.list();
  const ids = [];
  for await (const m of list) ids.push(m.id);
  check(ids.length === 1 && ids[0] === 'qwen3', `models: ${JSON.stringify(ids)}`);
  const one = await client.models.retrieve('qwen3');
  check(one.id === 'qwen3' && one.object === 'model', JSON.stringify(one));
});

let whole;
await test('sdk/chat_non_streaming', async () => {
  const r = await client.chat.completions.create({ model: 'qwen3', messages, max_tokens: 16, temperature: 0 });
  check(r.object === 'chat.completion' && r.id.startsWith('chatcmpl-'), JSON.stringify(r));
  const c = r.choices[0];
  check(c.message.role === 'assistant' && typeof c.message.content === 'string', JSON.stringify(c));
  check(c.finish_reason === 'length' || c.finish_reason === 'stop', c.finish_reason);
  check(r.usage.completion_tokens > 0 && r.usage.prompt_tokens > 0, JSON.stringify(r.usage));
  check(r.usage.total_tokens === r.usage.prompt_tokens + r.usage.completion_tokens, 'total');
  check(typeof r.usage.prompt_tokens_details.cached_tokens === 'number', 'cached_tokens');
  whole = c.message.content;
});

await test('sdk/chat_streaming', async () => {
  const stream = await client.chat.completions.create({
    model: 'qwen3',
    messages,
    max_tokens: 16,
    temperature: 0,
    stream: true,
    stream_options: { include_usage: true },
  });
  let text = '';
  let role = null;
  let finish = null;
  let usage = null;
  for await (const chunk of stream) {
    check(chunk.object === 'chat.completion.chunk', JSON.stringify(chunk));
    if (chunk.usage) usage = chunk.usage;
    const c = chunk.choices[0];
    if (!c) continue;
    if (c.delta.role) role = c.delta.role;
    if (c.delta.content) text += c.delta.content;
    if (c.finish_reason) finish = c.finish_reason;
  }
  check(role === 'assistant', `role ${role}`);
  check(finish === 'length' || finish === 'stop', `finish ${finish}`);
  check(text === whole, `streamed ${JSON.stringify(text)} vs ${JSON.stringify(whole)}`);
  check(usage && usage.completion_tokens > 0, `usage ${JSON.stringify(usage)}`);
});

await test('sdk/completions_match_hearth_run', async () => {
  const prompt = 'The quick brown fox';
  const r = await client.completions.create({ model: 'qwen3', prompt, max_tokens: 24, temperature: 0 });
  check(r.object === 'text_completion', JSON.stringify(r));
  const want = runGreedy(model, prompt, 24);
  check(r.choices[0].text === want, `server ${JSON.stringify(r.choices[0].text)} run ${JSON.stringify(want)}`);
  const stream = await client.completions.create({ model: 'qwen3', prompt, max_tokens: 24, temperature: 0, stream: true });
  let text = '';
  for await (const chunk of stream) text += chunk.choices[0] ? chunk.choices[0].text : '';
  check(text === want, `streamed ${JSON.stringify(text)}`);
});

await test('sdk/priority_field_and_header', async () => {
  const a = await client.chat.completions.create({ model: 'qwen3', messages, max_tokens: 4, priority: 'background' });
  check(a.choices.length === 1, 'background');
  const b = await client.chat.completions.create(
    { model: 'qwen3', messages, max_tokens: 4 },
    { headers: { 'X-Hearth-Priority': 'tool' } },
  );
  check(b.choices.length === 1, 'tool');
});

await test('sdk/logprobs', async () => {
  const r = await client.chat.completions.create({
    model: 'qwen3',
    messages,
    max_tokens: 5,
    temperature: 0,
    logprobs: true,
    top_logprobs: 2,
  });
  const lp = r.choices[0].logprobs.content;
  check(lp.length === 5, `logprobs ${lp.length}`);
  check(lp.every((t) => t.logprob <= 0 && t.top_logprobs.length === 2), JSON.stringify(lp[0]));
  // Greedy: the chosen token is the most likely one.
  check(lp.every((t) => t.top_logprobs[0].logprob === t.logprob), 'greedy picks the top token');
});

await test('sdk/errors_are_sdk_error_classes', async () => {
  let err = null;
  try {
    await client.chat.completions.create({ model: 'qwen3', messages, priority: 'urgent' });
  } catch (e) {
    err = e;
  }
  check(err instanceof OpenAI.BadRequestError && err.status === 400, `got ${err}`);
  check(err.param === 'priority' && /priority/.test(err.message), err.message);
  err = null;
  try {
    await client.chat.completions.create({ model: 'qwen3', messages, max_tokens: 10 ** 9 });
  } catch (e) {
    err = e;
  }
  check(err instanceof OpenAI.BadRequestError && err.param === 'max_tokens', `got ${err}`);
  const anon = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: 'wrong', maxRetries: 0 });
  err = null;
  try {
    await anon.models.list();
  } catch (e) {
    err = e;
  }
  check(err instanceof OpenAI.AuthenticationError && err.status === 401, `got ${err}`);
});

const exit = await server.stop();
await test('sdk/server_exits_cleanly', async () => {
  check(exit.code === 0, `exit ${exit.code} ${exit.signal}: ${exit.stderr}`);
});
process.exitCode = failed() ? 1 : 0;
