#!/usr/bin/env node
// markdown.test.mjs — the dashboard's Markdown renderer (web/md.js) on its
// own, in Node: what it renders, and that no input gets markup of its own
// into the page (HTML in the text, attribute breakouts, script links).
import { check, failed, test } from '../server/lib.mjs';
import { escapeHtml, renderInline, renderMarkdown } from '../../web/md.js';

// Every tag in html, by name.
const tags = (html) => [...html.matchAll(/<\/?([a-zA-Z][a-zA-Z0-9]*)/g)].map((m) => m[1].toLowerCase());
const ALLOWED = new Set(['p', 'br', 'strong', 'em', 'del', 'code', 'pre', 'a', 'h1', 'h2', 'h3', 'h4', 'h5', 'h6',
  'ul', 'ol', 'li', 'blockquote', 'hr', 'table', 'thead', 'tbody', 'tr', 'th', 'td', 'div', 'span', 'button']);

await test('markdown/blocks_and_inline', () => {
  const html = renderMarkdown(
    '# Title\n\nSome **bold**, *italic*, ~~gone~~ and `a < b`.\nNext line\n\n' +
      '- one\n- two\n  - nested\n\n3. three\n4. four\n\n' +
      '```c\nint main(void) { return 1 < 2; }\n```\n\n| a | b |\n|:--|--:|\n| 1 | 2 |\n\n> quoted\n\n---\n',
  );
  check(html.includes('<h1>Title</h1>'), html);
  check(html.includes('<strong>bold</strong>') && html.includes('<em>italic</em>') && html.includes('<del>gone</del>'), html);
  check(html.includes('<code>a &lt; b</code>'), 'inline code escaped');
  check(html.includes('.<br>Next line'), 'line breaks kept');
  check(html.includes('<ul><li>one</li><li>two<ul><li>nested</li></ul></li></ul>'), 'nested list');
  check(html.includes('<ol start="3"><li>three</li><li>four</li></ol>'), 'ordered list start');
  check(html.includes('<pre><code class="language-c">int main(void) { return 1 &lt; 2; }</code></pre>'), 'code block');
  check(html.includes('<span class="code-lang">c</span>'), 'language label');
  check(html.includes('<th class="align-left">a</th><th class="align-right">b</th>'), 'table');
  check(html.includes('<blockquote><p>quoted</p></blockquote>') && html.includes('<hr>'), 'quote and rule');
});

await test('markdown/streaming_unclosed_fence_runs_to_the_end', () => {
  const html = renderMarkdown('Here:\n```py\nprint("<hi>")\nx = 1');
  check(html.includes('<code class="language-py">print(&quot;&lt;hi&gt;&quot;)\nx = 1</code>'), html);
});

await test('markdown/arithmetic_and_identifiers_are_not_emphasis', () => {
  const html = renderMarkdown('2 * 3 * 4 and snake_case_name and a*b');
  check(!html.includes('<em>'), html);
});

await test('markdown/links_only_http_https_mailto', () => {
  const ok = renderInline('[docs](https://example.com/a?b=1&c=2)');
  check(ok === '<a href="https://example.com/a?b=1&amp;c=2" target="_blank" rel="noopener noreferrer">docs</a>', ok);
  check(renderInline('[mail](mailto:a@b.c)').includes('href="mailto:a@b.c"'), 'mailto');
  for (const bad of ['javascript:alert(1)', 'JAVASCRIPT:alert(1)', 'data:text/html,<script>x</script>', 'vbscript:x', '//evil.example/x']) {
    const html = renderInline(`[x](${bad})`);
    check(!html.includes('<a'), `${bad} became a link: ${html}`);
  }
  const under = renderInline('[a](https://x.y/_b_/c*d*)');
  check(under.includes('href="https://x.y/_b_/c*d*"'), `emphasis inside a link target: ${under}`);
});

await test('markdown/no_markup_from_the_text', () => {
  const attacks = [
    '<script>alert(1)</script>',
    '<img src=x onerror=alert(1)>',
    '"><svg onload=alert(1)>',
    '[x](https://a.b/"onmouseover="alert(1))',
    "[x](https://a.b/'onmouseover='alert(1))",
    '[<img src=x onerror=alert(1)>](https://a.b/)',
    '`</code><script>alert(1)</script>`',
    '```"><script>alert(1)</script>\ncode\n```',
    '| <b>h</b> |\n|---|\n| <i onclick=x>c</i> |',
    '# <iframe src=javascript:alert(1)>',
    '> <style>body{display:none}</style>',
    '- <a href="javascript:alert(1)">x</a>',
    '**<u>b</u>** _<s>i</s>_ ~~<x>~~',
    '\u0000<b>\u0000',
  ];
  for (const a of attacks) {
    const html = renderMarkdown(a);
    for (const t of tags(html)) check(ALLOWED.has(t), `tag <${t}> from ${JSON.stringify(a)}: ${html}`);
    // Only our attributes, each quoted with no quote inside.
    for (const m of html.matchAll(/<[a-z0-9]+([^>]*)>/gi)) {
      check(/^(\s+(href|target|rel|class|start|type)="[^"<>]*")*\s*$/.test(m[1]), `attributes ${m[1]} from ${JSON.stringify(a)}`);
    }
    check(!/href="(?!https?:|mailto:)/i.test(html), `unsafe href from ${JSON.stringify(a)}: ${html}`);
    const opens = (html.match(/</g) || []).length;
    const known = tags(html).length;
    check(opens === known, `stray '<' in ${JSON.stringify(a)}: ${html}`);
  }
});

await test('markdown/escape_html', () => {
  check(escapeHtml(`<a href="x">'&'</a>`) === '&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;', 'escape');
});

process.exit(failed() ? 1 : 0);
