import { execFileSync } from "node:child_process";
import { X509Certificate } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { choosePkiBackend, LocalCa, type PkiBackend } from "./pki.js";

const dirs: string[] = [];
afterAll(() => { for (const d of dirs) rmSync(d, { recursive: true, force: true }); });

function hasOpenssl(): boolean {
  try { execFileSync("openssl", ["version"], { stdio: "ignore" }); return true; } catch { return false; }
}

// Both signers must produce certificates the same verifier accepts; the openssl one is only
// compared when openssl exists on this machine (the node signer is what runs without it).
const backends: PkiBackend[] = hasOpenssl() ? ["node", "openssl"] : ["node"];

describe.each(backends)("local CA signed by %s", (backend) => {
  const dir = mkdtempSync(join(tmpdir(), `connmeter-pki-${backend}-`));
  dirs.push(dir);
  const ca = LocalCa.create(dir, backend);
  const caCert = new X509Certificate(readFileSync(ca.certPath));

  it("makes a self-signed CA certificate", () => {
    expect(caCert.ca).toBe(true);
    expect(caCert.subject).toBe("CN=connmeter-local-ca");
    expect(caCert.verify(caCert.publicKey)).toBe(true);
  });

  it("issues a serving certificate with DNS and IP alternative names", () => {
    const { cert } = ca.issue({ name: "srv", commonName: "kube-apiserver", server: true, altNames: ["localhost", "127.0.0.1", "198.19.64.1"] });
    const x = new X509Certificate(readFileSync(cert));
    expect(x.ca).toBe(false);
    expect(x.checkIssued(caCert)).toBe(true);
    expect(x.subjectAltName).toBe("DNS:localhost, IP Address:127.0.0.1, IP Address:198.19.64.1");
    expect(x.checkIP("127.0.0.1")).toBe("127.0.0.1");
    expect(x.keyUsage).toEqual(["1.3.6.1.5.5.7.3.1"]);
  });

  it("issues a client certificate carrying groups as organizations", () => {
    const { cert } = ca.issue({ name: "admin", commonName: "admin", organizations: ["system:masters"], client: true });
    const x = new X509Certificate(readFileSync(cert));
    expect(x.subject.split("\n")).toEqual(["O=system:masters", "CN=admin"]);
    expect(x.keyUsage).toEqual(["1.3.6.1.5.5.7.3.2"]);
  });
});

describe("backend choice", () => {
  it("honours CONNMETER_PKI", () => {
    const saved = process.env.CONNMETER_PKI;
    process.env.CONNMETER_PKI = "node";
    try { expect(choosePkiBackend()).toBe("node"); } finally {
      if (saved === undefined) delete process.env.CONNMETER_PKI; else process.env.CONNMETER_PKI = saved;
    }
  });
});
