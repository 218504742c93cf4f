// Shader hygiene: every WGSL module compiles with no error or warning, every entry point builds a
// pipeline with its default overrides, and engine/shaders.gen.ts is up to date with shaders/.
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { SHADERS } from '../../engine/shaders.gen.js';
import { generateShaderModule, generatedPath } from '../../scripts/gen-shaders.js';
import { useDevice } from '../helpers.js';

const dev = useDevice();

describe('shaders', () => {
  it('engine/shaders.gen.ts is up to date', () => {
    const fresh = generateShaderModule() === readFileSync(generatedPath, 'utf8');
    expect(fresh, 'engine/shaders.gen.ts is stale: run npm run gen (npx tsx scripts/gen-shaders.ts)').toBe(true);
  });

  for (const name of Object.keys(SHADERS).sort()) {
    it(`${name}.wgsl compiles without errors or warnings`, async () => {
      const messages = await dev().compilationMessages(name);
      const bad = messages.filter((m) => / (error|warning): /.test(m));
      expect(bad, bad.join('\n')).toEqual([]);
    });

    it(`${name}.wgsl entry points build pipelines`, async () => {
      const gpu = dev().gpu;
      const code = SHADERS[name];
      const module = gpu.createShaderModule({ label: name, code });
      const entries = [...code.matchAll(/@compute[^{]*?fn\s+(\w+)/g)].map((m) => m[1]);
      expect(entries.length).toBeGreaterThan(0);
      const failures: string[] = [];
      for (const entry of entries) {
        gpu.pushErrorScope('validation');
        gpu.createComputePipeline({ label: `${name}:${entry}`, layout: 'auto', compute: { module, entryPoint: entry } });
        const err = await gpu.popErrorScope();
        if (err) failures.push(`${entry}: ${err.message}`);
      }
      expect(failures, failures.join('\n')).toEqual([]);
    });
  }
});
