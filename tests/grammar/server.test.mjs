#!/usr/bin/env node
// server.test.mjs — constrained and long outputs through `hearth serve`.
//
// response_format: 30 random schemas (schemagen.mjs) sent at once as chat
//   completions to a random-weight model with a real 151k byte-level BPE
//   vocabulary (tests/data/hf/qwen3) at temperature 1, so the sequences
//   share batches while each keeps its own grammar state; every reply
//   parses and ajv validates it; greedy, eight at once, each equals
//   `hearth run --json-schema --temp 0`.  json_object on completions, and a GBNF
//   "grammar" whose outputs must match the same language as a regex.
// Bad input: a schema with an unsupported keyword, a malformed one, a
//   grammar that does not compile, one over the size limit, both fields at
//   once, a bad loop_guard or sections: each a quick 400 naming the field
//   and the problem; the server stays up.
// Loop guard: stories260K's greedy continuation loops; with "stop" it ends
//   with finish_reason "repetition" well before max_tokens, and
//   /metrics counts it per class and action; the completions default
//   ("watch") leaves the text as it is and counts the loop.
// Sections: POST /v1/sections streamed section by section (indices in
//   order, the deltas stitching to the text of the same request unstreamed),
//   the summary (sections, tokens per section within the bounds, guard
//   stops = sections that ended by "loop"), every section a scheduler
//   request of the asked class; a client hanging up cancels every section;
//   chat completions with "sections", whole and streamed.
// Prints "ok   name" / "FAIL name" lines for tests/run.sh.
import Ajv2020 from 'ajv/dist/2020.js';
import { spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { bin, check, failed, fixtureModel, metrics, postJson, scratch, shared, startServer, streamRequest, test }
  from '../server/lib.mjs';
import { makeSchema } from './schemagen.mjs';
import { join } from 'node:path';

const ajv = new Ajv2020({ strict: true, allErrors: true });
const qwen3 = fixtureModel('qwen3');
const stories = join(shared, 'models/stories260K.gguf');
const user = [{ role: 'user', content: 'Describe a person as JSON.' }];

async function withServer(args, fn) {
  const server = await startServer(args);
  try {
    await fn(server);
  } finally {
    const r = await server.stop();
    check(r.code === 0 && !/Sanitizer|runtime error/.test(r.stderr), `server exit ${r.code}: ${r.stderr}`);
  }
}

await withServer(['-m', qwen3, '--parallel', '8', '--ctx', '1024', '-t', '1'], async (server) => {
  await test('server/response_format_json_schema_validates_with_ajv', async () => {
    const schemas = Array.from({ length: 30 }, (_, i) => makeSchema(i + 200));
    const replies = await Promise.all(schemas.map((schema, i) =>
      postJson(server.url, '/v1/chat/completions', {
        messages: user, max_tokens: 200, temperature: 1, seed: i + 1,
        response_format: { type: 'json_schema', json_schema: { name: `s${i}`, strict: true, schema } },
      })));
    const problems = [];
    replies.forEach((r, i) => {
      const text = JSON.stringify(schemas[i]);
      if (r.status !== 200) return problems.push(`${text}: status ${r.status} ${JSON.stringify(r.json)}`);
      const c = r.json.choices[0];
      let value;
      try {
        value = JSON.parse(c.message.content);
      } catch (e) {
        return problems.push(`${text}: does not parse (${e.message}): ${c.message.content}`);
      }
      const validate = ajv.compile(schemas[i]);
      if (!validate(value)) {
        problems.push(`${text}: ${c.message.content} fails: ${ajv.errorsText(validate.errors)}`);
      }
      if (c.finish_reason !== 'stop') problems.push(`${text}: finish_reason ${c.finish_reason}`);
    });
    console.log(`note: ${30 - problems.length} of 30 schemas at once: the reply parses and validates`);
    check(problems.length === 0, problems.slice(0, 5).join('\n'));
  });

  await test('server/greedy_constrained_equals_hearth_run', async () => {
    // Eight schemas at once (one batch, eight grammar states) against
    // `hearth run --json-schema --temp 0` one at a time.
    const schemas = Array.from({ length: 8 }, (_, i) => makeSchema(300 + i));
    const replies = await Promise.all(schemas.map((schema) =>
      postJson(server.url, '/v1/completions', {
        prompt: 'JSON: ', max_tokens: 120, temperature: 0, loop_guard: 'off',
        response_format: { type: 'json_schema', json_schema: { name: 'x', schema } },
      })));
    const problems = [];
    schemas.forEach((schema, i) => {
      const file = join(scratch, `eq-${i}.json`);
      writeFileSync(file, JSON.stringify(schema));
      const r = spawnSync(bin, ['run', '-m', qwen3, '-p', 'JSON: ', '--json-schema', file, '-n', '120',
        '--temp', '0', '-t', '1'], { encoding: 'utf8' });
      const want = r.stdout.slice('JSON: '.length).replace(/\n$/, '');
      const got = replies[i].json.choices ? replies[i].json.choices[0].text : JSON.stringify(replies[i].json);
      if (r.status !== 0 || got !== want) problems.push(`${JSON.stringify(schema)}:\n  serve ${got}\n  run   ${want}`);
    });
    check(problems.length === 0, problems.join('\n'));
  });

  await test('server/json_object_and_grammar', async () => {
    const r = await postJson(server.url, '/v1/completions', {
      prompt: 'JSON:', max_tokens: 120, temperature: 1, seed: 3, response_format: { type: 'json_object' },
    });
    check(r.status === 200, JSON.stringify(r.json));
    const v = JSON.parse(r.json.choices[0].text);
    check(v !== null && typeof v === 'object' && !Array.isArray(v), r.json.choices[0].text);
    const grammar = 'root ::= ("yes" | "no") ", " [a-z]{2,6} "."';
    for (let seed = 1; seed <= 5; seed++) {
      const g = await postJson(server.url, '/v1/completions', { prompt: 'Answer:', max_tokens: 20, temperature: 1, seed, grammar });
      check(g.status === 200, JSON.stringify(g.json));
      const text = g.json.choices[0].text;
      check(/^(yes|no), [a-z]{2,6}\.$/.test(text) && g.json.choices[0].finish_reason === 'stop', `grammar output '${text}'`);
    }
  });

  await test('server/bad_schema_or_grammar_is_400_naming_it', async () => {
    const chat = (extra) => ({ messages: user, max_tokens: 8, ...extra });
    const js = (schema) => ({ response_format: { type: 'json_schema', json_schema: { name: 'x', schema } } });
    const cases = [
      [js({ type: 'integer', minimum: 0 }), 'response_format', "keyword 'minimum' is not supported"],
      [js({ type: 'string', pattern: 'a+' }), 'response_format', "'pattern'"],
      [js({ $ref: '#/$defs/none' }), 'response_format', 'not found'],
      [js('object'), 'response_format', 'schema must be a JSON schema object'],
      [{ response_format: { type: 'xml' } }, 'response_format', "'xml' is not supported"],
      [{ response_format: 'json' }, 'response_format', 'must be an object'],
      [{ grammar: 'root ::= "a" foo' }, 'grammar', "'foo'"],
      [{ grammar: 'root ::= ("a"' }, 'grammar', 'line 1'],
      [{ grammar: 'root ::= x\nx ::= x "a"' }, 'grammar', 'recursion'],
      [{ grammar: `root ::= "${'a'.repeat(70000)}"` }, 'grammar', 'at most 65536'],
      [{ grammar: 'root ::= "a"', response_format: { type: 'json_object' } }, 'grammar', 'not both'],
      [{ loop_guard: 'sometimes' }, 'loop_guard', "'sometimes'"],
      [{ loop_guard: { action: 'stop', window: -1 } }, 'loop_guard', 'window'],
      [{ sections: 0 }, 'sections', 'from 1 to 64'],
      [{ sections: { count: 2, section_tokens: { min: 50, max: 10 } } }, 'sections', 'above'],
    ];
    const problems = [];
    for (const [extra, param, needle] of cases) {
      const t0 = Date.now();
      const r = await postJson(server.url, '/v1/chat/completions', chat(extra));
      const e = r.json.error || {};
      if (r.status !== 400 || e.param !== param || !String(e.message).includes(needle) || Date.now() - t0 > 5000) {
        problems.push(`${JSON.stringify(extra).slice(0, 80)}: ${r.status} ${JSON.stringify(r.json).slice(0, 300)}`);
      }
    }
    const h = await fetch(server.url + '/health');
    check(h.status === 200, 'server down');
    check(problems.length === 0, problems.join('\n'));
  });

  await test('server/chat_with_sections', async () => {
    const r = await postJson(server.url, '/v1/chat/completions', {
      messages: [{ role: 'user', content: 'Write about the sea.' }], temperature: 0,
      sections: { outline: ['Waves', 'Ships'], section_tokens: { min: 10, max: 30 }, order: 'parallel' },
    });
    check(r.status === 200, JSON.stringify(r.json));
    const content = r.json.choices[0].message.content;
    check(r.json.object === 'chat.completion' && content.startsWith('## Waves\n') && content.includes('\n## Ships\n'), content);
    check(r.json.sections.length === 2 && r.json.summary.sections === 2, JSON.stringify(r.json.summary));
    check(r.json.sections.every((s) => s.tokens <= 30), JSON.stringify(r.json.sections));
    const st = await streamRequest(server.url, '/v1/chat/completions', {
      messages: [{ role: 'user', content: 'Write about the sea.' }], temperature: 0,
      sections: { outline: ['Waves', 'Ships'], section_tokens: { min: 10, max: 30 }, order: 'parallel' },
    });
    check(st.status === 200 && st.done && st.events[0].object === 'chat.completion.chunk' &&
      st.events[0].choices[0].delta.role === 'assistant', JSON.stringify(st.events[0]));
    check(st.text === content, `streamed '${st.text}' vs '${content}'`);
  });
});

await withServer(['-m', stories, '--parallel', '4', '--ctx', '2048', '-t', '1'], async (server) => {
  await test('server/loop_guard_stop_is_finish_reason_repetition', async () => {
    const before = await metrics(server.url);
    const body = { prompt: 'Once upon a time', max_tokens: 1500, temperature: 0 };
    const watched = await postJson(server.url, '/v1/completions', body);
    check(watched.status === 200 && watched.json.choices[0].finish_reason === 'length' &&
      watched.json.usage.completion_tokens === 1500, JSON.stringify(watched.json.usage));
    const r = await postJson(server.url, '/v1/completions', { ...body, loop_guard: 'stop' });
    const c = r.json.choices[0];
    check(r.status === 200 && c.finish_reason === 'repetition', `finish ${c.finish_reason}`);
    check(r.json.usage.completion_tokens < 1500, `${r.json.usage.completion_tokens} tokens`);
    // The stopped text is the start of the watched one (the guard changes nothing before it).
    check(watched.json.choices[0].text.startsWith(c.text), 'stopped text differs');
    const after = await metrics(server.url);
    const key = (a) => `hearth_loop_guard_triggers_total{class="interactive",action="${a}"}`;
    check(after[key('stop')] === before[key('stop')] + 1, `stop ${before[key('stop')]} -> ${after[key('stop')]}`);
    check(after[key('watch')] >= before[key('watch')] + 1, `watch ${before[key('watch')]} -> ${after[key('watch')]}`);
    const fin = 'hearth_requests_finished_total{class="interactive",reason="repetition"}';
    check(after[fin] === before[fin] + 1, `finished ${after[fin]}`);
  });

  await test('server/sections_stream_section_by_section', async () => {
    const body = {
      topic: 'Once upon a time there was a little dog named Max.', sections: 4, order: 'parallel',
      section_tokens: { min: 40, max: 80 }, temperature: 0, priority: 'background',
    };
    const before = await metrics(server.url);
    const whole = await postJson(server.url, '/v1/sections', body);
    check(whole.status === 200, JSON.stringify(whole.json));
    const after = await metrics(server.url);
    const reqs = 'hearth_requests_total{class="background"}';
    // The outline and the four sections: five sequences of the background class.
    check(after[reqs] - before[reqs] === 5, `${after[reqs] - before[reqs]} background requests`);
    const s = whole.json.summary;
    check(s.sections === 4 && s.tokens_per_section.length === 4 && whole.json.sections.length === 4, JSON.stringify(s));
    check(s.tokens_per_section.every((n) => n <= 80), JSON.stringify(s));
    check(s.guard_stops === s.ends.filter((e) => e === 'loop').length, JSON.stringify(s));
    check(whole.json.sections.every((x, i) => x.index === i && x.tokens === s.tokens_per_section[i]), 'section order');

    const st = await streamRequest(server.url, '/v1/sections', body);
    check(st.status === 200 && st.done, `stream ${st.status} ${st.error || ''}`);
    const secs = st.events.filter((e) => e.section && e.section.kind === 'section').map((e) => e.section.index);
    check(JSON.stringify(secs) === '[0,1,2,3]', `section events ${JSON.stringify(secs)}`);
    check(st.events[0].object === 'sections.chunk' && st.events[0].section.kind === 'outline', 'outline first');
    const last = st.events.at(-1);
    check(last.choices[0].finish_reason === 'stop' && last.summary.sections === 4 && last.usage.completion_tokens > 0,
      JSON.stringify(last));
    check(st.text === whole.json.text, `streamed:\n${st.text}\nwhole:\n${whole.json.text}`);
  });

  await test('server/sections_client_hangs_up', async () => {
    const body = { topic: 'A long day at the farm.', sections: 12, order: 'parallel', section_tokens: 300 };
    const st = await streamRequest(server.url, '/v1/sections', body, { abortAfter: 1 });
    check(st.aborted, 'the stream ended before the client hung up');
    // Every section's sequence is cancelled: the engine goes idle.
    let q;
    for (let i = 0; i < 300; i++) {
      q = await (await fetch(server.url + '/v1/queue')).json();
      if (q.running === 0 && q.waiting === 0) break;
      await new Promise((r) => setTimeout(r, 20));
    }
    check(q.running === 0 && q.waiting === 0, JSON.stringify(q));
  });

  await test('server/sections_bad_input', async () => {
    const cases = [
      [{ sections: 2 }, 'topic'],
      [{ topic: 'x' }, 'sections'],
      [{ topic: 'x', sections: 65 }, 'sections'],
      [{ topic: 'x', sections: 2, order: 'random' }, 'sections'],
      [{ topic: 'x', outline: [] }, 'sections'],
      [{ topic: 'x', sections: 2, loop_guard: 'watch' }, 'loop_guard'],
      [{ topic: 'x', sections: 2, grammar: 'root ::= "a"' }, 'grammar'],
    ];
    for (const [body, param] of cases) {
      const r = await postJson(server.url, '/v1/sections', body);
      check(r.status === 400 && r.json.error.param === param, `${JSON.stringify(body)}: ${r.status} ${JSON.stringify(r.json)}`);
    }
  });
});

process.exit(failed() ? 1 : 0);
