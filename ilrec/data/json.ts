// A small JSON parser that keeps 1-based line numbers and duplicate keys of a top-level
// object, which JSON.parse cannot: errors must name the line, and duplicate users must not merge.

import { DataFormatError } from './dataset.js';

export type JsonValue = null | boolean | number | string | JsonValue[] | { [key: string]: JsonValue };

/** One key of the top-level object, in file order (duplicates included). */
export interface JsonEntry {
  key: string;
  /** Line of the key. */
  line: number;
  value: JsonValue;
  /** When value is an array: the line of each element. */
  elementLines?: number[];
}

/**
 * Parses a document whose root is an object; returns its entries in file order with
 * line numbers. Throws DataFormatError(file, line) on any syntax error.
 */
export function parseTopLevelObject(text: string, file: string): JsonEntry[] {
  const p = new Parser(text, file);
  p.skipWs();
  if (p.peek() !== CH_LBRACE) p.fail('expected a JSON object at the top level');
  p.pos++;
  const entries: JsonEntry[] = [];
  p.skipWs();
  if (p.peek() === CH_RBRACE) p.pos++;
  else
    for (;;) {
      p.skipWs();
      const line = p.line;
      if (p.peek() !== CH_QUOTE) p.fail('expected a string key');
      const key = p.parseString();
      p.skipWs();
      p.expect(CH_COLON, "':'");
      p.skipWs();
      let value: JsonValue;
      let elementLines: number[] | undefined;
      if (p.peek() === CH_LBRACKET) {
        elementLines = [];
        value = p.parseArray(elementLines);
      } else value = p.parseValue();
      entries.push(elementLines ? { key, line, value, elementLines } : { key, line, value });
      p.skipWs();
      const c = p.peek();
      p.pos++;
      if (c === CH_COMMA) continue;
      if (c === CH_RBRACE) break;
      p.pos--;
      p.fail("expected ',' or '}'");
    }
  p.skipWs();
  if (p.pos < text.length) p.fail('unexpected content after the top-level object');
  return entries;
}

const CH_LBRACE = 0x7b;
const CH_RBRACE = 0x7d;
const CH_LBRACKET = 0x5b;
const CH_RBRACKET = 0x5d;
const CH_QUOTE = 0x22;
const CH_COLON = 0x3a;
const CH_COMMA = 0x2c;
const CH_BACKSLASH = 0x5c;
const CH_NEWLINE = 0x0a;

class Parser {
  pos = 0;
  line = 1;
  constructor(
    private readonly s: string,
    private readonly file: string,
  ) {}

  fail(msg: string): never {
    const near = this.pos < this.s.length ? JSON.stringify(this.s.slice(this.pos, this.pos + 20)) : 'end of file';
    throw new DataFormatError(this.file, this.line, `invalid JSON: ${msg} (at ${near})`);
  }

  peek(): number {
    return this.s.charCodeAt(this.pos);
  }

  expect(ch: number, what: string): void {
    if (this.peek() !== ch) this.fail(`expected ${what}`);
    this.pos++;
  }

  skipWs(): void {
    const s = this.s;
    for (;;) {
      const c = s.charCodeAt(this.pos);
      if (c === CH_NEWLINE) this.line++;
      else if (c !== 0x20 && c !== 0x09 && c !== 0x0d) return;
      this.pos++;
    }
  }

  parseValue(): JsonValue {
    const c = this.peek();
    if (c === CH_QUOTE) return this.parseString();
    if (c === CH_LBRACE) return this.parseObject();
    if (c === CH_LBRACKET) return this.parseArray();
    if (c === 0x2d || (c >= 0x30 && c <= 0x39)) return this.parseNumber();
    for (const [word, v] of LITERALS)
      if (this.s.startsWith(word, this.pos)) {
        this.pos += word.length;
        return v;
      }
    return this.fail('expected a value');
  }

  parseArray(elementLines?: number[]): JsonValue[] {
    this.pos++; // '['
    const out: JsonValue[] = [];
    this.skipWs();
    if (this.peek() === CH_RBRACKET) {
      this.pos++;
      return out;
    }
    for (;;) {
      this.skipWs();
      elementLines?.push(this.line);
      out.push(this.parseValue());
      this.skipWs();
      const c = this.peek();
      this.pos++;
      if (c === CH_COMMA) continue;
      if (c === CH_RBRACKET) return out;
      this.pos--;
      this.fail("expected ',' or ']'");
    }
  }

  parseObject(): { [key: string]: JsonValue } {
    this.pos++; // '{'
    const out: { [key: string]: JsonValue } = {};
    this.skipWs();
    if (this.peek() === CH_RBRACE) {
      this.pos++;
      return out;
    }
    for (;;) {
      this.skipWs();
      if (this.peek() !== CH_QUOTE) this.fail('expected a string key');
      const key = this.parseString();
      this.skipWs();
      this.expect(CH_COLON, "':'");
      this.skipWs();
      const v = this.parseValue();
      // Nested objects (e.g. item metadata) are not keyed by user: last-wins like JSON.parse,
      // but defined as an own data property so "__proto__" cannot touch the prototype.
      Object.defineProperty(out, key, { value: v, enumerable: true, writable: true, configurable: true });
      this.skipWs();
      const c = this.peek();
      this.pos++;
      if (c === CH_COMMA) continue;
      if (c === CH_RBRACE) return out;
      this.pos--;
      this.fail("expected ',' or '}'");
    }
  }

  parseString(): string {
    const s = this.s;
    const start = ++this.pos;
    // Fast path: no escapes.
    for (;;) {
      const c = s.charCodeAt(this.pos);
      if (c === CH_QUOTE) return s.slice(start, this.pos++);
      if (c === CH_BACKSLASH) break;
      if (Number.isNaN(c)) this.fail('unterminated string');
      if (c < 0x20) this.fail('control character in string');
      this.pos++;
    }
    // Slow path: find the closing quote, then let JSON.parse decode the escapes.
    let end = this.pos;
    for (;;) {
      const c = s.charCodeAt(end);
      if (Number.isNaN(c)) this.fail('unterminated string');
      if (c === CH_BACKSLASH) end += 2;
      else if (c === CH_QUOTE) break;
      else end++;
    }
    try {
      const v = JSON.parse(s.slice(start - 1, end + 1)) as string;
      this.pos = end + 1;
      return v;
    } catch {
      return this.fail('bad escape in string');
    }
  }

  parseNumber(): number {
    NUMBER_RE.lastIndex = this.pos;
    const m = NUMBER_RE.exec(this.s);
    if (!m) return this.fail('bad number');
    this.pos += m[0].length;
    return Number(m[0]);
  }
}

const LITERALS: [string, JsonValue][] = [
  ['true', true],
  ['false', false],
  ['null', null],
];
const NUMBER_RE = /-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?/y;

/** A value's JSON type name for error messages. */
export function jsonType(v: JsonValue): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'array';
  return typeof v;
}
