// Node-only checkpoint files (uses fs): safetensors read through a file handle one tensor at a time,
// atomic writes, sharded checkpoints, Hugging Face model directories and llama2.c `.bin` files.
// Browser-safe modules must not import this file.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { checkTensors, parseConfig, type LlamaLikeConfig } from './hf.js';
import { LLAMA2C_HEADER_BYTES, parseLlama2c, parseLlama2cHeader, type Llama2cModel } from './llama2c.js';
import {
  HEADER_LENGTH_BYTES,
  makeReader,
  parseHeaderJson,
  planSafetensors,
  readHeaderLength,
  type LoadedTensor,
  type SafetensorsReader,
  type TensorsToWrite,
} from './safetensors.js';
import { loadHFTokenizer, type HFTokenizer } from './tokenizer.js';

export const SINGLE_FILE = 'model.safetensors';
export const SHARD_INDEX = 'model.safetensors.index.json';
export const CONFIG_FILE = 'config.json';
export const TOKENIZER_FILE = 'tokenizer.json';
export const TOKENIZER_CONFIG_FILE = 'tokenizer_config.json';
/** Largest read per readSync call (Node caps a single read below 2 GiB). */
const READ_CHUNK_BYTES = 1 << 30;
/** JSON side files (index, config, tokenizer) larger than this are refused as corrupt. */
const MAX_JSON_FILE_BYTES = 256 * 1024 * 1024;

function readExactly(fd: number, length: number, position: number, file: string): Uint8Array {
  const out = new Uint8Array(length);
  let done = 0;
  while (done < length) {
    const n = fs.readSync(fd, out, done, Math.min(length - done, READ_CHUNK_BYTES), position + done);
    if (n === 0) throw new Error(`${file}: unexpected end of file at byte ${position + done} (file changed while reading?)`);
    done += n;
  }
  return out;
}

/**
 * Opens a safetensors file lazily: reads and validates only the header (bounded before it is read),
 * then reads and converts one tensor per `get`. Call `close()` when done.
 */
export function openSafetensorsFile(file: string): SafetensorsReader {
  const fd = fs.openSync(file, 'r');
  try {
    const size = fs.fstatSync(fd).size;
    const first = readExactly(fd, Math.min(HEADER_LENGTH_BYTES, size), 0, file);
    const n = readHeaderLength(first, size, file);
    const dataStart = HEADER_LENGTH_BYTES + n;
    const { metadata, tensors } = parseHeaderJson(readExactly(fd, n, HEADER_LENGTH_BYTES, file), size - dataStart, file);
    let open = true;
    return makeReader(
      { metadata, tensors, dataStart, dataLength: size - dataStart },
      (start, length) => {
        if (!open) throw new Error(`safetensors ${file}: read after close`);
        return readExactly(fd, length, start, file);
      },
      file,
      () => {
        if (open) fs.closeSync(fd);
        open = false;
      },
    );
  } catch (e) {
    fs.closeSync(fd);
    throw e;
  }
}

/** Reads a whole safetensors file (f32 / i32), converting one tensor at a time. */
export function readSafetensorsFile(file: string): { metadata: Record<string, string>; tensors: Map<string, LoadedTensor> } {
  const r = openSafetensorsFile(file);
  try {
    const tensors = new Map<string, LoadedTensor>();
    for (const name of r.names()) tensors.set(name, r.get(name));
    return { metadata: r.metadata, tensors };
  } finally {
    r.close();
  }
}

/** Writes `bytes` chunks to `file` atomically: temp file in the same directory, fsync, rename. */
export function writeFileAtomic(file: string, chunks: Iterable<Uint8Array>): void {
  const tmp = `${file}.tmp-${process.pid}-${Math.random().toString(36).slice(2, 10)}`;
  let fd: number | null = fs.openSync(tmp, 'wx');
  try {
    for (const c of chunks) {
      let done = 0;
      while (done < c.length) done += fs.writeSync(fd, c, done, Math.min(c.length - done, READ_CHUNK_BYTES));
    }
    fs.fsyncSync(fd);
    fs.closeSync(fd);
    fd = null;
    fs.renameSync(tmp, file);
  } catch (e) {
    if (fd !== null) fs.closeSync(fd);
    fs.rmSync(tmp, { force: true });
    throw e;
  }
  // Persist the rename itself; some platforms cannot fsync a directory, which is not an error here.
  try {
    const dfd = fs.openSync(path.dirname(file), 'r');
    try {
      fs.fsyncSync(dfd);
    } finally {
      fs.closeSync(dfd);
    }
  } catch {
    /* directory fsync unsupported */
  }
}

/** Writes F32/I32 tensors as a safetensors file atomically, streaming tensor bytes (no full-file copy). */
export function writeSafetensorsFile(file: string, tensors: TensorsToWrite, metadata?: Record<string, string>): void {
  const plan = planSafetensors(tensors, metadata, file);
  writeFileAtomic(file, [plan.header, ...plan.parts.map((p) => p.bytes)]);
}

/** Reads a small JSON side file with a size cap (they are untrusted too). */
export function readJsonFile(file: string, what: string): unknown {
  const size = fs.statSync(file).size;
  if (size > MAX_JSON_FILE_BYTES) throw new Error(`${what} ${file}: ${size} bytes is over the ${MAX_JSON_FILE_BYTES}-byte limit`);
  const text = fs.readFileSync(file, 'utf8');
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new Error(`${what} ${file}: not valid JSON (${(e as Error).message})`);
  }
}

/** A shard file name from an index must be a plain file in the same directory (no paths, no `..`). */
function checkShardName(shard: string, indexFile: string): void {
  if (shard === '' || shard === '.' || shard === '..' || shard.includes('/') || shard.includes('\\') || shard.includes('\0'))
    throw new Error(`shard index ${indexFile}: shard file name ${JSON.stringify(shard)} must be a plain file name in the same directory`);
}

/**
 * Loads a sharded checkpoint from `model.safetensors.index.json` ({"weight_map": {name: file}}): every
 * name must be in the shard the index names, and every tensor in a shard must be listed for that shard.
 */
export function readShardedSafetensors(indexFile: string): { metadata: Record<string, unknown>; tensors: Map<string, LoadedTensor> } {
  const index = readJsonFile(indexFile, 'shard index');
  if (typeof index !== 'object' || index === null || Array.isArray(index)) throw new Error(`shard index ${indexFile}: not a JSON object`);
  const weightMap = (index as Record<string, unknown>).weight_map;
  if (typeof weightMap !== 'object' || weightMap === null || Array.isArray(weightMap))
    throw new Error(`shard index ${indexFile}: missing "weight_map" object`);
  const byShard = new Map<string, string[]>();
  for (const [name, shard] of Object.entries(weightMap)) {
    if (typeof shard !== 'string') throw new Error(`shard index ${indexFile}: tensor "${name}" maps to ${JSON.stringify(shard)}, not a file name`);
    checkShardName(shard, indexFile);
    if (!byShard.has(shard)) byShard.set(shard, []);
    byShard.get(shard)!.push(name);
  }
  const dir = path.dirname(indexFile);
  const tensors = new Map<string, LoadedTensor>();
  // Validate every shard's header and the mapping before converting any tensor.
  const readers: SafetensorsReader[] = [];
  try {
    for (const [shard, names] of byShard) {
      const file = path.join(dir, shard);
      if (!fs.existsSync(file)) throw new Error(`shard index ${indexFile}: shard ${shard} (holding "${names[0]}") does not exist`);
      const r = openSafetensorsFile(file);
      readers.push(r);
      for (const name of names)
        if (!r.tensors.has(name)) throw new Error(`shard index ${indexFile}: tensor "${name}" is mapped to shard ${shard}, which does not contain it`);
      for (const name of r.names())
        if ((weightMap as Record<string, unknown>)[name] !== shard)
          throw new Error(`shard index ${indexFile}: shard ${shard} contains tensor "${name}", which the index ${
            Object.hasOwn(weightMap, name) ? `maps to ${JSON.stringify((weightMap as Record<string, unknown>)[name])}` : 'does not list'
          }`);
    }
    for (const r of readers) for (const name of r.names()) tensors.set(name, r.get(name));
  } finally {
    for (const r of readers) r.close();
  }
  const metadata = (index as Record<string, unknown>).metadata;
  return { metadata: typeof metadata === 'object' && metadata !== null ? (metadata as Record<string, unknown>) : {}, tensors };
}

export interface HFModelDir {
  config: LlamaLikeConfig;
  /** config.json as parsed, for fields LlamaLikeConfig does not carry. */
  rawConfig: Record<string, unknown>;
  tensors: Map<string, LoadedTensor>;
}

/**
 * Loads a Hugging Face model directory: config.json plus model.safetensors or, failing that, a sharded
 * model.safetensors.index.json; by default checks the tensors against the config (names and shapes).
 */
export function loadHFDir(dir: string, opts: { check?: boolean } = {}): HFModelDir {
  const configFile = path.join(dir, CONFIG_FILE);
  if (!fs.existsSync(configFile)) throw new Error(`model directory ${dir}: no ${CONFIG_FILE}`);
  const rawConfig = readJsonFile(configFile, 'config') as Record<string, unknown>;
  const config = parseConfig(rawConfig, configFile);
  const single = path.join(dir, SINGLE_FILE);
  const index = path.join(dir, SHARD_INDEX);
  let tensors: Map<string, LoadedTensor>;
  let source: string;
  // Same preference as transformers: the single file first, then the shard index.
  if (fs.existsSync(single)) {
    tensors = readSafetensorsFile(single).tensors;
    source = single;
  } else if (fs.existsSync(index)) {
    tensors = readShardedSafetensors(index).tensors;
    source = index;
  } else {
    throw new Error(`model directory ${dir}: neither ${SINGLE_FILE} nor ${SHARD_INDEX}`);
  }
  if (opts.check ?? true) checkTensors(config, tensors, source);
  return { config, rawConfig, tensors };
}

/** Loads tokenizer.json (and tokenizer_config.json when present) from a model directory. */
export function loadHFTokenizerDir(dir: string): HFTokenizer {
  const file = path.join(dir, TOKENIZER_FILE);
  if (!fs.existsSync(file)) throw new Error(`model directory ${dir}: no ${TOKENIZER_FILE}`);
  const cfgFile = path.join(dir, TOKENIZER_CONFIG_FILE);
  const cfg = fs.existsSync(cfgFile) ? (readJsonFile(cfgFile, 'tokenizer config') as object) : {};
  return loadHFTokenizer(readJsonFile(file, 'tokenizer') as object, cfg, file);
}

/** Reads a llama2.c legacy `.bin` checkpoint as an HF-layout Llama. */
export function readLlama2cFile(file: string): Llama2cModel {
  // Check the header against the file size before reading (and allocating) the whole file.
  const fd = fs.openSync(file, 'r');
  try {
    const size = fs.fstatSync(fd).size;
    parseLlama2cHeader(readExactly(fd, Math.min(LLAMA2C_HEADER_BYTES, size), 0, file), file, size);
    return parseLlama2c(readExactly(fd, size, 0, file), file);
  } finally {
    fs.closeSync(fd);
  }
}
