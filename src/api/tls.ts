import fs from 'node:fs';
import type https from 'node:https';
import tls from 'node:tls';
import { ConfigError, type TlsConfig } from '../config.js';

/**
 * The API's TLS settings, read from the operator's PEM files. Each file is
 * read and the key checked against the certificate here, so a missing file
 * or a mismatched pair is a configuration error naming its variable, at
 * start and on every reload. With a client CA, a client without a
 * certificate it signed is refused during the handshake (mutual TLS).
 */
export function readTls(cfg: TlsConfig): https.ServerOptions {
  const read = (file: string, variable: string) => {
    try {
      return fs.readFileSync(file);
    } catch (err) {
      throw new ConfigError(variable, `cannot read "${file}": ${(err as Error).message}`);
    }
  };
  const options: https.ServerOptions = {
    cert: read(cfg.certFile, 'GANTRY_TLS_CERT'),
    key: read(cfg.keyFile, 'GANTRY_TLS_KEY'),
    ...(cfg.clientCaFile ? { ca: read(cfg.clientCaFile, 'GANTRY_TLS_CLIENT_CA'), requestCert: true, rejectUnauthorized: true } : {}),
  };
  try {
    tls.createSecureContext(options);
  } catch (err) {
    throw new ConfigError('GANTRY_TLS_CERT', `the certificate, key or client CA is not usable: ${(err as Error).message}`);
  }
  return options;
}

/**
 * Swaps the certificate, key and client CA of a listening server for what
 * the files hold now: connections made from then on use them; open ones
 * keep theirs. Throws ConfigError (and changes nothing) when they cannot be used.
 */
export function reloadTls(server: tls.Server, cfg: TlsConfig): void {
  server.setSecureContext(readTls(cfg));
}
