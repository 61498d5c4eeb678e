// Builds dist/: the compiled package, and the wire contract beside it.
// src/parloir.d.ts is a link to docs/client/parloir.d.ts (generated from the
// server's Rust types, the single source of the wire types); tsc does not copy
// declaration files, and a link would not survive `npm pack`, so the contract
// is copied into dist/ as a file, making the published package self-contained.
import { execFileSync } from 'node:child_process';
import { copyFileSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
const contract = fileURLToPath(new URL('../../../docs/client/parloir.d.ts', import.meta.url));
const tsc = createRequire(import.meta.url).resolve('typescript/bin/tsc');

rmSync(`${root}dist`, { recursive: true, force: true });
execFileSync(process.execPath, [tsc, '-p', root], { stdio: 'inherit' });
copyFileSync(contract, `${root}dist/parloir.d.ts`);
console.log('built dist/ (with the wire contract, dist/parloir.d.ts)');
