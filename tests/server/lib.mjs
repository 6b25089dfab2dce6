// lib.mjs — helpers shared by the server tests and the benchmark: starting
// and stopping the real `hearth serve` process, reporting results in the
// suite's "ok   name" / "FAIL name" format, and a small SSE client on fetch.
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, existsSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export const root = new URL('../../', import.meta.url).pathname;
export const bin = process.env.HEARTH_BIN || join(root, 'build/release/hearth');
export const shared = process.env.HEARTH_SHARED || join(root, '../shared');
export const scratch = mkdtempSync(join(tmpdir(), 'hearth-node-'));
process.on('exit', () => rmSync(scratch, { recursive: true, force: true }));

let failures = 0;
export function report(name, ok, detail) {
  if (ok) {
    console.log(`ok   ${name}`);
  } else {
    failures++;
    if (detail) console.log(`  ${String(detail).split('\n').join('\n  ')}`);
    console.log(`FAIL ${name}`);
  }
}
export function failed() {
  return failures;
}

// Runs fn as a named test; an exception is a failure with its message.
export async function test(name, fn) {
  try {
    const detail = await fn();
    report(name, detail === undefined || detail === true, detail === true ? undefined : detail);
  } catch (e) {
    report(name, false, e && e.stack ? e.stack : e);
  }
}

export function check(cond, msg) {
  if (!cond) throw new Error(msg);
}

// A GGUF converted from one of the tiny Hugging Face fixtures (cached).
export function fixtureModel(arch) {
  const out = join(scratch, `${arch}.gguf`);
  if (!existsSync(out)) {
    const r = spawnSync(bin, ['convert', join(root, 'tests/data/hf', arch), out, '--type', 'f32']);
    if (r.status !== 0) throw new Error(`convert ${arch}: ${r.stderr}`);
  }
  return out;
}

// A random-weight model of a real shape (hearth synth), for timing tests.
export function synthModel(preset, type = 'q4_0') {
  const out = join(scratch, `${preset}-${type}.gguf`);
  if (!existsSync(out)) {
    const r = spawnSync(bin, ['synth', '--preset', preset, '--type', type, out]);
    if (r.status !== 0) throw new Error(`synth ${preset}: ${r.stderr}`);
  }
  return out;
}

// `hearth run --temp 0` continuation of prompt (without the echoed prompt).
export function runGreedy(model, prompt, n) {
  const r = spawnSync(bin, ['run', '-m', model, '-p', prompt, '-n', String(n), '--temp', '0', '-t', '2'], {
    encoding: 'utf8',
  });
  if (r.status !== 0) throw new Error(`run: ${r.stderr}`);
  let text = r.stdout;
  if (text.endsWith('\n')) text = text.slice(0, -1);
  if (!text.startsWith(prompt)) throw new Error('run did not echo the prompt');
  return text.slice(prompt.length);
}

// Starts `hearth serve args --port 0`; resolves to { port, url, pid, stop() }.
// stop() sends SIGTERM and resolves to { code, signal, stderr }.
export function startServer(args) {
  return new Promise((resolve, reject) => {
    const proc = spawn(bin, ['serve', ...args, '--port', '0'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '';
    let out = '';
    let settled = false;
    proc.stderr.on('data', (d) => {
      stderr += d;
    });
    const exited = new Promise((res) => proc.on('exit', (code, signal) => res({ code, signal })));
    proc.stdout.on('data', (d) => {
      out += d;
      const m = out.match(/listening on http:\/\/[^\s]*:(\d+)/);
      if (m && !settled) {
        settled = true;
        const port = Number(m[1]);
        resolve({
          port,
          url: `http://127.0.0.1:${port}`,
          pid: proc.pid,
          stderr: () => stderr,
          async stop() {
            proc.kill('SIGTERM');
            const r = await exited;
            return { ...r, stderr };
          },
        });
      }
    });
    exited.then((r) => {
      if (!settled) {
        settled = true;
        reject(new Error(`server exited (${r.code}) before listening: ${stderr}`));
      }
    });
  });
}

// Resident memory of a process in bytes (Linux).
export function rssBytes(pid) {
  const m = readFileSync(`/proc/${pid}/status`, 'utf8').match(/VmRSS:\s+(\d+) kB/);
  return m ? Number(m[1]) * 1024 : 0;
}

// Posts body to url+path and reads the SSE stream.  Resolves to
// { status, events (parsed JSON payloads), done ([DONE] seen), text,
//   ttft (ms to the first content), t0 }.  abortAfter: abort after that
// many content events (a client hanging up mid-stream).
export async function streamRequest(url, path, body, { headers = {}, abortAfter = 0 } = {}) {
  const ctl = new AbortController();
  const t0 = performance.now();
  const res = await fetch(url + path, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json', ...headers },
    body: JSON.stringify({ ...body, stream: true }),
    signal: ctl.signal,
  });
  const out = { status: res.status, events: [], done: false, text: '', ttft: null, aborted: false, t0 };
  if (res.status !== 200) {
    out.error = await res.text();
    return out;
  }
  const decoder = new TextDecoder();
  let buf = '';
  let contentEvents = 0;
  try {
    for await (const chunk of res.body) {
      buf += decoder.decode(chunk, { stream: true });
      let at;
      while ((at = buf.indexOf('\n\n')) >= 0) {
        const ev = buf.slice(0, at);
        buf = buf.slice(at + 2);
        if (!ev.startsWith('data: ')) continue;
        const data = ev.slice(6);
        if (data === '[DONE]') {
          out.done = true;
          continue;
        }
        const j = JSON.parse(data);
        out.events.push(j);
        const c = j.choices && j.choices[0];
        const piece = c ? (c.delta ? c.delta.content : c.text) : undefined;
        if (piece) {
          if (out.ttft === null) out.ttft = performance.now() - t0;
          out.text += piece;
          contentEvents++;
          if (abortAfter && contentEvents >= abortAfter) {
            out.aborted = true;
            ctl.abort();
            return out;
          }
        }
      }
    }
  } catch (e) {
    if (!out.aborted) throw e;
  }
  return out;
}

export async function postJson(url, path, body, headers = {}) {
  const res = await fetch(url + path, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json', ...headers },
    body: JSON.stringify(body),
  });
  return { status: res.status, json: await res.json() };
}

// Parses Prometheus text into { 'name{labels}': value }.
export async function metrics(url) {
  const text = await (await fetch(url + '/metrics')).text();
  const m = {};
  for (const line of text.split('\n')) {
    if (!line || line.startsWith('#')) continue;
    const sp = line.lastIndexOf(' ');
    m[line.slice(0, sp)] = Number(line.slice(sp + 1));
  }
  return m;
}

export function median(xs) {
  const s = [...xs].sort((a, b) => a - b);
  return s.length ? s[Math.floor(s.length / 2)] : NaN;
}
