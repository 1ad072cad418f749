// What the CLI prints about input it read: clipped and with control characters escaped, so a
// hostile file cannot write raw escape sequences to an operator's terminal.
import { clip } from '../lib/text.ts';
import type { ResourceError } from '../model/resources.ts';

/** `file: resource field: message`, for a warning line. */
export function describeError(e: ResourceError): string {
  const where = [e.resource, e.field].filter((x) => x !== undefined && x !== '').join(' ');
  return clip(`${e.origin.source}: ${where ? `${where}: ` : ''}${e.message}`, 1000);
}
