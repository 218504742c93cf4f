// Saving and loading the causal LM as a Hugging Face directory (bit-exact round trip, LoRA merged first),
// and the generate CLI on such a directory.
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { tidy } from '../../engine/index.js';
import { readSafetensorsFile } from '../../engine/io/node.js';
import { LlamaForCausalLM, applyLoRA, beamSearch, greedy, makeConfig, mergeLoRA, stateDict, type LlamaLikeConfig } from '../../engine/model/index.js';
import { fromHF, saveHF } from '../../engine/model/node.js';
import { useDevice } from '../helpers.js';
import { randomWeights } from './reference.js';

useDevice();

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const TSX = path.join(ROOT, 'node_modules/.bin/tsx');

function config(type: 'llama' | 'qwen2', tied: boolean): LlamaLikeConfig {
  return makeConfig({
    model_type: type, vocab_size: 37, hidden_size: 24, intermediate_size: 40, num_hidden_layers: 2, num_attention_heads: 4,
    num_key_value_heads: 2, rms_norm_eps: 1e-5, tie_word_embeddings: tied, rope_theta: 500000,
    rope_scaling: type === 'llama' ? { rope_type: 'llama3', factor: 8, low_freq_factor: 1, high_freq_factor: 4, original_max_position_embeddings: 8 } : null,
  });
}

function model(cfg: LlamaLikeConfig, seed: number): LlamaForCausalLM {
  const w = randomWeights(cfg, seed, 3);
  return new LlamaForCausalLM(cfg, { weights: (n) => w.get(n) });
}

async function logits(m: LlamaForCausalLM): Promise<Float32Array> {
  const t = tidy(() => m.forward([[3, 1, 4, 1, 5, 9, 2], [6, 5, 3, 5, 8, 9, 7]]).logits);
  const a = (await t.toArray()) as Float32Array;
  t.dispose();
  return a;
}

function tmpDir(): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), 'model-io-'));
}

/** Runs the CLI; returns its stdout's last line parsed as JSON. */
function cli(args: string[]): number[] {
  const out = execFileSync(TSX, ['cli/generate.ts', ...args], { cwd: ROOT, encoding: 'utf8', env: { ...process.env, XDG_RUNTIME_DIR: process.env.XDG_RUNTIME_DIR ?? '/tmp' } });
  return JSON.parse(out.trim().split('\n').pop()!) as number[];
}

describe('saveHF / fromHF', () => {
  for (const [type, tied] of [['llama', false], ['qwen2', true]] as const) {
    it(`${type} ${tied ? 'tied' : 'untied'}: save → load is bit-exact`, async () => {
      const cfg = config(type, tied);
      const a = model(cfg, 3);
      const dir = tmpDir();
      try {
        await saveHF(a, dir);
        expect(fs.readdirSync(dir).sort()).toEqual(['config.json', 'model.safetensors']); // no temp files left
        const file = readSafetensorsFile(path.join(dir, 'model.safetensors'));
        expect(file.metadata.format).toBe('pt');
        expect(file.tensors.has('lm_head.weight')).toBe(!tied);
        const b = fromHF(dir);
        expect(b.config).toEqual(cfg);
        const sa = stateDict(a);
        const sb = stateDict(b);
        expect([...sb.keys()]).toEqual([...sa.keys()]);
        for (const [n, t] of sa) expect(new Uint32Array((await sb.get(n)!.toArray()).buffer), n).toEqual(new Uint32Array((await t.toArray()).buffer));
        expect(await logits(b)).toEqual(await logits(a));
        b.dispose();
      } finally {
        a.dispose();
        fs.rmSync(dir, { recursive: true, force: true });
      }
    });
  }

  it('refuses unmerged LoRA adapters; merged, the directory reloads to the adapted outputs', async () => {
    const cfg = config('qwen2', false);
    const a = model(cfg, 5);
    const dir = tmpDir();
    try {
      applyLoRA(a, { r: 2, alpha: 4, dropout: 0 });
      await expect(saveHF(a, dir)).rejects.toThrow(/mergeLoRA/);
      mergeLoRA(a);
      await saveHF(a, dir);
      const b = fromHF(dir);
      expect(await logits(b)).toEqual(await logits(a));
      b.dispose();
    } finally {
      a.dispose();
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('cli/generate.ts', () => {
  it('prints the same tokens as greedy() and beamSearch() on a HF directory; --prompt needs a tokenizer', async () => {
    const cfg = config('llama', false);
    const a = model(cfg, 7);
    const dir = tmpDir();
    try {
      await saveHF(a, dir);
      const prompt = [4, 8, 15, 16];
      const g = (await greedy(a, [prompt], { maxNewTokens: 6 }))[0].tokens;
      expect(cli(['--model', dir, '--prompt-ids', prompt.join(','), '--max-new-tokens', '6', '--greedy', '--eos', 'none'])).toEqual(g);
      const b = (await beamSearch(a, [prompt], { maxNewTokens: 4, numBeams: 3 }))[0][0].tokens;
      expect(cli(['--model', dir, '--prompt-ids', prompt.join(','), '--max-new-tokens', '4', '--beams', '3', '--eos', 'none'])).toEqual(b);
      expect(() => execFileSync(TSX, ['cli/generate.ts', '--model', dir, '--prompt', 'hello'], { cwd: ROOT, encoding: 'utf8', stdio: 'pipe' })).toThrow(/tokenizer\.json/);
      // With a (word-level) tokenizer.json, --prompt TEXT encodes to the same ids.
      const words = ['<unk>', 'the', 'cat', 'sat', 'on', 'mat'];
      const tokenizer = {
        version: '1.0', truncation: null, padding: null, added_tokens: [], normalizer: null, pre_tokenizer: { type: 'Whitespace' },
        post_processor: null, decoder: null, model: { type: 'WordLevel', vocab: Object.fromEntries(words.map((w, i) => [w, i + 4])), unk_token: '<unk>' },
      };
      fs.writeFileSync(path.join(dir, 'tokenizer.json'), JSON.stringify(tokenizer));
      const fromText = (await greedy(a, [[6, 7, 5, 9]], { maxNewTokens: 3 }))[0].tokens;
      expect(cli(['--model', dir, '--prompt', 'cat sat the mat', '--max-new-tokens', '3', '--eos', 'none'])).toEqual(fromText);
    } finally {
      a.dispose();
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
