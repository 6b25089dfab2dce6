#!/usr/bin/env node
// schemas.test.mjs — `hearth run --json-schema` checked by an independent
// validator: ajv (pinned in package-lock.json; npm ci installs it).
//
// 100 JSON schemas are generated here at random (a seeded generator, so a
// failure reproduces) from what hearth supports: objects with required and
// optional properties (names with quotes, spaces, non-ASCII), nested
// objects, additionalProperties false/true/a schema, arrays with
// minItems/maxItems, strings with enum/minLength/maxLength, numbers,
// integers, booleans, null, type lists, anyOf, const, $defs/$ref and the
// bare {"type":"object"} of response_format json_object.  Each is run
// against a random-weight model with a real byte-level BPE vocabulary
// (tests/data/hf/qwen3, converted here) at temperature 1; every output
// must parse with JSON.parse and validate with ajv.  Bad schemas must be
// one error line naming the problem and a non-zero exit, quickly.
// Prints "ok   name" / "FAIL name" lines for tests/run.sh.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Ajv2020 from 'ajv/dist/2020.js';

const root = new URL('../../', import.meta.url).pathname;
const bin = process.env.HEARTH_BIN || join(root, 'build/release/hearth');
const scratch = mkdtempSync(join(tmpdir(), 'hearth-grammar-'));
process.on('exit', () => rmSync(scratch, { recursive: true, force: true }));

let failures = 0;
function report(name, ok, detail) {
  if (ok) {
    console.log(`ok   ${name}`);
  } else {
    failures++;
    if (detail) console.log(`  ${String(detail).split('\n').join('\n  ')}`);
    console.log(`FAIL ${name}`);
  }
}

// mulberry32: a small seeded generator.
function rng(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const names = ['name', 'age', 'tags', 'say "hi"', 'ключ', 'two words', 'id', 'émoji😀', 'x'];
const words = ['red', 'green', 'blue', 'Ünïcode', 'tab\there', 'quote"d', ''];

function randomSchema(r, depth, defs) {
  const pick = (a) => a[Math.floor(r() * a.length)];
  const n = (k) => Math.floor(r() * k);
  const kind = depth >= 3 ? n(7) : n(14);
  switch (kind) {
    case 0: {
      const s = { type: 'string' };
      if (r() < 0.4) s.maxLength = n(12);
      if (r() < 0.3) s.minLength = Math.min(n(4), s.maxLength ?? 4);
      return s;
    }
    case 1: return { type: 'number' };
    case 2: return { type: 'integer' };
    case 3: return { type: 'boolean' };
    case 4: return { type: 'null' };
    case 5: {
      const values = [];
      for (let i = 1 + n(4); i > 0; i--) {
        const w = n(5);
        values.push(w === 0 ? pick(words) : w === 1 ? n(1000) - 500 : w === 2 ? null : w === 3 ? r() < 0.5 : { k: [1, 'two'] });
      }
      return r() < 0.2 ? { const: values[0] } : { enum: values };
    }
    case 6: return { type: [pick(['string', 'integer', 'boolean']), 'null'] };
    case 7:
    case 8:
    case 9: {
      const s = { type: 'object', properties: {} };
      const required = [];
      for (let i = n(5); i > 0; i--) {
        const k = pick(names);
        if (k in s.properties) continue;
        s.properties[k] = randomSchema(r, depth + 1, defs);
        if (r() < 0.5) required.push(k);
      }
      if (required.length) s.required = required;
      const ap = n(4);
      if (ap === 0) s.additionalProperties = false;
      if (ap === 1) s.additionalProperties = true;
      if (ap === 2 && Object.keys(s.properties).length === 0) s.additionalProperties = { type: 'integer' };
      return s;
    }
    case 10:
    case 11: {
      const s = { type: 'array', items: randomSchema(r, depth + 1, defs) };
      const lo = n(3);
      if (r() < 0.5) s.minItems = lo;
      if (r() < 0.6) s.maxItems = lo + n(4);
      return s;
    }
    case 12: return { anyOf: [randomSchema(r, depth + 1, defs), randomSchema(r, depth + 1, defs)] };
    default: {
      const name = `d${Object.keys(defs).length}`;
      defs[name] = {}; // taken before the recursion can take it
      defs[name] = randomSchema(r, depth + 1, defs);
      return { $ref: `#/$defs/${name}` };
    }
  }
}

function makeSchema(i) {
  if (i === 0) return { type: 'object' }; // response_format json_object
  const r = rng(1000 + i);
  const defs = {};
  const s = randomSchema(r, 0, defs);
  if (Object.keys(defs).length) {
    // $ref only resolves from the root: give a $ref root a sibling-free wrapper.
    return s.$ref ? { $defs: defs, anyOf: [s] } : { ...s, $defs: defs };
  }
  return s;
}

function convert() {
  const out = join(scratch, 'qwen3.gguf');
  const r = spawnSync(bin, ['convert', join(root, 'tests/data/hf/qwen3'), out, '--type', 'f32']);
  if (r.status !== 0) throw new Error(`convert: ${r.stderr}`);
  return out;
}

const prompt = 'JSON: ';
function generate(model, schemaText, seed) {
  const file = join(scratch, `schema-${seed}.json`);
  writeFileSync(file, schemaText);
  return spawnSync(bin, ['run', '-m', model, '-p', prompt, '--json-schema', file, '-n', '200',
    '-t', '1', '--temp', '1', '--seed', String(seed)], { encoding: 'utf8', timeout: 30000 });
}

let model;
try {
  model = convert();
} catch (e) {
  report('grammar/setup', false, e.message);
  process.exit(1);
}

const ajv = new Ajv2020({ strict: true, allErrors: true });

{
  const problems = [];
  let valid = 0;
  for (let i = 0; i < 100; i++) {
    const schema = makeSchema(i);
    const text = JSON.stringify(schema);
    const r = generate(model, text, i + 1);
    if (r.status !== 0 || !r.stdout.startsWith(prompt)) {
      problems.push(`schema ${text}: exit ${r.status}: ${r.stderr}`);
      continue;
    }
    const out = r.stdout.slice(prompt.length).replace(/\n$/, '');
    let value;
    try {
      value = JSON.parse(out);
    } catch (e) {
      problems.push(`schema ${text}: output does not parse (${e.message}): ${out}`);
      continue;
    }
    let validate;
    try {
      validate = ajv.compile(schema);
    } catch (e) {
      problems.push(`schema ${text}: ajv refuses the schema itself: ${e.message}`);
      continue;
    }
    if (!validate(value)) {
      problems.push(`schema ${text}: output ${out} fails: ${ajv.errorsText(validate.errors)}`);
      continue;
    }
    valid++;
  }
  console.log(`note: ${valid} of 100 random schemas: the output parses and ajv validates it`);
  report('grammar/random_schemas_validate_with_ajv', valid === 100, problems.slice(0, 5).join('\n'));
}

{
  const bad = [
    ['{"type":"string","pattern":"^a+$"}', "keyword 'pattern' is not supported"],
    ['{"properties":{"age":{"type":"integer","minimum":0}}}', "#/properties/age: keyword 'minimum'"],
    ['{"type":"object",', 'not JSON'],
    ['{"type":"integer","enum":["a"]}', 'no value of enum/const'],
    ['{"type":"object","properties":{"a":{}},"required":["b"]}', "required property 'b'"],
    ['{"$ref":"#/$defs/nowhere"}', 'not found'],
    ['{"type":"object","properties":{"me":{"$ref":"#"}},"required":["me"]}', 'can never finish'],
  ];
  const problems = [];
  for (const [text, needle] of bad) {
    const t0 = Date.now();
    const r = generate(model, text, 1);
    const lines = r.stderr.split('\n').filter((l) => l.length);
    if (r.status === 0 || r.stdout !== '' || lines.length !== 1 || !lines[0].includes(needle) ||
        Date.now() - t0 > 10000) {
      problems.push(`${text}: exit ${r.status}, stdout '${r.stdout}', stderr '${r.stderr}'`);
    }
  }
  report('grammar/bad_schemas_are_one_clear_error', problems.length === 0, problems.join('\n'));
}

process.exit(failures ? 1 : 0);
