// Node file I/O: atomic safetensors writes, lazy file reads, sharded checkpoints with their consistency
// checks, and Hugging Face model directories (config + weights + tokenizer) in a temp directory.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { expectedTensors, parseConfig } from '../../engine/io/hf.js';
import {
  loadHFDir,
  loadHFTokenizerDir,
  openSafetensorsFile,
  readSafetensorsFile,
  readShardedSafetensors,
  writeSafetensorsFile,
} from '../../engine/io/node.js';
import { serializeSafetensors, type TensorToWrite } from '../../engine/io/safetensors.js';

let tmp = '';
beforeAll(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'io-test-'));
});
afterAll(() => {
  fs.rmSync(tmp, { recursive: true, force: true });
});
function dir(name: string): string {
  const d = path.join(tmp, name);
  fs.mkdirSync(d, { recursive: true });
  return d;
}

const CONFIG = {
  model_type: 'qwen2', hidden_size: 8, num_attention_heads: 2, num_key_value_heads: 1, intermediate_size: 12,
  num_hidden_layers: 2, vocab_size: 17, tie_word_embeddings: true, rope_theta: 1e6,
};
/** Deterministic weights for every tensor the tiny config expects. */
function tinyWeights(): Map<string, TensorToWrite> {
  const m = new Map<string, TensorToWrite>();
  let k = 0;
  for (const [name, shape] of expectedTensors(parseConfig(CONFIG))) {
    const n = shape.reduce((a, b) => a * b, 1);
    m.set(name, { shape, data: Float32Array.from({ length: n }, () => Math.sin(k++)) });
  }
  return m;
}

describe('safetensors files', () => {
  it('atomic write → read is bit-exact, equals serializeSafetensors, leaves no temp files', () => {
    const d = dir('single');
    const f = path.join(d, 'w.safetensors');
    const tensors = { a: { shape: [2, 3], data: new Float32Array([1, -2, 3.5, NaN, -0, 1e-40]) }, i: { shape: [2], data: new Int32Array([7, -7]) } };
    writeSafetensorsFile(f, tensors, { step: '12' });
    writeSafetensorsFile(f, tensors, { step: '12' }); // overwrite in place
    expect(fs.readdirSync(d)).toEqual(['w.safetensors']);
    expect(fs.readFileSync(f).equals(Buffer.from(serializeSafetensors(tensors, { step: '12' })))).toBe(true);
    const { metadata, tensors: back } = readSafetensorsFile(f);
    expect(metadata).toEqual({ step: '12' });
    expect(new Uint32Array(back.get('a')!.data.buffer)).toEqual(new Uint32Array(tensors.a.data.buffer));
    expect([...back.get('i')!.data]).toEqual([7, -7]);
  });

  it('a failed write leaves the old file intact and no temp file', () => {
    const d = dir('failed');
    const f = path.join(d, 'w.safetensors');
    writeSafetensorsFile(f, { a: { shape: [1], data: new Float32Array([1]) } });
    const before = fs.readFileSync(f);
    expect(() => writeSafetensorsFile(f, { a: { shape: [2], data: new Float32Array([1]) } })).toThrow(/"a"/);
    expect(fs.readFileSync(f).equals(before)).toBe(true);
    expect(fs.readdirSync(d)).toEqual(['w.safetensors']);
  });

  it('lazy file reader converts one tensor at a time; hostile files fail with the path', () => {
    const d = dir('lazy');
    const f = path.join(d, 'm.safetensors');
    writeSafetensorsFile(f, { x: { shape: [2], data: new Float32Array([4, 5]) }, y: { shape: [1], data: new Float32Array([6]) } });
    const r = openSafetensorsFile(f);
    expect(r.names()).toEqual(['x', 'y']);
    expect([...r.get('y').data]).toEqual([6]);
    r.close();
    expect(() => r.get('x')).toThrow(/read after close/);

    const bad = path.join(d, 'bad.safetensors');
    const b = new Uint8Array(16);
    new DataView(b.buffer).setBigUint64(0, 1n << 63n, true);
    fs.writeFileSync(bad, b);
    expect(() => readSafetensorsFile(bad)).toThrow(new RegExp(`${bad}.*exceeds`));
    fs.writeFileSync(bad, new Uint8Array(3));
    expect(() => readSafetensorsFile(bad)).toThrow(/3 bytes, shorter/);
  });
});

/** Writes the tiny model as two shards plus an index; returns the directory. */
function writeSharded(name: string, mutate?: (weightMap: Record<string, string>, shards: Map<string, TensorToWrite>[]) => void): string {
  const d = dir(name);
  const w = tinyWeights();
  const shards = [new Map<string, TensorToWrite>(), new Map<string, TensorToWrite>()];
  const weightMap: Record<string, string> = {};
  [...w].forEach(([n, t], i) => {
    const s = i < w.size / 2 ? 0 : 1;
    shards[s]!.set(n, t);
    weightMap[n] = `model-0000${s + 1}-of-00002.safetensors`;
  });
  mutate?.(weightMap, shards);
  shards.forEach((s, i) => writeSafetensorsFile(path.join(d, `model-0000${i + 1}-of-00002.safetensors`), s, { format: 'pt' }));
  fs.writeFileSync(path.join(d, 'model.safetensors.index.json'), JSON.stringify({ metadata: { total_size: 1234 }, weight_map: weightMap }));
  fs.writeFileSync(path.join(d, 'config.json'), JSON.stringify(CONFIG));
  return d;
}

describe('sharded checkpoints and HF directories', () => {
  it('loads all shards; loadHFDir parses config and checks tensors', () => {
    const d = writeSharded('sharded');
    const { tensors, metadata } = readShardedSafetensors(path.join(d, 'model.safetensors.index.json'));
    expect(metadata).toEqual({ total_size: 1234 });
    const want = tinyWeights();
    expect(tensors.size).toBe(want.size);
    for (const [n, t] of want) expect(tensors.get(n)!.data).toEqual(t.data);
    const m = loadHFDir(d);
    expect(m.config.num_key_value_heads).toBe(1);
    expect(m.rawConfig.rope_theta).toBe(1e6);
    expect(m.tensors.size).toBe(want.size);
  });

  it('single model.safetensors directory', () => {
    const d = dir('singlefile');
    writeSafetensorsFile(path.join(d, 'model.safetensors'), tinyWeights());
    fs.writeFileSync(path.join(d, 'config.json'), JSON.stringify(CONFIG));
    expect(loadHFDir(d).tensors.get('model.norm.weight')!.shape).toEqual([8]);
  });

  it('index naming a shard that lacks the tensor → error naming both', () => {
    const d = writeSharded('lacks', (wm) => {
      wm['model.norm.weight'] = 'model-00001-of-00002.safetensors'; // it lives in shard 2
    });
    expect(() => loadHFDir(d)).toThrow(/tensor "model.norm.weight" is mapped to shard model-00001-of-00002.safetensors, which does not contain it/);
  });

  it('shard holding a tensor the index does not list → error', () => {
    const d = writeSharded('unlisted', (wm) => {
      delete wm['model.norm.weight'];
    });
    expect(() => loadHFDir(d)).toThrow(/shard model-00002-of-00002.safetensors contains tensor "model.norm.weight", which the index does not list/);
  });

  it('missing shard file, path traversal and bad index JSON are refused', () => {
    const d = writeSharded('missing');
    fs.rmSync(path.join(d, 'model-00002-of-00002.safetensors'));
    expect(() => loadHFDir(d)).toThrow(/shard model-00002-of-00002.safetensors .* does not exist/);
    const e = writeSharded('escape', (wm) => {
      wm['model.norm.weight'] = '../escape/model-00002-of-00002.safetensors';
    });
    expect(() => loadHFDir(e)).toThrow(/must be a plain file name/);
    const j = writeSharded('badjson');
    fs.writeFileSync(path.join(j, 'model.safetensors.index.json'), '[1,2]');
    expect(() => loadHFDir(j)).toThrow(/missing "weight_map"|not a JSON object/);
  });

  it('wrong shape or missing tensor in a directory → named error; check can be turned off', () => {
    const d = dir('wrongshape');
    const w = tinyWeights();
    w.set('model.layers.1.self_attn.v_proj.weight', { shape: [8, 8], data: new Float32Array(64) });
    writeSafetensorsFile(path.join(d, 'model.safetensors'), w);
    fs.writeFileSync(path.join(d, 'config.json'), JSON.stringify(CONFIG));
    expect(() => loadHFDir(d)).toThrow(/model.safetensors does not match the qwen2 config: tensor "model.layers.1.self_attn.v_proj.weight" has shape \[8,8\], expected \[4,8\]/);
    expect(loadHFDir(d, { check: false }).tensors.size).toBe(w.size);
    expect(() => loadHFDir(dir('empty'))).toThrow(/no config.json/);
    fs.writeFileSync(path.join(dir('noweights'), 'config.json'), JSON.stringify(CONFIG));
    expect(() => loadHFDir(path.join(tmp, 'noweights'))).toThrow(/neither model.safetensors nor model.safetensors.index.json/);
    fs.writeFileSync(path.join(dir('badcfg'), 'config.json'), JSON.stringify({ ...CONFIG, vocab_size: -3 }));
    expect(() => loadHFDir(path.join(tmp, 'badcfg'))).toThrow(/config .*badcfg\/config.json: field "vocab_size"/);
  });

  it('loadHFTokenizerDir reads tokenizer.json and tokenizer_config.json', () => {
    const d = dir('tok');
    fs.writeFileSync(
      path.join(d, 'tokenizer.json'),
      JSON.stringify({ model: { type: 'WordLevel', vocab: { '[UNK]': 0, hi: 1 }, unk_token: '[UNK]' }, pre_tokenizer: { type: 'Whitespace' }, added_tokens: [] }),
    );
    fs.writeFileSync(path.join(d, 'tokenizer_config.json'), JSON.stringify({ unk_token: '[UNK]' }));
    const t = loadHFTokenizerDir(d);
    expect(t.encode('hi there')).toEqual([1, 0]);
  });
});
