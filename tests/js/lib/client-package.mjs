// Loads @parloir/client (clients/js/src) for the suite: each source file is
// transpiled on the fly into a temporary directory (build outputs are never
// committed), so the tests always run the package as it stands.
import { after } from 'node:test';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import ts from 'typescript';

const SOURCE = fileURLToPath(new URL('../../../clients/js/src/', import.meta.url));

export async function loadClientPackage() {
  const out = await mkdtemp(path.join(tmpdir(), 'parloir-client-'));
  after(() => rm(out, { recursive: true, force: true }));
  await writeFile(path.join(out, 'package.json'), '{"type":"module"}\n');
  const sources = (await readdir(SOURCE)).filter((name) => name.endsWith('.ts') && !name.endsWith('.d.ts'));
  for (const name of sources) {
    const { outputText } = ts.transpileModule(await readFile(path.join(SOURCE, name), 'utf8'), {
      fileName: name,
      compilerOptions: { module: ts.ModuleKind.ESNext, target: ts.ScriptTarget.ES2022, verbatimModuleSyntax: false },
    });
    await writeFile(path.join(out, name.replace(/\.ts$/, '.js')), outputText);
  }
  return import(pathToFileURL(path.join(out, 'index.js')).href);
}
