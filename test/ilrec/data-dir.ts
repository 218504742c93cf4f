// Locates the shared LC-Rec benchmark files (never copied into the repo) for the tests that
// read them; they skip with a message when the directory is absent.

import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

/** $ILREC_DATA_DIR, else ../shared/data/lcrec next to the repository. */
export const LCREC_DIR = process.env['ILREC_DATA_DIR'] ?? path.resolve(repoRoot, '../shared/data/lcrec');

/** True when `${LCREC_DIR}/${file}` exists; logs why a suite is skipped otherwise. */
export function haveLcRec(...files: string[]): boolean {
  const missing = files.filter((f) => !existsSync(path.join(LCREC_DIR, f)));
  if (missing.length) console.warn(`skipping: ${missing.join(', ')} not found in ${LCREC_DIR} (set ILREC_DATA_DIR)`);
  return missing.length === 0;
}
