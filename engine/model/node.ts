// Node-only model files: build a LlamaForCausalLM from a Hugging Face directory or a llama2.c `.bin`,
// and save one as config.json + model.safetensors (each written atomically; reloads bit-exactly).
import * as fs from 'node:fs';
import * as path from 'node:path';
import { configToJSON } from '../io/hf.js';
import { CONFIG_FILE, SINGLE_FILE, loadHFDir, readLlama2cFile, writeFileAtomic, writeSafetensorsFile } from '../io/node.js';
import type { TensorToWrite } from '../io/safetensors.js';
import { LlamaForCausalLM, stateDict, type LlamaOptions } from './llama.js';

/** Loads a HF model directory (config.json + model.safetensors or shards), checking names and shapes. */
export function fromHF(dir: string, opts: Omit<LlamaOptions, 'weights'> = {}): LlamaForCausalLM {
  const { config, tensors } = loadHFDir(dir);
  return new LlamaForCausalLM(config, { ...opts, weights: (name) => floats(tensors.get(name)?.data, name) });
}

/** Loads a llama2.c legacy `.bin` checkpoint (converted to HF layout by the io reader). */
export function fromLlama2c(file: string): LlamaForCausalLM {
  const { config, tensors } = readLlama2cFile(file);
  return new LlamaForCausalLM(config, { weights: (name) => tensors.get(name)?.data });
}

/** A HF directory or a llama2.c `.bin` file. */
export function loadModel(p: string): LlamaForCausalLM {
  return fs.statSync(p).isDirectory() ? fromHF(p) : fromLlama2c(p);
}

function floats(data: Float32Array | Int32Array | undefined, name: string): Float32Array | undefined {
  if (data && !(data instanceof Float32Array)) throw new Error(`weight ${name} is stored as an integer dtype`);
  return data;
}

/**
 * Writes config.json and model.safetensors (HF names; a tied lm_head is not stored, as in HF) into dir,
 * each atomically. Adapters must be merged first (mergeLoRA), so the files are a plain HF model.
 */
export async function saveHF(model: LlamaForCausalLM, dir: string): Promise<void> {
  const sd = stateDict(model);
  const lora = [...sd.keys()].filter((n) => n.includes('.lora_'));
  if (lora.length) throw new Error(`saveHF: the model has unmerged LoRA adapters (${lora[0]}, ...); call mergeLoRA(model) first`);
  const tensors = new Map<string, TensorToWrite>();
  for (const [name, t] of sd) tensors.set(name, { shape: t.shape, data: (await t.toArray()) as Float32Array });
  fs.mkdirSync(dir, { recursive: true });
  // transformers' save_pretrained writes this metadata; its loader checks the format when present.
  writeSafetensorsFile(path.join(dir, SINGLE_FILE), tensors, { format: 'pt' });
  writeFileAtomic(path.join(dir, CONFIG_FILE), [new TextEncoder().encode(JSON.stringify(configToJSON(model.config), null, 2) + '\n')]);
}
