// The safetensors checkpoint format, parsed and written on plain bytes (browser-safe): a u64 LE header
// length N, N bytes of JSON {name: {dtype, shape, data_offsets}, "__metadata__"?}, then the data bytes.
//
// Checkpoints are untrusted input. Every structural check (header bounds, UTF-8, JSON shape, dtypes,
// shapes, offsets in bounds, sizes, overlaps) runs on the header alone, before any per-tensor memory is
// allocated, so a hostile file fails fast with an Error naming the file and the tensor.

/** The reference implementation's cap on the JSON header (safetensors' MAX_HEADER_SIZE). */
export const MAX_HEADER_BYTES = 100_000_000;
/** Bytes of the little-endian u64 that precedes the JSON header. */
export const HEADER_LENGTH_BYTES = 8;
/** The writer pads the JSON header with spaces to this multiple, so the data section stays aligned. */
const HEADER_ALIGN = 8;
const METADATA_KEY = '__metadata__';
const TWO_POW_32 = 2 ** 32;
const I32_MAX = 2 ** 31 - 1;
const I32_MIN = -(2 ** 31);

/** Element sizes in bytes of the dtypes the format defines (sub-byte F4/F6 types are rejected as unknown). */
export const DTYPE_BYTES = {
  BOOL: 1, U8: 1, I8: 1, F8_E5M2: 1, F8_E4M3: 1, F8_E8M0: 1,
  I16: 2, U16: 2, F16: 2, BF16: 2,
  I32: 4, U32: 4, F32: 4,
  I64: 8, U64: 8, F64: 8, C64: 8,
} as const;
export type SafetensorsDType = keyof typeof DTYPE_BYTES;

/** Dtypes read as f32 (F16/BF16/F64 converted) and as i32 (wider ints range-checked). */
const FLOAT_READ = new Set<SafetensorsDType>(['F32', 'F16', 'BF16', 'F64']);
const INT_READ = new Set<SafetensorsDType>(['BOOL', 'U8', 'I8', 'I16', 'U16', 'I32', 'U32', 'I64', 'U64']);
export const READABLE_DTYPES: readonly SafetensorsDType[] = [...FLOAT_READ, ...INT_READ];

/** One validated header entry; offsets are relative to the start of the data section. */
export interface TensorInfo {
  name: string;
  dtype: SafetensorsDType;
  shape: number[];
  numel: number;
  begin: number;
  end: number;
}

/** A tensor converted for the engine: float dtypes as Float32Array, integer dtypes as Int32Array. */
export interface LoadedTensor {
  /** The dtype stored in the file (data is already converted). */
  dtype: SafetensorsDType;
  shape: number[];
  data: Float32Array | Int32Array;
}

export interface SafetensorsHeader {
  metadata: Record<string, string>;
  /** Entries in header order. */
  tensors: Map<string, TensorInfo>;
  /** Absolute byte offset of the data section (8 + N). */
  dataStart: number;
  /** Bytes in the data section (file size − 8 − N). */
  dataLength: number;
}

/** A tensor to write: shape plus f32 or i32 data (the dtype follows from the array type). */
export interface TensorToWrite {
  shape: readonly number[];
  data: Float32Array | Int32Array;
}
export type TensorsToWrite = Record<string, TensorToWrite> | ReadonlyMap<string, TensorToWrite>;

function where(source: string | undefined): string {
  return `safetensors ${source ?? '<bytes>'}`;
}

function fail(source: string | undefined, msg: string, tensor?: string): never {
  throw new Error(`${where(source)}: ${tensor !== undefined ? `tensor ${JSON.stringify(tensor)}: ` : ''}${msg}`);
}

/** Typed arrays are host-endian; the format is little-endian. Every mainstream host is little-endian. */
const HOST_LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/**
 * Reads and bounds the u64 header length from the first 8 bytes of a file of `fileSize` bytes.
 * Throws before anything is allocated when N is absurd (≥ 2^32, > MAX_HEADER_BYTES or past the end).
 */
export function readHeaderLength(first8: Uint8Array, fileSize: number, source?: string): number {
  if (fileSize < HEADER_LENGTH_BYTES || first8.length < HEADER_LENGTH_BYTES)
    fail(source, `file is ${fileSize} bytes, shorter than the ${HEADER_LENGTH_BYTES}-byte header length (truncated?)`);
  const dv = new DataView(first8.buffer, first8.byteOffset, HEADER_LENGTH_BYTES);
  const lo = dv.getUint32(0, true);
  const hi = dv.getUint32(4, true);
  // hi·2^32 + lo is only exact below 2^53; anything with hi ≠ 0 is far over the cap anyway.
  const n = hi * TWO_POW_32 + lo;
  if (hi !== 0 || n > MAX_HEADER_BYTES)
    fail(source, `header length ${hi !== 0 ? `≈${n.toExponential(3)}` : n} exceeds the ${MAX_HEADER_BYTES}-byte limit (corrupt or not a safetensors file)`);
  if (n > fileSize - HEADER_LENGTH_BYTES)
    fail(source, `header length ${n} is larger than the ${fileSize - HEADER_LENGTH_BYTES} bytes after the length field (truncated file?)`);
  if (n < 2) fail(source, `header length ${n} is too short for a JSON object`);
  return n;
}

function checkedNumel(shape: number[], source: string | undefined, name: string): number {
  let n = 1;
  for (const d of shape) {
    n *= d;
    if (!Number.isSafeInteger(n)) fail(source, `shape [${shape.join(',')}] has more than 2^53 elements`, name);
  }
  return n;
}

function parseEntry(name: string, raw: unknown, dataLength: number, source: string | undefined): TensorInfo {
  if (!isPlainObject(raw)) fail(source, `header entry is not an object`, name);
  const { dtype, shape, data_offsets: offsets } = raw;
  if (typeof dtype !== 'string' || !Object.hasOwn(DTYPE_BYTES, dtype))
    fail(source, `unknown dtype ${JSON.stringify(dtype)} (known: ${Object.keys(DTYPE_BYTES).join(', ')})`, name);
  const dt = dtype as SafetensorsDType;
  if (!Array.isArray(shape)) fail(source, `shape ${JSON.stringify(shape)} is not an array`, name);
  for (const d of shape)
    if (typeof d !== 'number' || !Number.isSafeInteger(d) || d < 0)
      fail(source, `shape ${JSON.stringify(shape)} has a dim that is not a non-negative integer`, name);
  if (!Array.isArray(offsets) || offsets.length !== 2)
    fail(source, `data_offsets ${JSON.stringify(offsets)} is not a [begin, end] pair`, name);
  const [begin, end] = offsets as unknown[];
  if (typeof begin !== 'number' || typeof end !== 'number' || !Number.isSafeInteger(begin) || !Number.isSafeInteger(end))
    fail(source, `data_offsets ${JSON.stringify(offsets)} are not integers`, name);
  if (begin < 0 || end < begin || end > dataLength)
    fail(source, `data_offsets [${begin}, ${end}] outside the ${dataLength}-byte data section`, name);
  const numel = checkedNumel(shape as number[], source, name);
  const nbytes = numel * DTYPE_BYTES[dt];
  if (end - begin !== nbytes)
    fail(source, `data_offsets [${begin}, ${end}] span ${end - begin} bytes but ${dt} [${shape.join(',')}] needs ${nbytes}`, name);
  return { name, dtype: dt, shape: [...(shape as number[])], numel, begin, end };
}

/**
 * Validates the N-byte JSON header against a data section of `dataLength` bytes. Checks every entry
 * and then non-overlap (sorted by begin), so nothing sized by the file is allocated before it passes.
 */
export function parseHeaderJson(headerBytes: Uint8Array, dataLength: number, source?: string): { metadata: Record<string, string>; tensors: Map<string, TensorInfo> } {
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(headerBytes);
  } catch {
    fail(source, 'header is not valid UTF-8');
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    fail(source, `header is not valid JSON (${(e as Error).message})`);
  }
  if (!isPlainObject(json)) fail(source, `header is not a JSON object (got ${Array.isArray(json) ? 'an array' : typeof json})`);

  let metadata: Record<string, string> = {};
  const tensors = new Map<string, TensorInfo>();
  for (const [key, value] of Object.entries(json)) {
    if (key === METADATA_KEY) {
      if (!isPlainObject(value)) fail(source, `${METADATA_KEY} is not an object of strings`);
      for (const [mk, mv] of Object.entries(value)) if (typeof mv !== 'string') fail(source, `${METADATA_KEY}.${mk} is not a string`);
      // fromEntries defines own properties, so a "__proto__" key stays data and never touches a prototype.
      metadata = Object.fromEntries(Object.entries(value)) as Record<string, string>;
      continue;
    }
    tensors.set(key, parseEntry(key, value, dataLength, source));
  }

  // Overlap check: after sorting by (begin, end) each tensor must start at or after the previous end.
  // Zero-byte tensors (a 0 dim) occupy no bytes and may share an offset.
  const byBegin = [...tensors.values()].sort((a, b) => a.begin - b.begin || a.end - b.end);
  let prev: TensorInfo | undefined;
  for (const t of byBegin) {
    if (t.begin === t.end) continue;
    if (prev && t.begin < prev.end)
      fail(source, `bytes [${t.begin}, ${t.end}) overlap tensor ${JSON.stringify(prev.name)} at [${prev.begin}, ${prev.end})`, t.name);
    prev = t;
  }
  return { metadata, tensors };
}

/** Validates a whole in-memory file's header (length field plus JSON). */
export function parseSafetensorsHeader(bytes: Uint8Array, source?: string): SafetensorsHeader {
  const n = readHeaderLength(bytes.subarray(0, HEADER_LENGTH_BYTES), bytes.length, source);
  const dataStart = HEADER_LENGTH_BYTES + n;
  const dataLength = bytes.length - dataStart;
  const { metadata, tensors } = parseHeaderJson(bytes.subarray(HEADER_LENGTH_BYTES, dataStart), dataLength, source);
  return { metadata, tensors, dataStart, dataLength };
}

// ---------------------------------------------------------------------------------------------
// Decoding one tensor

let f16Table: Float32Array | null = null;

/** All 65536 half values as f32 (exact: every f16 is representable), NaN payloads kept bit-for-bit. */
function halfTable(): Float32Array {
  if (f16Table) return f16Table;
  const HALF_EXP_BIAS = 15;
  const HALF_MANT_BITS = 10;
  const HALF_EXP_MAX = 31;
  const FLOAT_EXP_BIAS = 127;
  const FLOAT_MANT_BITS = 23;
  const t = new Float32Array(1 << 16);
  const bits = new Uint32Array(t.buffer);
  for (let h = 0; h < 1 << 16; h++) {
    const sign = h >>> 15;
    const exp = (h >>> HALF_MANT_BITS) & HALF_EXP_MAX;
    const mant = h & ((1 << HALF_MANT_BITS) - 1);
    if (exp === 0) {
      // Zero or subnormal: mant · 2^-24, exact in f32.
      t[h] = (sign ? -1 : 1) * mant * 2 ** (1 - HALF_EXP_BIAS - HALF_MANT_BITS);
    } else if (exp === HALF_EXP_MAX) {
      // Inf / NaN: all-ones exponent, payload shifted into the f32 mantissa.
      bits[h] = (sign << 31) | (0xff << FLOAT_MANT_BITS) | (mant << (FLOAT_MANT_BITS - HALF_MANT_BITS));
    } else {
      bits[h] = (sign << 31) | ((exp - HALF_EXP_BIAS + FLOAT_EXP_BIAS) << FLOAT_MANT_BITS) | (mant << (FLOAT_MANT_BITS - HALF_MANT_BITS));
    }
  }
  f16Table = t;
  return t;
}

/** A typed view of `raw` when it is aligned for `bytesPer`, else of an aligned copy. */
function alignedBytes(raw: Uint8Array, bytesPer: number): { buffer: ArrayBufferLike; byteOffset: number } {
  if (raw.byteOffset % bytesPer === 0) return { buffer: raw.buffer, byteOffset: raw.byteOffset };
  return { buffer: raw.slice().buffer, byteOffset: 0 };
}

/** Converts one tensor's raw little-endian bytes (already bounds-checked: raw.length == numel·size). */
export function decodeTensor(info: TensorInfo, raw: Uint8Array, source?: string): LoadedTensor {
  const { name, dtype, shape, numel } = info;
  if (raw.length !== info.end - info.begin) fail(source, `read ${raw.length} bytes, expected ${info.end - info.begin}`, name);
  if (!HOST_LITTLE_ENDIAN) fail(source, 'big-endian hosts are not supported', name);
  if (FLOAT_READ.has(dtype)) {
    const out = new Float32Array(numel);
    if (dtype === 'F32') {
      new Uint8Array(out.buffer).set(raw);
    } else if (dtype === 'F16' || dtype === 'BF16') {
      const a = alignedBytes(raw, 2);
      const src = new Uint16Array(a.buffer, a.byteOffset, numel);
      if (dtype === 'F16') {
        const table = halfTable();
        for (let i = 0; i < numel; i++) out[i] = table[src[i]!]!;
      } else {
        // bf16 is the top half of an f32: shifting the bits is exact, NaN payloads included.
        const ob = new Uint32Array(out.buffer);
        for (let i = 0; i < numel; i++) ob[i] = src[i]! << 16;
      }
    } else {
      const a = alignedBytes(raw, 8);
      const src = new Float64Array(a.buffer, a.byteOffset, numel);
      for (let i = 0; i < numel; i++) out[i] = src[i]!;
    }
    return { dtype, shape: [...shape], data: out };
  }
  if (INT_READ.has(dtype)) {
    const out = new Int32Array(numel);
    const bad = (i: number, v: string) => fail(source, `${dtype} element ${i} = ${v} does not fit in int32`, name);
    switch (dtype) {
      case 'I32':
        new Uint8Array(out.buffer).set(raw);
        break;
      case 'U8':
      case 'BOOL':
        for (let i = 0; i < numel; i++) out[i] = raw[i]!;
        break;
      case 'I8': {
        const src = new Int8Array(raw.buffer, raw.byteOffset, numel);
        for (let i = 0; i < numel; i++) out[i] = src[i]!;
        break;
      }
      case 'I16':
      case 'U16': {
        const a = alignedBytes(raw, 2);
        const src = dtype === 'I16' ? new Int16Array(a.buffer, a.byteOffset, numel) : new Uint16Array(a.buffer, a.byteOffset, numel);
        for (let i = 0; i < numel; i++) out[i] = src[i]!;
        break;
      }
      case 'U32': {
        const a = alignedBytes(raw, 4);
        const src = new Uint32Array(a.buffer, a.byteOffset, numel);
        for (let i = 0; i < numel; i++) {
          if (src[i]! > I32_MAX) bad(i, String(src[i]));
          out[i] = src[i]!;
        }
        break;
      }
      default: {
        // I64 / U64: (lo, hi) u32 pairs; the value fits in i32 iff hi is the sign extension of lo.
        const a = alignedBytes(raw, 8);
        const src = new Uint32Array(a.buffer, a.byteOffset, numel * 2);
        const signed = dtype === 'I64';
        for (let i = 0; i < numel; i++) {
          const lo = src[2 * i]!;
          const hi = src[2 * i + 1]!;
          const fits = hi === 0 ? lo <= I32_MAX : signed && hi === 0xffffffff && lo > I32_MAX;
          if (!fits) bad(i, signed ? String((BigInt(hi | 0) << 32n) | BigInt(lo)) : String((BigInt(hi) << 32n) | BigInt(lo)));
          out[i] = lo | 0;
        }
      }
    }
    return { dtype, shape: [...shape], data: out };
  }
  return fail(source, `dtype ${dtype} cannot be read (readable: ${READABLE_DTYPES.join(', ')})`, name);
}

// ---------------------------------------------------------------------------------------------
// Readers

/**
 * A validated checkpoint whose tensors are converted one at a time on `get` (so a large file never
 * holds two converted copies). The Node file reader in node.ts has the same shape.
 */
export interface SafetensorsReader {
  readonly source: string | undefined;
  readonly metadata: Record<string, string>;
  /** Header entries by name (header order). */
  readonly tensors: ReadonlyMap<string, TensorInfo>;
  /** Tensor names in header order. */
  names(): string[];
  /** Converts one tensor; throws naming the tensor when it is absent or its dtype is unreadable. */
  get(name: string): LoadedTensor;
  /** The tensor's raw little-endian bytes (a view when in memory). */
  raw(name: string): Uint8Array;
  /** Releases the underlying file, where there is one. */
  close(): void;
}

/** Builds a reader over a validated header and a function returning absolute byte ranges. */
export function makeReader(
  header: SafetensorsHeader,
  readRange: (absStart: number, length: number) => Uint8Array,
  source?: string,
  close: () => void = () => {},
): SafetensorsReader {
  const info = (name: string): TensorInfo => {
    const t = header.tensors.get(name);
    if (!t) fail(source, 'not in this file', name);
    return t;
  };
  const raw = (name: string): Uint8Array => {
    const t = info(name);
    return readRange(header.dataStart + t.begin, t.end - t.begin);
  };
  return {
    source,
    metadata: header.metadata,
    tensors: header.tensors,
    names: () => [...header.tensors.keys()],
    get: (name) => decodeTensor(info(name), raw(name), source),
    raw,
    close,
  };
}

/** Lazy variant: validates the whole header now, converts each tensor only when asked. */
export function openSafetensors(bytes: Uint8Array, source?: string): SafetensorsReader {
  const header = parseSafetensorsHeader(bytes, source);
  return makeReader(header, (start, length) => bytes.subarray(start, start + length), source);
}

/** Eager variant: validates, then converts every tensor (f32 / i32). */
export function parseSafetensors(bytes: Uint8Array, source?: string): { metadata: Record<string, string>; tensors: Map<string, LoadedTensor> } {
  const reader = openSafetensors(bytes, source);
  const tensors = new Map<string, LoadedTensor>();
  for (const name of reader.names()) tensors.set(name, reader.get(name));
  return { metadata: reader.metadata, tensors };
}

// ---------------------------------------------------------------------------------------------
// Writing

/** The header bytes and the ordered tensor byte views of a file, so a writer can stream them. */
export interface SafetensorsPlan {
  header: Uint8Array;
  parts: { name: string; bytes: Uint8Array }[];
  byteLength: number;
}

function entriesOf(tensors: TensorsToWrite): [string, TensorToWrite][] {
  return tensors instanceof Map ? [...(tensors as ReadonlyMap<string, TensorToWrite>).entries()] : Object.entries(tensors);
}

/**
 * Lays out a file: tensors sorted by name (UTF-16 code-unit order, locale-independent) so the same input
 * always gives the same bytes; JSON written by hand so key order is exactly that (JSON.stringify would
 * move integer-like names first); header padded with spaces to 8 bytes like the reference writer.
 */
export function planSafetensors(tensors: TensorsToWrite, metadata?: Record<string, string>, source?: string): SafetensorsPlan {
  if (!HOST_LITTLE_ENDIAN) fail(source, 'big-endian hosts are not supported');
  const entries = entriesOf(tensors).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  const fields: string[] = [];
  if (metadata && Object.keys(metadata).length > 0) {
    const meta = Object.keys(metadata).sort().map((k) => {
      const v = metadata[k];
      if (typeof v !== 'string') fail(source, `metadata ${JSON.stringify(k)} is not a string`);
      return `${JSON.stringify(k)}:${JSON.stringify(v)}`;
    });
    fields.push(`${JSON.stringify(METADATA_KEY)}:{${meta.join(',')}}`);
  }
  const parts: { name: string; bytes: Uint8Array }[] = [];
  let offset = 0;
  for (const [name, t] of entries) {
    if (name === METADATA_KEY) fail(source, `the name ${METADATA_KEY} is reserved`, name);
    const dtype = t.data instanceof Float32Array ? 'F32' : t.data instanceof Int32Array ? 'I32' : undefined;
    if (!dtype) fail(source, 'data must be a Float32Array or an Int32Array', name);
    if (!Array.isArray(t.shape) || t.shape.some((d) => !Number.isSafeInteger(d) || d < 0))
      fail(source, `shape ${JSON.stringify(t.shape)} must be non-negative integers`, name);
    const numel = checkedNumel([...t.shape], source, name);
    if (numel !== t.data.length) fail(source, `data has ${t.data.length} elements but shape [${t.shape.join(',')}] needs ${numel}`, name);
    const bytes = new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength);
    fields.push(`${JSON.stringify(name)}:{"dtype":"${dtype}","shape":[${t.shape.join(',')}],"data_offsets":[${offset},${offset + bytes.length}]}`);
    parts.push({ name, bytes });
    offset += bytes.length;
  }
  const json = new TextEncoder().encode(`{${fields.join(',')}}`);
  const padded = Math.ceil(json.length / HEADER_ALIGN) * HEADER_ALIGN;
  if (padded > MAX_HEADER_BYTES) fail(source, `header of ${padded} bytes exceeds the ${MAX_HEADER_BYTES}-byte limit`);
  const header = new Uint8Array(HEADER_LENGTH_BYTES + padded).fill(0x20); // ' '
  new DataView(header.buffer).setUint32(0, padded, true); // high u32 stays 0: padded < 2^32
  new DataView(header.buffer).setUint32(4, 0, true);
  header.set(json, HEADER_LENGTH_BYTES);
  return { header, parts, byteLength: header.length + offset };
}

/** Serialises F32 (Float32Array) and I32 (Int32Array) tensors to one safetensors byte array. */
export function serializeSafetensors(tensors: TensorsToWrite, metadata?: Record<string, string>): Uint8Array {
  const plan = planSafetensors(tensors, metadata);
  const out = new Uint8Array(plan.byteLength);
  out.set(plan.header, 0);
  let at = plan.header.length;
  for (const p of plan.parts) {
    out.set(p.bytes, at);
    at += p.bytes.length;
  }
  return out;
}
