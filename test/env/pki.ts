// Certificates for the local cluster: one CA, the API server's serving certificate, client
// certificates for each component and a service-account signing key. Keys are ECDSA P-256
// made by Node. Certificates are signed by `openssl` when it is on PATH, otherwise by a small
// DER writer (operator/webhook/x509.ts: Node has no X.509 builder), so nothing outside Node is required.
import { execFileSync } from "node:child_process";
import { generateKeyPairSync, randomBytes, X509Certificate, type KeyObject } from "node:crypto";
import { mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { isIP } from "node:net";
import { join } from "node:path";
import { derCertificate } from "../../operator/webhook/x509.js";

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
      writeFileSync(certPath, derCertificate({ subject, issuer: subject, subjectKey: key, signingKey: key, ca: true, nowMs: Date.now(), validityMs: VALIDITY_DAYS * 86_400_000 }));
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
      writeFileSync(certPath, derCertificate({ subject, issuer, subjectKey: key, signingKey: this.key, ca: false, req, nowMs: Date.now(), validityMs: VALIDITY_DAYS * 86_400_000 }));
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
