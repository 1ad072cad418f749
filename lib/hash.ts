// One digest of a text (as a string) or of bytes (as a Buffer): node:crypto's one-shot `hash` where
// Node has it (20.12 on: no Hash object per call, about half the cost for the short inputs hashed by
// the thousand: selector ids, VTEP MACs, rule hashes), else through createHash. The same answer
// either way.
import { createHash, hash } from 'node:crypto';

export type DigestAlgorithm = 'sha1' | 'sha224' | 'sha256';
export type DigestEncoding = 'hex' | 'base64url';

/** The digest of the UTF-8 text. */
export const textDigest: (algorithm: DigestAlgorithm, text: string, encoding: DigestEncoding) => string =
  typeof hash === 'function'
    ? (algorithm, text, encoding) => hash(algorithm, text, encoding)
    : (algorithm, text, encoding) => createHash(algorithm).update(text, 'utf8').digest(encoding);

/** Whether the one-shot `hash` can answer with bytes (its 'buffer' output), asked once. */
const hashGivesBytes = typeof hash === 'function' && Buffer.isBuffer(hash('sha1', '', 'buffer' as 'hex'));

/** The raw digest of bytes, as a new Buffer. */
export const bytesDigest: (algorithm: DigestAlgorithm, data: Uint8Array) => Buffer = hashGivesBytes
  ? (algorithm, data) => hash(algorithm, data, 'buffer' as 'hex') as unknown as Buffer
  : (algorithm, data) => createHash(algorithm).update(data).digest();
