// `npm run generate -- --model DIR|FILE.bin --prompt-ids 1,2,3 --max-new-tokens N [--greedy | --beams K]`:
// decodes with the engine's causal LM; the last line of output is the generated token ids as JSON.
import * as fs from 'node:fs';
import * as path from 'node:path';
import yargs from 'yargs';
import { hideBin } from 'yargs/helpers';
import { initNode } from '../engine/node/index.js';
import { eosIds } from '../engine/io/hf.js';
import { TOKENIZER_FILE, loadHFTokenizerDir } from '../engine/io/node.js';
import { beamSearch, greedy } from '../engine/model/index.js';
import { loadModel } from '../engine/model/node.js';

function parseIds(s: string): number[] {
  const ids = s.split(',').map((x) => x.trim()).filter((x) => x !== '').map(Number);
  if (ids.length === 0 || ids.some((x) => !Number.isSafeInteger(x) || x < 0)) throw new Error(`--prompt-ids: expected comma-separated token ids, got "${s}"`);
  return ids;
}

async function main(): Promise<void> {
  const argv = await yargs(hideBin(process.argv))
    .scriptName('npm run generate --')
    .option('model', { type: 'string', demandOption: true, describe: 'HF model directory (config.json + safetensors) or llama2.c .bin file' })
    .option('prompt-ids', { type: 'string', describe: 'prompt as comma-separated token ids' })
    .option('prompt', { type: 'string', describe: 'prompt text (needs tokenizer.json in the model directory)' })
    .option('max-new-tokens', { type: 'number', default: 32, describe: 'tokens to generate at most' })
    .option('greedy', { type: 'boolean', describe: 'greedy decoding (the default)' })
    .option('beams', { type: 'number', describe: 'beam search with this many beams' })
    .option('eos', { type: 'string', describe: 'comma-separated stop token ids (default: the config\'s eos_token_id; "none" for none)' })
    .option('decode', { type: 'boolean', default: false, describe: 'also print the decoded text (needs tokenizer.json)' })
    .conflicts('greedy', 'beams')
    .conflicts('prompt', 'prompt-ids')
    .check((a) => {
      if (a['prompt-ids'] === undefined && a.prompt === undefined) throw new Error('give --prompt-ids or --prompt');
      if (a.beams !== undefined && !(Number.isInteger(a.beams) && a.beams >= 1)) throw new Error('--beams must be a positive integer');
      if (!(Number.isInteger(a['max-new-tokens']) && a['max-new-tokens'] >= 0)) throw new Error('--max-new-tokens must be an integer ≥ 0');
      return true;
    })
    .strict()
    .help()
    .parse();

  const modelPath = argv.model;
  if (!fs.existsSync(modelPath)) throw new Error(`--model ${modelPath}: no such file or directory`);
  const isDir = fs.statSync(modelPath).isDirectory();
  const hasTokenizer = isDir && fs.existsSync(path.join(modelPath, TOKENIZER_FILE));
  const tokenizer = hasTokenizer && (argv.prompt !== undefined || argv.decode) ? loadHFTokenizerDir(modelPath) : null;
  let prompt: number[];
  if (argv.prompt !== undefined) {
    if (!tokenizer) throw new Error(`--prompt needs ${TOKENIZER_FILE} in the model directory (${modelPath} has none); use --prompt-ids`);
    prompt = tokenizer.encode(argv.prompt);
  } else prompt = parseIds(argv['prompt-ids']!);

  await initNode();
  const model = loadModel(modelPath);
  const V = model.config.vocab_size;
  const bad = prompt.find((t) => t >= V);
  if (bad !== undefined) throw new Error(`prompt token ${bad} is outside the vocabulary [0, ${V})`);
  const eos = argv.eos === undefined ? eosIds(model.config) : argv.eos === 'none' ? [] : parseIds(argv.eos);
  const cfg = { maxNewTokens: argv['max-new-tokens'], eosTokenIds: eos };
  const t0 = performance.now();
  let best: number[];
  if (argv.beams !== undefined && argv.beams > 1) {
    const beams = (await beamSearch(model, [prompt], { ...cfg, numBeams: argv.beams }))[0];
    for (const b of beams) console.log(`beam logProb ${b.logProb.toFixed(4)}: ${JSON.stringify(b.tokens)}`);
    best = beams[0]?.tokens ?? [];
  } else best = (await greedy(model, [prompt], cfg))[0].tokens;
  const ms = performance.now() - t0;
  console.log(`${path.basename(modelPath)}: ${model.numParameters()} parameters, prompt ${prompt.length} tokens, ${best.length} generated in ${ms.toFixed(0)} ms`);
  if (argv.decode) {
    if (!tokenizer) throw new Error(`--decode needs ${TOKENIZER_FILE} in the model directory`);
    console.log(tokenizer.decode([...prompt, ...best]));
  }
  model.dispose();
  console.log(JSON.stringify(best));
}

main().catch((e: unknown) => {
  console.error(`generate: ${e instanceof Error ? e.message : String(e)}`);
  process.exit(1);
});
