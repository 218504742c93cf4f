// The engine must run wherever WebGPU does: its browser bundle may import no Node built-in, and
// the package's `exports` must give working ESM with types.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, existsSync, rmSync } from 'node:fs';
import { builtinModules } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { build } from 'esbuild';
import { describe, expect, it } from 'vitest';

const root = join(import.meta.dirname, '..', '..');

describe('engine packaging', () => {
  it('bundles for the browser without any Node built-in import', async () => {
    const nodeImports: string[] = [];
    const result = await build({
      entryPoints: [join(root, 'engine/index.ts')],
      bundle: true,
      write: false,
      format: 'esm',
      platform: 'browser',
      logLevel: 'silent',
      metafile: true,
      plugins: [{
        name: 'no-node-builtins',
        setup(b) {
          b.onResolve({ filter: /.*/ }, (args) => {
            const bare = args.path.replace(/^node:/, '').split('/')[0];
            if (args.path.startsWith('node:') || builtinModules.includes(bare) || args.path === 'webgpu')
              nodeImports.push(`${args.path} (imported by ${args.importer})`);
            return undefined;
          });
        },
      }],
    });
    expect(nodeImports, `Node-only imports in the browser bundle:\n${nodeImports.join('\n')}`).toEqual([]);
    expect(result.errors).toEqual([]);
    const js = result.outputFiles[0].text;
    expect(js.length).toBeGreaterThan(10_000);
    expect(js).toContain('@compute'); // the WGSL sources travel inside the bundle
  });

  it('builds the exported ESM entry points with declarations', () => {
    const out = mkdtempSync(join(tmpdir(), 'engine-dist-'));
    try {
      execFileSync(process.execPath, [join(root, 'node_modules/typescript/bin/tsc'), '-p', join(root, 'tsconfig.build.json'), '--outDir', out], { cwd: root });
      expect(existsSync(join(out, 'engine/index.d.ts'))).toBe(true);
      const names = execFileSync(process.execPath, ['--input-type=module', '-e', `import(${JSON.stringify(join(out, 'engine/index.js'))}).then((m) => console.log(Object.keys(m).sort().join(',')))`], { encoding: 'utf8' });
      for (const name of ['Tensor', 'tidy', 'backward', 'init', 'add', 'sum']) expect(names.split(',')).toContain(name);
    } finally {
      rmSync(out, { recursive: true, force: true });
    }
  });
});
