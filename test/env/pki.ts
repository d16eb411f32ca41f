// Certificates for the local cluster: one CA, the API server's serving certificate, client
// certificates for each component and a service-account signing key. Keys are ECDSA P-256
// made by Node. Certificates are signed by `openssl` when it is on PATH, otherwise by a small
// DER writer below (Node has no X.509 builder), so nothing outside Node is required.
import { execFileSync } from "node:child_process";
import { createPublicKey, generateKeyPairSync, randomBytes, sign, X509Certificate, type KeyObject } from "node:crypto";
import { mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { isIP } from "node:net";
import { join } from "node:path";

/** What a certificate is for. */
export interface CertRequest {
  /** File stem: writes `<name>.crt` and `<name>.key`. */
  readonly name: string;
  readonly commonName: string;
  readonly organizations?: readonly string[];
  readonly server?: boolean;
  readonly client?: boolean;
  /** DNS names and IP addresses for a serving certificate. */
  readonly altNames?: readonly string[];
}

export type PkiBackend = "openssl" | "node";

const VALIDITY_DAYS = 3650;

/** `openssl` when present on PATH (or forced by CONNMETER_PKI), otherwise Node. */
export function choosePkiBackend(): PkiBackend {
  const forced = process.env.CONNMETER_PKI;
  if (forced === "openssl" || forced === "node") return forced;
  try {
    execFileSync("openssl", ["version"], { stdio: "ignore" });
    return "openssl";
  } catch {
    return "node";
  }
}

function writeKey(path: string): KeyObject {
  const { privateKey } = generateKeyPairSync("ec", { namedCurve: "prime256v1" });
  writeFileSync(path, privateKey.export({ type: "pkcs8", format: "pem" }), { mode: 0o600 });
  return privateKey;
}

/** A certificate authority on disk that signs the requests given to it. */
export class LocalCa {
  private constructor(
    private readonly dir: string,
    private readonly backend: PkiBackend,
    private readonly key: KeyObject,
    private readonly cert: X509Certificate,
  ) {}

  /** Creates `ca.crt`/`ca.key` in `dir` (replacing any). */
  static create(dir: string, backend: PkiBackend = choosePkiBackend()): LocalCa {
    mkdirSync(dir, { recursive: true });
    const keyPath = join(dir, "ca.key");
    const certPath = join(dir, "ca.crt");
    const key = writeKey(keyPath);
    const subject = { commonName: "connmeter-local-ca", organizations: [] };
    if (backend === "openssl") {
      const cnf = join(dir, "openssl.cnf");
      writeFileSync(cnf, "[req]\ndistinguished_name = dn\nprompt = no\n[dn]\nCN = connmeter-local-ca\n");
      openssl(["req", "-x509", "-new", "-config", cnf, "-key", keyPath, "-sha256", "-days", String(VALIDITY_DAYS),
        "-subj", "/CN=connmeter-local-ca", "-set_serial", serialHex(),
        "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign,digitalSignature",
        "-out", certPath]);
      rmSync(cnf);
    } else {
      writeFileSync(certPath, derCertificate({ subject, issuer: subject, subjectKey: key, signingKey: key, ca: true }));
    }
    return new LocalCa(dir, backend, key, new X509Certificate(readFileSync(certPath)));
  }

  get certPath(): string {
    return join(this.dir, "ca.crt");
  }

  get keyPath(): string {
    return join(this.dir, "ca.key");
  }

  /** Issues `<name>.crt`/`<name>.key` in the CA's directory and returns their paths. */
  issue(req: CertRequest): { cert: string; key: string } {
    const keyPath = join(this.dir, `${req.name}.key`);
    const certPath = join(this.dir, `${req.name}.crt`);
    const key = writeKey(keyPath);
    if (this.backend === "openssl") this.issueWithOpenssl(req, keyPath, certPath);
    else {
      const subject = { commonName: req.commonName, organizations: req.organizations ?? [] };
      const issuer = { commonName: "connmeter-local-ca", organizations: [] };
      writeFileSync(certPath, derCertificate({ subject, issuer, subjectKey: key, signingKey: this.key, ca: false, req }));
    }
    const issued = new X509Certificate(readFileSync(certPath));
    if (!issued.checkIssued(this.cert) || !issued.verify(this.cert.publicKey)) {
      throw new Error(`certificate ${certPath} does not verify against ${this.certPath}`);
    }
    return { cert: certPath, key: keyPath };
  }

  private issueWithOpenssl(req: CertRequest, keyPath: string, certPath: string): void {
    const csr = `${certPath}.csr`;
    const ext = `${certPath}.ext`;
    const cnf = `${certPath}.cnf`;
    const subj = [...(req.organizations ?? []).map((o) => `/O=${o}`), `/CN=${req.commonName}`].join("");
    writeFileSync(cnf, "[req]\ndistinguished_name = dn\n[dn]\n");
    const usages = [req.server ? "serverAuth" : "", req.client ? "clientAuth" : ""].filter(Boolean).join(",");
    const lines = ["basicConstraints=critical,CA:FALSE", "keyUsage=critical,digitalSignature,keyEncipherment"];
    if (usages) lines.push(`extendedKeyUsage=${usages}`);
    if (req.altNames?.length) {
      lines.push(`subjectAltName=${req.altNames.map((n) => (isIP(n) ? `IP:${n}` : `DNS:${n}`)).join(",")}`);
    }
    writeFileSync(ext, `${lines.join("\n")}\n`);
    try {
      openssl(["req", "-new", "-config", cnf, "-key", keyPath, "-subj", subj, "-out", csr]);
      openssl(["x509", "-req", "-in", csr, "-CA", this.certPath, "-CAkey", this.keyPath, "-set_serial", serialHex(),
        "-sha256", "-days", String(VALIDITY_DAYS), "-extfile", ext, "-out", certPath]);
    } finally {
      for (const f of [csr, ext, cnf]) rmSync(f, { force: true });
    }
  }
}

/** Writes the service-account signing key pair (`sa.key`, `sa.pub`) into `dir`. */
export function writeServiceAccountKeys(dir: string): { key: string; pub: string } {
  const { privateKey, publicKey } = generateKeyPairSync("ec", { namedCurve: "prime256v1" });
  const key = join(dir, "sa.key");
  const pub = join(dir, "sa.pub");
  writeFileSync(key, privateKey.export({ type: "pkcs8", format: "pem" }), { mode: 0o600 });
  writeFileSync(pub, publicKey.export({ type: "spki", format: "pem" }));
  return { key, pub };
}

function openssl(args: string[]): void {
  try {
    execFileSync("openssl", args, { stdio: ["ignore", "ignore", "pipe"] });
  } catch (err) {
    const stderr = (err as { stderr?: Buffer }).stderr?.toString() ?? "";
    throw new Error(`openssl ${args[0]} failed: ${stderr.trim()} (set CONNMETER_PKI=node to sign without openssl)`);
  }
}

function serialHex(): string {
  const bytes = randomBytes(16);
  bytes[0] = (bytes[0] ?? 0) & 0x7f;
  return `0x${bytes.toString("hex")}`;
}

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

function name(n: { commonName: string; organizations: readonly string[] }): Buffer {
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

interface DerCertInput {
  subject: { commonName: string; organizations: readonly string[] };
  issuer: { commonName: string; organizations: readonly string[] };
  subjectKey: KeyObject;
  signingKey: KeyObject;
  ca: boolean;
  req?: CertRequest;
}

const ECDSA_SHA256 = seq(oid("1.2.840.10045.4.3.2"));

function derCertificate(input: DerCertInput): string {
  const publicDer = createPublicKey(input.subjectKey).export({ type: "spki", format: "der" });
  const now = Date.now();
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
    seq(time(new Date(now - 60_000)), time(new Date(now + VALIDITY_DAYS * 86_400_000))),
    name(input.subject),
    publicDer,
    explicit(3, seq(...exts)),
  );
  const signature = sign("sha256", tbs, input.signingKey);
  const der = seq(tbs, ECDSA_SHA256, bitString(signature));
  const b64 = der.toString("base64").replace(/(.{64})/g, "$1\n").trimEnd();
  return `-----BEGIN CERTIFICATE-----\n${b64}\n-----END CERTIFICATE-----\n`;
}
