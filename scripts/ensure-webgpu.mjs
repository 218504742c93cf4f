// Runs before `npm test` and `npm run bench`: checks that Dawn finds a WebGPU adapter and, where it
// does not, installs the software Vulkan driver (scripts/setup.sh) when root with apt, or says how.
import { spawnSync } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
process.env.XDG_RUNTIME_DIR ??= '/tmp';

// The probe runs in a child process: a driver that crashes Dawn must not take this script down.
function probe() {
  const code = `import('webgpu').then(async ({ create, globals }) => {
    Object.assign(globalThis, globals);
    const a = await create([]).requestAdapter();
    console.log(a ? 'ADAPTER ' + [a.info.vendor, a.info.architecture, a.info.description].filter(Boolean).join(' ') : 'NOADAPTER');
    process.exit(0);
  }).catch((e) => { console.log('NOADAPTER ' + e.message); process.exit(0); });`;
  const r = spawnSync(process.execPath, ['--input-type=module', '-e', code], { encoding: 'utf8', cwd: join(here, '..') });
  const line = (r.stdout || '').split('\n').find((l) => l.startsWith('ADAPTER') || l.startsWith('NOADAPTER')) ?? 'NOADAPTER probe failed';
  return line.startsWith('ADAPTER') ? line.slice(8) : null;
}

let adapter = probe();
if (!adapter) {
  const isRoot = typeof process.getuid === 'function' && process.getuid() === 0;
  const hasApt = spawnSync('sh', ['-c', 'command -v apt-get'], { encoding: 'utf8' }).status === 0;
  if (isRoot && hasApt) {
    console.log('no WebGPU adapter: installing the software Vulkan driver (scripts/setup.sh)...');
    const r = spawnSync('bash', [join(here, 'setup.sh')], { stdio: 'inherit' });
    if (r.status !== 0) process.exit(r.status ?? 1);
    adapter = probe();
  }
  if (!adapter) {
    console.error(
      'No WebGPU adapter found. Without a GPU, Dawn needs a software Vulkan driver (Mesa 25 lavapipe).\n' +
        'On Debian 12 run:  sudo bash scripts/setup.sh\n' +
        '(it installs libvulkan1 and mesa-vulkan-drivers from bookworm-backports).',
    );
    process.exit(1);
  }
}
console.log(`WebGPU adapter: ${adapter}`);
