// X.509 certificates with Node's crypto only: Node signs and verifies but has no certificate
// builder, so this is a minimal DER writer for what a self-signed CA and a TLS certificate with
// ECDSA P-256 need. Used by the webhook's self-managed certificates (operator/webhook/certs.ts)
// and by the local test cluster's PKI (test/env/pki.ts). Checked by Node's own X509Certificate
// (verify, checkIssued) in the tests, and by the API server and kubectl in e2e.
import { createPublicKey, randomBytes, sign, type KeyObject } from "node:crypto";
import { isIP } from "node:net";

// --- A minimal DER writer: just what an X.509 v3 certificate with ECDSA needs. ---

function tlv(tag: number, content: Buffer): Buffer {
  const len = content.length;
  let header: Buffer;
  if (len < 0x80) header = Buffer.from([tag, len]);
  else {
    const bytes: number[] = [];
    for (let n = len; n > 0; n >>= 8) bytes.unshift(n & 0xff);
    header = Buffer.from([tag, 0x80 | bytes.length, ...bytes]);
  }
  return Buffer.concat([header, content]);
}

const seq = (...parts: Buffer[]) => tlv(0x30, Buffer.concat(parts));
const set = (...parts: Buffer[]) => tlv(0x31, Buffer.concat(parts));
const octets = (b: Buffer) => tlv(0x04, b);
const utf8 = (s: string) => tlv(0x0c, Buffer.from(s, "utf8"));
const bool = (v: boolean) => tlv(0x01, Buffer.from([v ? 0xff : 0]));
const explicit = (n: number, content: Buffer) => tlv(0xa0 + n, content);

function integer(bytes: Buffer): Buffer {
  let b = bytes;
  while (b.length > 1 && b[0] === 0 && ((b[1] ?? 0) & 0x80) === 0) b = b.subarray(1);
  if (((b[0] ?? 0) & 0x80) !== 0) b = Buffer.concat([Buffer.from([0]), b]);
  return tlv(0x02, b);
}

function oid(dotted: string): Buffer {
  const parts = dotted.split(".").map(Number);
  const out: number[] = [40 * (parts[0] ?? 0) + (parts[1] ?? 0)];
  for (const p of parts.slice(2)) {
    const chunk: number[] = [p & 0x7f];
    for (let n = p >> 7; n > 0; n >>= 7) chunk.unshift(0x80 | (n & 0x7f));
    out.push(...chunk);
  }
  return tlv(0x06, Buffer.from(out));
}

function bitString(bytes: Buffer, unusedBits = 0): Buffer {
  return tlv(0x03, Buffer.concat([Buffer.from([unusedBits]), bytes]));
}

/** KeyUsage bits, DER-minimal (trailing zero bits dropped). */
function keyUsage(bits: number[]): Buffer {
  let value = 0;
  for (const bit of bits) value |= 0x80 >> bit;
  const last = Math.max(...bits);
  return bitString(Buffer.from([value]), 7 - last);
}

function time(date: Date): Buffer {
  const iso = date.toISOString().replace(/[-:T]/g, "").slice(0, 14);
  return date.getUTCFullYear() < 2050 ? tlv(0x17, Buffer.from(`${iso.slice(2)}Z`)) : tlv(0x18, Buffer.from(`${iso}Z`));
}

function name(n: DistinguishedName): Buffer {
  const rdns = n.organizations.map((o) => set(seq(oid("2.5.4.10"), utf8(o))));
  rdns.push(set(seq(oid("2.5.4.3"), utf8(n.commonName))));
  return seq(...rdns);
}

function extension(id: string, critical: boolean, value: Buffer): Buffer {
  return critical ? seq(oid(id), bool(true), octets(value)) : seq(oid(id), octets(value));
}

function ipBytes(ip: string): Buffer {
  if (isIP(ip) === 4) return Buffer.from(ip.split(".").map(Number));
  const full = ip.includes("::") ? expandV6(ip) : ip.split(":");
  return Buffer.from(full.flatMap((g) => { const n = parseInt(g, 16); return [n >> 8, n & 0xff]; }));
}

function expandV6(ip: string): string[] {
  const [head = "", tail = ""] = ip.split("::");
  const h = head ? head.split(":") : [];
  const t = tail ? tail.split(":") : [];
  return [...h, ...Array<string>(8 - h.length - t.length).fill("0"), ...t];
}

export interface DistinguishedName {
  commonName: string;
  organizations: readonly string[];
}

export interface DerCertInput {
  subject: DistinguishedName;
  issuer: DistinguishedName;
  subjectKey: KeyObject;
  signingKey: KeyObject;
  ca: boolean;
  /** Extended key usages and subject alternative names of a leaf certificate. */
  req?: { server?: boolean; client?: boolean; altNames?: readonly string[] };
  /** Validity start, epoch ms (the certificate is valid from a minute before it). */
  nowMs: number;
  validityMs: number;
}

const ECDSA_SHA256 = seq(oid("1.2.840.10045.4.3.2"));

/** A PEM certificate signed by `signingKey` (ECDSA with SHA-256). */
export function derCertificate(input: DerCertInput): string {
  const publicDer = createPublicKey(input.subjectKey).export({ type: "spki", format: "der" });
  const now = input.nowMs;
  const exts: Buffer[] = [];
  if (input.ca) {
    exts.push(extension("2.5.29.19", true, seq(bool(true))));
    exts.push(extension("2.5.29.15", true, keyUsage([0, 5, 6])));
  } else {
    exts.push(extension("2.5.29.19", true, seq()));
    exts.push(extension("2.5.29.15", true, keyUsage([0, 2])));
    const usages: Buffer[] = [];
    if (input.req?.server) usages.push(oid("1.3.6.1.5.5.7.3.1"));
    if (input.req?.client) usages.push(oid("1.3.6.1.5.5.7.3.2"));
    if (usages.length) exts.push(extension("2.5.29.37", false, seq(...usages)));
    const alt = input.req?.altNames ?? [];
    if (alt.length) {
      const names = alt.map((n) => (isIP(n) ? tlv(0x87, ipBytes(n)) : tlv(0x82, Buffer.from(n, "ascii"))));
      exts.push(extension("2.5.29.17", false, seq(...names)));
    }
  }
  const serial = randomBytes(16);
  serial[0] = (serial[0] ?? 0) & 0x7f;
  const tbs = seq(
    explicit(0, integer(Buffer.from([2]))),
    integer(serial),
    ECDSA_SHA256,
    name(input.issuer),
    seq(time(new Date(now - 60_000)), time(new Date(now + input.validityMs))),
    name(input.subject),
    publicDer,
    explicit(3, seq(...exts)),
  );
  const signature = sign("sha256", tbs, input.signingKey);
  const der = seq(tbs, ECDSA_SHA256, bitString(signature));
  const b64 = der.toString("base64").replace(/(.{64})/g, "$1\n").trimEnd();
  return `-----BEGIN CERTIFICATE-----\n${b64}\n-----END CERTIFICATE-----\n`;
}
