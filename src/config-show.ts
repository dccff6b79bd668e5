// How a user's input appears in config messages: bounded and escaped, so that every problem
// stays one short line that cannot repaint a terminal, whatever the file holds (issue 7 item 5).
// Pure. Every function here is linear in what it prints, not in the size of its input.

/** Most characters of a user's string, key or value that a message shows (escapes included). */
export const SHOWN_CHARS = 60;

/** `text[i]` as it appears inside a shown string: printable ASCII as is, the rest escaped. */
function escapeChar(text: string, i: number): string {
  const c = text.charCodeAt(i);
  if (c === 0x22) return '\\"';
  if (c === 0x5c) return '\\\\';
  if (c >= 0x20 && c < 0x7f) return text[i]!;
  if (c === 0x0a) return '\\n';
  if (c === 0x0d) return '\\r';
  if (c === 0x09) return '\\t';
  // Control characters (escape sequences start with ESC), and every non-ASCII character:
  // look-alikes and invisible ones (a BOM, bidi overrides) cannot hide in a message.
  return `\\u${c.toString(16).padStart(4, '0')}`;
}

/** `text` with every character outside printable ASCII escaped, cut to about `limit` characters with `…`. */
export function printable(text: string, limit = SHOWN_CHARS): string {
  let out = '';
  let i = 0;
  for (; i < text.length && out.length < limit; i++) out += escapeChar(text, i);
  return i < text.length ? `${out}…` : out;
}

/**
 * A user's string as a double-quoted literal with JSON escapes (non-ASCII too). A string whose
 * escaped form is longer than SHOWN_CHARS is cut there and followed by its length:
 * `"aaaa"…(20000000 characters)`.
 */
export function quote(text: string): string {
  let out = '';
  let i = 0;
  for (; i < text.length && out.length < SHOWN_CHARS; i++) out += escapeChar(text, i);
  return i < text.length ? `"${out}"…(${text.length} characters)` : `"${out}"`;
}

/** Builds text until it passes `limit` characters, then ignores the rest. */
class Bounded {
  text = '';
  constructor(private readonly limit: number) {}
  get full(): boolean {
    return this.text.length > this.limit;
  }
  add(part: string): void {
    if (!this.full) this.text += part;
  }
}

/** JSON-like text of `value` into `out`, stopping as soon as `out` is full. */
function render(value: unknown, out: Bounded): void {
  if (out.full) return;
  if (typeof value === 'string') out.add(quote(value));
  else if (Array.isArray(value)) {
    out.add('[');
    // Each level adds a character before descending, so a full buffer also bounds the depth.
    for (let i = 0; i < value.length && !out.full; i++) {
      if (i > 0) out.add(',');
      render(value[i], out);
    }
    out.add(']');
  } else if (typeof value === 'object' && value !== null) {
    out.add('{');
    let first = true;
    for (const key in value) {
      if (out.full) break;
      if (!first) out.add(',');
      first = false;
      out.add(`${quote(key)}:`);
      render((value as Record<string, unknown>)[key], out);
    }
    out.add('}');
  } else {
    // Numbers (Infinity where JSON has no word for it), booleans, null.
    out.add(String(value));
  }
}

/**
 * A value as a message shows it after `got`: JSON-like, escaped, at most about SHOWN_CHARS
 * characters (cut with `…`). A number JSON.parse read as Infinity (`1e400`) is said as such,
 * not as JSON.stringify's `null`.
 */
export function preview(value: unknown): string {
  if (value === undefined) return 'nothing';
  if (typeof value === 'number' && !Number.isFinite(value)) {
    if (Number.isNaN(value)) return 'NaN';
    return value > 0 ? 'a number too large' : 'a negative number too large';
  }
  if (typeof value === 'string') return quote(value);
  const out = new Bounded(SHOWN_CHARS);
  render(value, out);
  return out.full ? `${out.text.slice(0, SHOWN_CHARS)}…` : out.text;
}

const IDENTIFIER = /^[A-Za-z_$][A-Za-z0-9_$]*$/;

/**
 * The path of `key` inside the object at `path` (`config` is the root): `backends[0].weight`,
 * or with a key that is not a short identifier, `backends[0]["a\nb"]`.
 */
export function memberPath(path: string, key: string): string {
  const plain = key.length <= SHOWN_CHARS && IDENTIFIER.test(key);
  if (path === 'config') return plain ? key : `[${quote(key)}]`;
  return plain ? `${path}.${key}` : `${path}[${quote(key)}]`;
}
