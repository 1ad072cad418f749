// Mutual TLS for the feed, as Typha does it: the syncer presents a server certificate and demands a
// client certificate signed by the CA it is given, whose CN or a URI SAN must match --tls-client-cn;
// the agent checks that the syncer's certificate carries --tls-server-name. Unlike Typha, both ends
// pick up new certificate files without a restart (Kubernetes rotates mounted Secrets in place):
// the server swaps the TLS context for new connections, the client builds new credentials for its
// next connection. Connections already open keep the certificates they were made with.
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createSecureContext, type PeerCertificate } from 'node:tls';
import * as grpc from '@grpc/grpc-js';
import { logger } from './log.ts';

const log = logger('feed-tls');

export interface TlsFiles {
  caFile: string;
  certFile: string;
  keyFile: string;
}

export interface ServerTlsConfig extends TlsFiles {
  /** --tls-client-cn: the whole CN, or one whole URI SAN, must match. */
  clientIdentity: RegExp;
}

export interface ClientTlsConfig extends TlsFiles {
  /** --tls-server-name: a DNS name the syncer's certificate must carry. */
  serverName?: string;
}

/** How often certificate files are re-read (they are small; content, not mtime, decides). */
export const DEFAULT_TLS_RELOAD_MS = 5_000;

interface TlsMaterial {
  ca: Buffer;
  cert: Buffer;
  key: Buffer;
  /** Identifies this content: a change of any file changes it. */
  digest: string;
}

/** Reads and checks the three files; throws naming the file or the mismatch. */
export function readTlsMaterial(files: TlsFiles): TlsMaterial {
  const read = (path: string, flag: string) => {
    try {
      return readFileSync(path);
    } catch (e) {
      throw new Error(`${flag} ${path}: ${(e as Error).message}`);
    }
  };
  const ca = read(files.caFile, '--tls-ca-file');
  const cert = read(files.certFile, '--tls-cert-file');
  const key = read(files.keyFile, '--tls-key-file');
  try {
    // Parses all three and checks that the key belongs to the certificate.
    createSecureContext({ ca, cert, key });
  } catch (e) {
    throw new Error(
      `--tls-ca-file ${files.caFile}, --tls-cert-file ${files.certFile}, --tls-key-file ${files.keyFile}: ${(e as Error).message}`,
    );
  }
  const digest = createHash('sha256')
    .update(ca)
    .update('\0')
    .update(cert)
    .update('\0')
    .update(key)
    .digest('hex');
  return { ca, cert, key, digest };
}

/** `--tls-client-cn` as a regular expression matched against the whole name (anchored). */
export function clientIdentityPattern(source: string): RegExp {
  try {
    return new RegExp(`^(?:${source})$`);
  } catch (e) {
    throw new Error(`--tls-client-cn ${source}: not a regular expression (${(e as Error).message})`);
  }
}

/** The names a client certificate proves: its CN(s) and URI SANs. */
export function certificateIdentities(cert: PeerCertificate): string[] {
  const cn = cert.subject?.CN as string | string[] | undefined;
  const names = cn === undefined ? [] : Array.isArray(cn) ? [...cn] : [cn];
  for (const san of (cert.subjectaltname ?? '').split(/,\s*/))
    if (san.startsWith('URI:')) names.push(san.slice('URI:'.length));
  return names;
}

/**
 * Server credentials whose TLS context follows the files: grpc-js calls setSecureContext on its
 * http2 server when updateSecureContextOptions is called, so new handshakes use the new files.
 */
export class ReloadingServerCredentials extends grpc.ServerCredentials {
  private digest: string;
  private timer?: NodeJS.Timeout;

  constructor(
    private readonly files: TlsFiles,
    reloadMs = DEFAULT_TLS_RELOAD_MS,
  ) {
    const m = readTlsMaterial(files);
    // A client without a certificate, or with one from another CA, fails the handshake.
    super({ requestCert: true, rejectUnauthorized: true }, { ca: m.ca, cert: m.cert, key: m.key });
    this.digest = m.digest;
    this.timer = setInterval(() => this.reload(), reloadMs);
    this.timer.unref();
  }

  /** Re-reads the files; a half-written or mismatched set keeps the last good context. */
  reload(): void {
    let m: TlsMaterial;
    try {
      m = readTlsMaterial(this.files);
    } catch (e) {
      log.warn({ err: (e as Error).message }, 'new feed certificates refused; keeping the current ones');
      return;
    }
    if (m.digest === this.digest) return;
    this.digest = m.digest;
    this.updateSecureContextOptions({ ca: m.ca, cert: m.cert, key: m.key });
    log.info({ certFile: this.files.certFile }, 'feed certificates reloaded; new connections use them');
  }

  stop(): void {
    clearInterval(this.timer);
  }

  _equals(other: grpc.ServerCredentials): boolean {
    return other === this;
  }
}

/** Client credentials for one connection attempt, and what identifies them (rebuild on change). */
export interface ClientCredentials {
  digest: string;
  credentials: grpc.ChannelCredentials;
  options: grpc.ChannelOptions;
}

export function clientCredentials(tls: ClientTlsConfig | undefined): ClientCredentials {
  if (!tls) return { digest: 'insecure', credentials: grpc.credentials.createInsecure(), options: {} };
  const m = readTlsMaterial(tls);
  const options: grpc.ChannelOptions = {};
  if (tls.serverName) {
    // The name checked against the syncer's certificate (and sent as SNI), whatever the address.
    options['grpc.ssl_target_name_override'] = tls.serverName;
    options['grpc.default_authority'] = tls.serverName;
  }
  return {
    digest: `${m.digest}|${tls.serverName ?? ''}`,
    credentials: grpc.credentials.createSsl(m.ca, m.key, m.cert),
    options,
  };
}

/** The TLS flags given together, or not at all; names what is missing. */
export function tlsFilesFromFlags(
  flags: { caFile?: string; certFile?: string; keyFile?: string },
  who: string,
): TlsFiles | undefined {
  const given = [flags.caFile, flags.certFile, flags.keyFile].filter((v) => v !== undefined && v !== '');
  if (given.length === 0) return undefined;
  const missing = [
    ['--tls-ca-file', flags.caFile],
    ['--tls-cert-file', flags.certFile],
    ['--tls-key-file', flags.keyFile],
  ]
    .filter(([, v]) => !v)
    .map(([f]) => f);
  if (missing.length > 0) throw new Error(`${who}: TLS needs ${missing.join(', ')} as well`);
  return { caFile: flags.caFile!, certFile: flags.certFile!, keyFile: flags.keyFile! };
}

export interface TlsFlags {
  caFile?: string;
  certFile?: string;
  keyFile?: string;
  insecure?: boolean;
}

/**
 * The agent's and `fedmesh status`'s TLS settings for --feed: TLS when the files are given; a
 * Unix socket may go without (its 0660 mode guards it); plain TCP only with --insecure.
 */
export function feedClientTls(
  feed: string,
  flags: TlsFlags & { serverName?: string },
  who: string,
): ClientTlsConfig | undefined {
  const files = tlsFilesFromFlags(flags, who);
  const unix = feed.startsWith('unix:');
  if (files && flags.insecure) throw new Error(`${who}: --insecure and TLS files given together; choose one`);
  if (!files) {
    if (flags.serverName)
      throw new Error(`${who}: --tls-server-name needs --tls-ca-file, --tls-cert-file, --tls-key-file`);
    if (!unix && !flags.insecure)
      throw new Error(
        `${who}: --feed ${feed} is TCP: give --tls-ca-file, --tls-cert-file and --tls-key-file (mutual TLS), or --insecure for plain text`,
      );
    return undefined;
  }
  // Over TCP the name defaults to --feed's host, as for any TLS client; a socket path has none.
  if (unix && !flags.serverName) throw new Error(`${who}: TLS over a Unix socket needs --tls-server-name`);
  return { ...files, ...(flags.serverName ? { serverName: flags.serverName } : {}) };
}

/** The syncer's TLS settings for --listen: as feedClientTls, plus the client identity pattern. */
export function feedServerTls(
  listen: string,
  flags: TlsFlags & { clientCn?: string },
): ServerTlsConfig | undefined {
  const files = tlsFilesFromFlags(flags, 'syncer');
  if (files && flags.insecure) throw new Error('syncer: --insecure and TLS files given together; choose one');
  if (!files) {
    if (flags.clientCn)
      throw new Error('syncer: --tls-client-cn needs --tls-ca-file, --tls-cert-file, --tls-key-file');
    if (!listen.startsWith('unix:') && !flags.insecure)
      throw new Error(
        `syncer: --listen ${listen} is TCP: give --tls-ca-file, --tls-cert-file, --tls-key-file and --tls-client-cn (mutual TLS), or --insecure for plain text`,
      );
    return undefined;
  }
  // Any certificate the CA ever signed would do otherwise (often the cluster's CA): say which.
  if (!flags.clientCn)
    throw new Error(
      "syncer: TLS needs --tls-client-cn (the agents' certificate CN or URI SAN, a regular expression)",
    );
  return { ...files, clientIdentity: clientIdentityPattern(flags.clientCn) };
}
