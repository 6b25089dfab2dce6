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
import { makeSchema } from './schemagen.mjs';

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
