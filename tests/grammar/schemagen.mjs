// schemagen.mjs — random JSON schemas of what hearth's JSON-schema
// compiler supports, from a seeded generator (so a failure reproduces):
// objects with required and optional properties (names with quotes,
// spaces, non-ASCII), nested objects, additionalProperties
// false/true/a schema, arrays with minItems/maxItems, strings with
// enum/minLength/maxLength, numbers, integers, booleans, null, type lists,
// anyOf, const, $defs/$ref, and (schema 0) the bare {"type":"object"} of
// response_format json_object.  Shared by schemas.test.mjs (hearth run)
// and server.test.mjs (hearth serve).

// mulberry32: a small seeded generator.
export function rng(seed) {
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

export function makeSchema(i) {
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

