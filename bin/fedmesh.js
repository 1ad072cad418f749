#!/usr/bin/env node
// The one fedmesh binary. The source tree is the program: it runs compiled (bin/compiled.js builds
// cli/main.ts with esbuild whenever a source file changed since the last build), or, when that
// cannot be done, as TypeScript loaded through tsx.
import { compiledEntry } from './compiled.js';

const entry = await compiledEntry();
if (entry) {
  await import(entry);
} else {
  const { register } = await import('tsx/esm/api');
  register();
  await import('../cli/main.ts');
}
