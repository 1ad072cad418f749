#!/usr/bin/env node
// The one fedmesh binary. TypeScript is loaded through tsx so that the source tree is the
// program (no build step between a checkout and a running agent).
import { register } from 'tsx/esm/api';

register();
await import('../cli/main.ts');
