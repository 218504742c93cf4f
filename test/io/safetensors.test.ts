// safetensors parse / write: bit-exact round trips, F16/BF16/F64/int decoding against hand-computed
// values, and hostile headers that must fail fast with a clear Error naming the file and tensor.
import { describe, expect, it } from 'vitest';
import {
  MAX_HEADER_BYTES,
  openSafetensors,
  parseSafetensors,
  serializeSafetensors,
  type TensorToWrite,
} from '../../engine/io/safetensors.js';

/** Hostile inputs must fail well inside this (ms), i.e. without touching gigabytes. */
const FAST_MS = 2000;
const SRC = 'evil.safetensors';

/** A file from a header (object or raw JSON text) and a data section. */
function file(header: unknown, data: Uint8Array = new Uint8Array(0), rawLength?: bigint): Uint8Array {
  const json = new TextEncoder().encode(typeof header === 'string' ? header : JSON.stringify(header));
  const out = new Uint8Array(8 + json.length + data.length);
  new DataView(out.buffer).setBigUint64(0, rawLength ?? BigInt(json.length), true);
  out.set(json, 8);
  out.set(data, 8 + json.length);
  return out;
}

function u16bytes(vals: number[]): Uint8Array {
  const b = new Uint8Array(vals.length * 2);
  const dv = new DataView(b.buffer);
  vals.forEach((v, i) => dv.setUint16(2 * i, v, true));
  return b;
}

function expectThrows(fn: () => unknown, ...parts: (string | RegExp)[]): void {
  let err: unknown;
  try {
    fn();
  } catch (e) {
    err = e;
  }
  expect(err, 'expected an Error').toBeInstanceOf(Error);
  for (const p of parts) expect((err as Error).message).toMatch(p);
}

describe('round trip', () => {
  it('F32 and I32 write → read is bit-exact, including NaN payloads, -0, inf, subnormals', () => {
    const special = new Float32Array(8);
    new Uint32Array(special.buffer).set([0x7fc00001, 0x80000000, 0x7f800000, 0xff800000, 0x00000001, 0x007fffff, 0x3f800000, 0xc0490fdb]);
    const tensors = {
      'model.w': { shape: [2, 4], data: special },
      'a.bias': { shape: [3], data: new Float32Array([1.5, -2.25, 3e-39]) },
      ids: { shape: [2, 2], data: new Int32Array([0, -1, 2147483647, -2147483648]) },
      scalar: { shape: [], data: new Float32Array([42]) },
      empty: { shape: [0, 3], data: new Float32Array(0) },
      '0': { shape: [1], data: new Float32Array([7]) }, // integer-like name: JSON.stringify would reorder it
    };
    const meta = { format: 'pt', note: 'ünïcödé' };
    const bytes = serializeSafetensors(tensors, meta);
    const headerLen = Number(new DataView(bytes.buffer).getBigUint64(0, true));
    expect(headerLen % 8).toBe(0);
    const { metadata, tensors: back } = parseSafetensors(bytes);
    expect(metadata).toEqual(meta);
    for (const [name, t] of Object.entries(tensors)) {
      const r = back.get(name)!;
      expect(r.shape).toEqual(t.shape);
      expect(r.dtype).toBe(t.data instanceof Float32Array ? 'F32' : 'I32');
      expect(r.data.constructor).toBe(t.data.constructor);
      expect([...new Uint32Array(r.data.buffer, r.data.byteOffset, r.data.length)]).toEqual([...new Uint32Array(t.data.buffer, t.data.byteOffset, t.data.length)]);
    }
  });

  it('output is byte-identical for the same tensors in any insertion order, sorted by name', () => {
    const a = { z: { shape: [1], data: new Float32Array([1]) }, b: { shape: [2], data: new Int32Array([3, 4]) }, '10': { shape: [1], data: new Float32Array([5]) } };
    const b = new Map<string, TensorToWrite>([['10', a['10']], ['b', a.b], ['z', a.z]]);
    const x = serializeSafetensors(a, { k: 'v' });
    const y = serializeSafetensors(b, { k: 'v' });
    expect(Buffer.from(x).equals(Buffer.from(y))).toBe(true);
    const header = new TextDecoder().decode(x.subarray(8, 8 + Number(new DataView(x.buffer).getBigUint64(0, true))));
    expect(header.indexOf('"10"')).toBeLessThan(header.indexOf('"b"'));
    expect(header.indexOf('"b"')).toBeLessThan(header.indexOf('"z"'));
    expect(header.trimEnd().endsWith('}')).toBe(true); // padded with spaces only
    // offsets follow the name order
    const parsed = openSafetensors(x);
    expect(parsed.tensors.get('10')!.begin).toBe(0);
    expect(parsed.tensors.get('b')!.begin).toBe(4);
    expect(parsed.tensors.get('z')!.begin).toBe(12);
  });

  it('reads a file at an odd byte offset and with an unpadded header (unaligned data)', () => {
    const data = new Float32Array([1, 2, 3]);
    const f = file({ x: { dtype: 'F32', shape: [3], data_offsets: [0, 12] } }, new Uint8Array(data.buffer)); // header length not a multiple of 4
    const shifted = new Uint8Array(f.length + 3);
    shifted.set(f, 3);
    const t = parseSafetensors(shifted.subarray(3)).tensors.get('x')!;
    expect([...t.data]).toEqual([1, 2, 3]);
  });

  it('writer rejects bad input naming the tensor', () => {
    expectThrows(() => serializeSafetensors({ w: { shape: [2, 2], data: new Float32Array(3) } }), /"w"/, /3 elements/, /needs 4/);
    expectThrows(() => serializeSafetensors({ __metadata__: { shape: [1], data: new Float32Array(1) } }), /reserved/);
    expectThrows(() => serializeSafetensors({ w: { shape: [-1], data: new Float32Array(0) } }), /"w"/, /non-negative/);
    expectThrows(() => serializeSafetensors({ w: { shape: [1], data: [1] as unknown as Float32Array } }), /Float32Array or an Int32Array/);
  });
});

describe('decoding', () => {
  it('F16 against hand-computed values (normals, subnormals, ±0, ±inf, NaN, max)', () => {
    const cases: [number, number][] = [
      [0x3c00, 1],
      [0xc000, -2],
      [0x3555, 0.333251953125], // 0x155/1024 mantissa, exp −2: (1 + 341/1024) / 4
      [0x7bff, 65504], // largest half
      [0x0400, 2 ** -14], // smallest normal
      [0x0001, 2 ** -24], // smallest subnormal
      [0x03ff, 1023 * 2 ** -24], // largest subnormal
      [0x8001, -(2 ** -24)],
      [0x0000, 0],
      [0x7c00, Infinity],
      [0xfc00, -Infinity],
    ];
    const f = file({ h: { dtype: 'F16', shape: [cases.length + 2], data_offsets: [0, 2 * (cases.length + 2)] } }, u16bytes([...cases.map((c) => c[0]), 0x8000, 0x7e00]));
    const d = parseSafetensors(f).tensors.get('h')!;
    expect(d.data).toBeInstanceOf(Float32Array);
    cases.forEach(([, v], i) => expect(d.data[i]).toBe(v));
    expect(Object.is(d.data[cases.length], -0)).toBe(true);
    expect(Number.isNaN(d.data[cases.length + 1])).toBe(true);
  });

  it('BF16 against hand-computed values', () => {
    const cases: [number, number][] = [
      [0x3f80, 1],
      [0xc000, -2],
      [0x4049, 3.140625], // 0x40490000 as f32
      [0x0001, 2 ** -133], // f32 subnormal 0x00010000 = 2^16 · 2^-149
      [0x7f80, Infinity],
      [0xff80, -Infinity],
      [0x7f7f, 3.3895313892515355e38], // largest finite bf16
    ];
    const f = file({ b: { dtype: 'BF16', shape: [cases.length + 1], data_offsets: [0, 2 * (cases.length + 1)] } }, u16bytes([...cases.map((c) => c[0]), 0x7fc1]));
    const d = parseSafetensors(f).tensors.get('b')!;
    cases.forEach(([, v], i) => expect(d.data[i]).toBe(v));
    // NaN payload kept: bits 0x7fc10000
    expect(new Uint32Array(d.data.buffer)[cases.length]).toBe(0x7fc10000);
  });

  it('F64 → f32 and I64/I32/U8 → i32, with out-of-range I64 rejected by name', () => {
    const f64 = new Float64Array([0.1, -1e300, 2.5]);
    const i64 = new BigInt64Array([1n, -1n, 2147483647n, -2147483648n]);
    const u8 = new Uint8Array([0, 255, 7, 0]); // 3 used + 1 padding byte to keep things simple
    const data = new Uint8Array(24 + 32 + 3);
    data.set(new Uint8Array(f64.buffer), 0);
    data.set(new Uint8Array(i64.buffer), 24);
    data.set(u8.subarray(0, 3), 56);
    const f = file(
      {
        d: { dtype: 'F64', shape: [3], data_offsets: [0, 24] },
        l: { dtype: 'I64', shape: [2, 2], data_offsets: [24, 56] },
        u: { dtype: 'U8', shape: [3], data_offsets: [56, 59] },
      },
      data,
    );
    const t = parseSafetensors(f).tensors;
    expect([...t.get('d')!.data]).toEqual([Math.fround(0.1), -Infinity, 2.5]);
    expect(t.get('l')!.data).toBeInstanceOf(Int32Array);
    expect([...t.get('l')!.data]).toEqual([1, -1, 2147483647, -2147483648]);
    expect([...t.get('u')!.data]).toEqual([0, 255, 7]);

    const big = file({ pos: { dtype: 'I64', shape: [2], data_offsets: [0, 16] } }, new Uint8Array(new BigInt64Array([5n, 2147483648n]).buffer));
    expectThrows(() => parseSafetensors(big, SRC), SRC, /"pos"/, /element 1 = 2147483648/, /int32/);
    const neg = file({ neg: { dtype: 'I64', shape: [1], data_offsets: [0, 8] } }, new Uint8Array(new BigInt64Array([-2147483649n]).buffer));
    expectThrows(() => parseSafetensors(neg, SRC), /"neg"/, /-2147483649/);
  });

  it('"__proto__" as a metadata key or tensor name stays plain data', () => {
    const f = file('{"__metadata__":{"__proto__":"x"},"__proto__":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}', new Uint8Array(new Float32Array([3]).buffer));
    const { metadata, tensors } = parseSafetensors(f);
    expect(Object.getOwnPropertyDescriptor(metadata, '__proto__')?.value).toBe('x');
    expect(Object.getPrototypeOf(metadata)).toBe(Object.prototype);
    expect([...tensors.get('__proto__')!.data]).toEqual([3]);
  });

  it('lazy reader validates the whole header up front and converts one tensor on demand', () => {
    const f = file(
      {
        __metadata__: { format: 'pt' },
        ok: { dtype: 'BF16', shape: [2], data_offsets: [0, 4] },
        fp8: { dtype: 'F8_E4M3', shape: [4], data_offsets: [4, 8] },
      },
      new Uint8Array([0x80, 0x3f, 0x00, 0x40, 1, 2, 3, 4]),
    );
    const r = openSafetensors(f, SRC);
    expect(r.names()).toEqual(['ok', 'fp8']);
    expect(r.metadata).toEqual({ format: 'pt' });
    expect([...r.get('ok').data]).toEqual([1, 2]);
    expect([...r.raw('fp8')]).toEqual([1, 2, 3, 4]);
    expectThrows(() => r.get('fp8'), SRC, /"fp8"/, /F8_E4M3 cannot be read/);
    expectThrows(() => r.get('nope'), /"nope"/, /not in this file/);
    expectThrows(() => parseSafetensors(f, SRC), /"fp8"/); // eager parse converts everything
  });
});

describe('hostile inputs fail fast with a clear error', () => {
  const ok = { dtype: 'F32', shape: [2], data_offsets: [0, 8] };
  const eight = new Uint8Array(8);
  const cases: [string, () => Uint8Array, (string | RegExp)[]][] = [
    ['empty file', () => new Uint8Array(0), [/0 bytes, shorter than the 8-byte header length/]],
    ['truncated length field', () => new Uint8Array(5), [/5 bytes/]],
    ['header length larger than the file', () => file({ w: ok }, eight).subarray(0, 20), [/larger than the 12 bytes/, /truncated/]],
    ['header length 2^63', () => file({ w: ok }, eight, 1n << 63n), [/exceeds the 100000000-byte limit/]],
    ['header length 2^64 − 1', () => file({ w: ok }, eight, (1n << 64n) - 1n), [/exceeds/]],
    ['header length just over the cap', () => file({ w: ok }, eight, BigInt(MAX_HEADER_BYTES + 1)), [/exceeds/]],
    ['header truncated inside the JSON', () => { const f = file({ w: ok }, eight); return f.subarray(0, 8 + 10); }, [/larger than/]],
    ['non-JSON header', () => file('this is not json', eight), [/not valid JSON/]],
    ['invalid UTF-8 header', () => { const f = file('{"w":1}'); f[9] = 0xff; return f; }, [/not valid UTF-8/]],
    ['JSON array header', () => file([1, 2, 3]), [/not a JSON object \(got an array\)/]],
    ['JSON string header', () => file('"hello"'), [/not a JSON object/]],
    ['entry not an object', () => file({ w: [1, 2] }), [/"w"/, /not an object/]],
    ['unknown dtype', () => file({ w: { ...ok, dtype: 'F17' } }, eight), [/"w"/, /unknown dtype "F17"/]],
    ['missing dtype', () => file({ w: { shape: [2], data_offsets: [0, 8] } }, eight), [/"w"/, /unknown dtype undefined/]],
    ['negative dim', () => file({ w: { ...ok, shape: [-2] } }, eight), [/"w"/, /shape \[-2\]/, /non-negative integer/]],
    ['fractional dim', () => file({ w: { ...ok, shape: [2.5] } }, eight), [/"w"/, /non-negative integer/]],
    ['huge dim (> 2^53)', () => file({ w: { ...ok, shape: [1e300] } }, eight), [/"w"/, /non-negative integer/]],
    ['string dim', () => file({ w: { ...ok, shape: ['2'] } }, eight), [/"w"/, /non-negative integer/]],
    ['shape not an array', () => file({ w: { ...ok, shape: 2 } }, eight), [/"w"/, /not an array/]],
    ['dims whose product overflows', () => file({ w: { ...ok, shape: [2 ** 30, 2 ** 30, 2 ** 30] } }, eight), [/"w"/, /more than 2\^53 elements/]],
    ['dims claiming gigabytes', () => file({ w: { ...ok, shape: [1e9], data_offsets: [0, 4e9] } }, eight), [/"w"/, /outside the 8-byte data section/]],
    ['offsets past the end', () => file({ w: { ...ok, data_offsets: [0, 16] } }, eight), [/"w"/, /\[0, 16\] outside the 8-byte data section/]],
    ['negative offset', () => file({ w: { ...ok, data_offsets: [-4, 4] } }, eight), [/"w"/, /outside/]],
    ['reversed offsets', () => file({ w: { ...ok, data_offsets: [8, 0] } }, eight), [/"w"/, /outside/]],
    ['fractional offsets', () => file({ w: { ...ok, data_offsets: [0.5, 8.5] } }, eight), [/"w"/, /not integers/]],
    ['three offsets', () => file({ w: { ...ok, data_offsets: [0, 4, 8] } }, eight), [/"w"/, /not a \[begin, end\] pair/]],
    ['size mismatch', () => file({ w: { ...ok, shape: [3] } }, new Uint8Array(12)), [/"w"/, /span 8 bytes but F32 \[3\] needs 12/]],
    [
      'overlapping tensors',
      () => file({ a: { dtype: 'F32', shape: [4], data_offsets: [0, 16] }, b: { dtype: 'F32', shape: [4], data_offsets: [8, 24] } }, new Uint8Array(24)),
      [/"b"/, /overlap tensor "a"/],
    ],
    ['metadata not strings', () => file({ __metadata__: { n: 1 }, w: ok }, eight), [/__metadata__.n is not a string/]],
    ['deeply nested JSON', () => file(`{"w":${'['.repeat(200_000)}${']'.repeat(200_000)}}`), [/(not valid JSON|"w")/]],
  ];
  for (const [name, make, parts] of cases)
    it(name, { timeout: FAST_MS }, () => {
      const bytes = make();
      const before = process.memoryUsage().arrayBuffers;
      expectThrows(() => parseSafetensors(bytes, SRC), SRC, ...parts);
      expectThrows(() => openSafetensors(bytes, SRC), SRC);
      // No per-tensor allocation happened: far less than the sizes the header claims.
      expect(process.memoryUsage().arrayBuffers - before).toBeLessThan(64 * 1024 * 1024);
    });

  it('zero-size tensors may share an offset; adjacent tensors do not overlap', () => {
    const f = file(
      {
        a: { dtype: 'F32', shape: [1], data_offsets: [0, 4] },
        e1: { dtype: 'F32', shape: [0], data_offsets: [4, 4] },
        e2: { dtype: 'I32', shape: [3, 0], data_offsets: [4, 4] },
        b: { dtype: 'F32', shape: [1], data_offsets: [4, 8] },
      },
      new Uint8Array(new Float32Array([1, 2]).buffer),
    );
    const t = parseSafetensors(f).tensors;
    expect([...t.get('b')!.data]).toEqual([2]);
    expect(t.get('e2')!.shape).toEqual([3, 0]);
  });

  it('random corruptions of a valid file either parse or throw an Error, never anything else', { timeout: 20_000 }, () => {
    const base = serializeSafetensors(
      { a: { shape: [3, 5], data: new Float32Array(15).map((_, i) => i) }, b: { shape: [4], data: new Int32Array([1, 2, 3, 4]) } },
      { k: 'v' },
    );
    let seed = 12345;
    const rand = (n: number) => {
      seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
      return seed % n;
    };
    let threw = 0;
    const TRIALS = 2000;
    for (let trial = 0; trial < TRIALS; trial++) {
      let f = base.slice();
      const kind = rand(3);
      if (kind === 0) f = f.subarray(0, rand(f.length)); // truncate
      else for (let k = 0; k <= rand(4); k++) f[rand(f.length)] = rand(256); // flip bytes
      if (kind === 2) f[rand(8)] = rand(256); // hit the length field
      try {
        parseSafetensors(f, SRC);
      } catch (e) {
        expect(e).toBeInstanceOf(Error);
        expect((e as Error).message.startsWith(`safetensors ${SRC}: `)).toBe(true);
        threw++;
      }
    }
    expect(threw).toBeGreaterThan(TRIALS / 4);
  });
});
