import { X509Certificate, createPrivateKey } from "node:crypto";
import { describe, expect, it } from "vitest";
import { CA_VALIDITY_MS, CERT_VALIDITY_MS, pemCertificates, planTls, serviceDnsNames, type TlsData } from "../../../../operator/webhook/certs.js";

const NAMES = serviceDnsNames("connmeter-webhook", "connmeter-system");
const T0 = Date.parse("2026-12-01T00:00:00Z");
const DAY = 86_400_000;

function verifies(data: TlsData): boolean {
  const cert = new X509Certificate(data.tlsCert!);
  return pemCertificates(data.caBundle).some((ca) => cert.checkIssued(ca) && cert.verify(ca.publicKey));
}

describe("planTls", () => {
  it("creates a CA, a bundle and a serving certificate for the Service's names on an empty Secret", () => {
    const plan = planTls({ current: {}, trusted: undefined, dnsNames: NAMES, nowMs: T0 });
    expect(plan.changes).toEqual(["new CA (no CA)", "new serving certificate (no serving certificate)"]);
    const cert = new X509Certificate(plan.next.tlsCert!);
    expect(cert.subjectAltName).toBe(NAMES.map((n) => `DNS:${n}`).join(", "));
    expect(cert.checkPrivateKey(createPrivateKey(plan.next.tlsKey!))).toBe(true);
    expect(new X509Certificate(plan.next.caCert!).ca).toBe(true);
    expect(cert.ca).toBe(false);
    expect(verifies(plan.next)).toBe(true);
    expect(plan.next.caBundle).toBe(new X509Certificate(plan.next.caCert!).toString());
  });

  it("changes nothing while both certificates have more than a third of their life left", () => {
    const first = planTls({ current: {}, trusted: undefined, dnsNames: NAMES, nowMs: T0 }).next;
    const later = planTls({ current: first, trusted: first.caBundle, dnsNames: NAMES, nowMs: T0 + 200 * DAY });
    expect(later.changes).toEqual([]);
    expect(later.next).toEqual(first);
  });

  it("renews the serving certificate well before it expires, from the same CA", () => {
    const first = planTls({ current: {}, trusted: undefined, dnsNames: NAMES, nowMs: T0 }).next;
    const at = T0 + CERT_VALIDITY_MS - 100 * DAY;
    const plan = planTls({ current: first, trusted: first.caBundle, dnsNames: NAMES, nowMs: at });
    expect(plan.changes).toEqual(["new serving certificate (serving certificate near expiry)"]);
    expect(plan.next.caCert).toBe(first.caCert);
    expect(verifies(plan.next)).toBe(true);
  });

  it("rotates the CA in two steps: the bundle trusts old and new, the serving certificate switches once the webhook trusts the new CA", () => {
    const first = planTls({ current: {}, trusted: undefined, dnsNames: NAMES, nowMs: T0, certValidityMs: CA_VALIDITY_MS }).next;
    const at = T0 + CA_VALIDITY_MS - 300 * DAY;
    const step1 = planTls({ current: first, trusted: first.caBundle, dnsNames: NAMES, nowMs: at, certValidityMs: CA_VALIDITY_MS });
    expect(step1.changes).toEqual(["new CA (CA near expiry)"]);
    expect(step1.waitingForTrust).toBe(true);
    expect(step1.next.tlsCert).toBe(first.tlsCert);
    expect(pemCertificates(step1.next.caBundle).map((c) => c.toString())).toEqual([step1.next.caCert, first.caCert]);
    // Not yet trusted: still waiting, nothing more changes.
    expect(planTls({ current: step1.next, trusted: first.caBundle, dnsNames: NAMES, nowMs: at + 60_000 }).changes).toEqual([]);
    const step2 = planTls({ current: step1.next, trusted: step1.next.caBundle, dnsNames: NAMES, nowMs: at + 60_000 });
    expect(step2.changes).toEqual(["new serving certificate (serving certificate near expiry)"]);
    const cert = new X509Certificate(step2.next.tlsCert!);
    expect(cert.checkIssued(new X509Certificate(step2.next.caCert!))).toBe(true);
    // The old CA stays in the bundle until it expires.
    expect(pemCertificates(step2.next.caBundle)).toHaveLength(2);
    const afterOldExpiry = planTls({ current: step2.next, trusted: step2.next.caBundle, dnsNames: NAMES, nowMs: T0 + CA_VALIDITY_MS + DAY });
    expect(pemCertificates(afterOldExpiry.next.caBundle)).toHaveLength(1);
  });

  it("reissues when the Service's names change or a key does not match its certificate", () => {
    const first = planTls({ current: {}, trusted: undefined, dnsNames: NAMES, nowMs: T0 }).next;
    expect(planTls({ current: first, trusted: first.caBundle, dnsNames: serviceDnsNames("other", "ns"), nowMs: T0 }).changes)
      .toEqual(["new serving certificate (service names changed)"]);
    const swapped = { ...first, tlsKey: first.caKey };
    expect(planTls({ current: swapped, trusted: first.caBundle, dnsNames: NAMES, nowMs: T0 }).changes).toEqual(["new serving certificate (serving key does not match)"]);
    expect(planTls({ current: { ...first, caCert: "garbage" }, trusted: first.caBundle, dnsNames: NAMES, nowMs: T0 }).changes[0]).toBe("new CA (no CA)");
  });
});
