// md.js — a small, safe Markdown renderer for chat replies.
//
// Safety: every piece of source text is HTML-escaped before anything else
// happens; the only markup in the output is the fixed set of tags this
// file writes.  Links keep only http:, https: and mailto: targets, whose
// text was escaped too (no quote can end the attribute).  Raw HTML in the
// source is shown as text.
//
// Supported: fenced code blocks (``` or ~~~, with a language label; an
// unclosed fence while a reply streams runs to the end), inline code,
// headings, paragraphs (single newlines kept as line breaks), bold,
// italic, strikethrough, links, block quotes, ordered and unordered lists
// (nested by indentation), tables and horizontal rules.

const ESC = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' };

export function escapeHtml(s) {
  return String(s).replace(/[&<>"']/g, (c) => ESC[c]);
}

const FENCE = /^ {0,3}(`{3,}|~{3,})\s*([^\s`]*)/;
const HEADING = /^ {0,3}(#{1,6})\s+(.*?)\s*#*\s*$/;
const RULE = /^ {0,3}([-*_])(\s*\1){2,}\s*$/;
const QUOTE = /^ {0,3}>\s?/;
const ITEM = /^(\s*)([-*+]|\d{1,9}[.)])\s+(.*)$/;
const TABLE_SEP = /^\s*\|?\s*:?-{1,}:?\s*(\|\s*:?-{1,}:?\s*)*\|?\s*$/;

// Emphasis, strikethrough and links over already escaped text.  Links are
// set aside first so that no emphasis lands inside an href.
function emphasis(t) {
  const links = [];
  t = t.replace(/\[([^\]\n]+)\]\(([^()\s]+)\)/g, (m, text, url) => {
    if (!/^(https?:\/\/|mailto:)/i.test(url)) return m;
    links.push(`<a href="${url}" target="_blank" rel="noopener noreferrer">${emphasis(text)}</a>`);
    return `\u0000${links.length - 1}\u0000`;
  });
  t = t.replace(/\*\*(?=\S)([^*]*?\S)\*\*/g, '<strong>$1</strong>');
  t = t.replace(/(^|[^\w])__(?=\S)([^_]*?\S)__(?!\w)/g, '$1<strong>$2</strong>');
  // A lone "*" between spaces (3 * 4) is not emphasis.
  t = t.replace(/(^|[^*\w])\*(?=[^\s*])([^*]*?[^\s*])?\*(?!\*)/g, '$1<em>$2</em>');
  t = t.replace(/(^|[^\w])_(?=\S)([^_]*?\S)_(?!\w)/g, '$1<em>$2</em>');
  t = t.replace(/~~(?=\S)([^~]*?\S)~~/g, '<del>$1</del>');
  return t.replace(/\u0000(\d+)\u0000/g, (_, k) => links[Number(k)]);
}

// One line (or a paragraph's lines) of inline Markdown to HTML.
export function renderInline(src) {
  let out = '';
  let rest = String(src).replace(/\u0000/g, '\ufffd');
  // Code spans first: their content is literal.
  for (;;) {
    const m = /(`+)([\s\S]*?[^`])\1(?!`)/.exec(rest);
    if (!m) break;
    out += emphasis(escapeHtml(rest.slice(0, m.index)));
    let code = m[2];
    if (/^ .* $/.test(code)) code = code.slice(1, -1);
    out += `<code>${escapeHtml(code)}</code>`;
    rest = rest.slice(m.index + m[0].length);
  }
  return out + emphasis(escapeHtml(rest));
}

function splitRow(line) {
  let s = line.trim();
  if (s.startsWith('|')) s = s.slice(1);
  if (s.endsWith('|') && !s.endsWith('\\|')) s = s.slice(0, -1);
  return s.split(/(?<!\\)\|/).map((c) => c.trim().replace(/\\\|/g, '|'));
}

function isBlockStart(line, next) {
  return (
    FENCE.test(line) ||
    HEADING.test(line) ||
    RULE.test(line) ||
    QUOTE.test(line) ||
    ITEM.test(line) ||
    (line.includes('|') && next !== undefined && TABLE_SEP.test(next) && next.includes('-'))
  );
}

// Markdown source to HTML (a string safe to assign to innerHTML).
export function renderMarkdown(src) {
  // NUL marks set-aside links (see emphasis); it has no business in text.
  const lines = String(src ?? '').replace(/\u0000/g, '\ufffd').replace(/\r\n?/g, '\n').split('\n');
  return renderLines(lines, 0);
}

function renderLines(lines, depth) {
  const out = [];
  let i = 0;
  while (i < lines.length) {
    const line = lines[i];
    let m;
    if (!line.trim()) {
      i++;
      continue;
    }
    if ((m = FENCE.exec(line))) {
      const fence = m[1];
      const lang = m[2];
      const body = [];
      i++;
      while (i < lines.length) {
        const close = /^ {0,3}(`{3,}|~{3,})\s*$/.exec(lines[i]);
        if (close && close[1][0] === fence[0] && close[1].length >= fence.length) break;
        body.push(lines[i]);
        i++;
      }
      i++; // the closing fence (or past the end)
      const label = lang ? `<span class="code-lang">${escapeHtml(lang)}</span>` : '';
      const cls = lang ? ` class="language-${escapeHtml(lang.replace(/[^\w+#.-]/g, ''))}"` : '';
      out.push(
        `<div class="code-block">${label}<button type="button" class="copy-code">copy</button>` +
          `<pre><code${cls}>${escapeHtml(body.join('\n'))}</code></pre></div>`,
      );
      continue;
    }
    if ((m = HEADING.exec(line))) {
      const n = m[1].length;
      out.push(`<h${n}>${renderInline(m[2])}</h${n}>`);
      i++;
      continue;
    }
    if (RULE.test(line)) {
      out.push('<hr>');
      i++;
      continue;
    }
    if (QUOTE.test(line)) {
      const body = [];
      while (i < lines.length && QUOTE.test(lines[i])) body.push(lines[i++].replace(QUOTE, ''));
      out.push(`<blockquote>${depth < 8 ? renderLines(body, depth + 1) : renderInline(body.join(' '))}</blockquote>`);
      continue;
    }
    if ((m = ITEM.exec(line))) {
      i = renderList(lines, i, depth, out);
      continue;
    }
    if (line.includes('|') && i + 1 < lines.length && TABLE_SEP.test(lines[i + 1]) && lines[i + 1].includes('-')) {
      const head = splitRow(line);
      const align = splitRow(lines[i + 1]).map((c) =>
        c.startsWith(':') && c.endsWith(':') ? 'center' : c.endsWith(':') ? 'right' : c.startsWith(':') ? 'left' : '',
      );
      i += 2;
      const rows = [];
      while (i < lines.length && lines[i].trim() && lines[i].includes('|')) rows.push(splitRow(lines[i++]));
      const cell = (tag, text, k) =>
        `<${tag}${align[k] ? ` class="align-${align[k]}"` : ''}>${renderInline(text ?? '')}</${tag}>`;
      out.push(
        '<table><thead><tr>' +
          head.map((c, k) => cell('th', c, k)).join('') +
          '</tr></thead><tbody>' +
          rows.map((r) => '<tr>' + head.map((_, k) => cell('td', r[k], k)).join('') + '</tr>').join('') +
          '</tbody></table>',
      );
      continue;
    }
    // A paragraph: up to a blank line or the start of another block.
    const para = [line];
    i++;
    while (i < lines.length && lines[i].trim() && !isBlockStart(lines[i], lines[i + 1])) para.push(lines[i++]);
    out.push(`<p>${para.map((l) => renderInline(l.trim())).join('<br>')}</p>`);
  }
  return out.join('\n');
}

// A list starting at lines[i]; items of the same indentation, their
// continuation lines and deeper lines (nested lists) belong to it.
function renderList(lines, i, depth, out) {
  const first = ITEM.exec(lines[i]);
  const indent = first[1].length;
  const ordered = /\d/.test(first[2]);
  const start = ordered ? parseInt(first[2], 10) : 1;
  const items = [];
  while (i < lines.length) {
    const line = lines[i];
    const m = ITEM.exec(line);
    if (m && m[1].length === indent && /\d/.test(m[2]) === ordered) {
      items.push([m[3]]);
      i++;
      continue;
    }
    if (!line.trim()) {
      // A blank line ends the list unless the next line is indented into it.
      const next = lines[i + 1];
      if (next !== undefined && next.trim() && /^\s*/.exec(next)[0].length > indent) {
        items[items.length - 1].push('');
        i++;
        continue;
      }
      break;
    }
    const lead = /^\s*/.exec(line)[0].length;
    if (lead > indent || (!m && !isBlockStart(line, lines[i + 1]))) {
      items[items.length - 1].push(line.slice(Math.min(lead, indent + 2)));
      i++;
      continue;
    }
    break;
  }
  const tag = ordered ? 'ol' : 'ul';
  const attr = ordered && start !== 1 ? ` start="${start}"` : '';
  const lis = items.map((body) => {
    const simple = body.length === 1 || body.every((l, k) => k === 0 || (l.trim() && !isBlockStart(l)));
    if (simple || depth >= 8) return `<li>${body.map((l) => renderInline(l.trim())).join('<br>')}</li>`;
    // First line inline, the rest as blocks (nested lists, code).
    return `<li>${renderInline(body[0].trim())}${renderLines(body.slice(1), depth + 1)}</li>`;
  });
  out.push(`<${tag}${attr}>${lis.join('')}</${tag}>`);
  return i;
}
