import { describe, expect, it } from "vitest";
import { pemCertificates, type TlsData } from "../../../../operator/webhook/certs.js";
import { TlsKeeper, type CaBundleTarget, type TlsSecretStore } from "../../../../operator/webhook/tls-keeper.js";

function fakes(initial: TlsData = {}) {
  const secret = { data: initial, resourceVersion: "1" };
  const writes: TlsData[] = [];
  const store: TlsSecretStore = {
    read: async () => ({ ...secret }),
    write: async (data, rv) => {
      if (rv !== secret.resourceVersion) throw Object.assign(new Error("conflict"), { statusCode: 409 });
      secret.data = data;
      secret.resourceVersion = String(Number(rv) + 1);
      writes.push(data);
    },
  };
  const config = { bundle: undefined as string | undefined };
  const bundle: CaBundleTarget = { read: async () => config.bundle, write: async (b) => void (config.bundle = b) };
  return { secret, writes, store, bundle, config };
}

describe("TlsKeeper", () => {
  it("as leader creates the certificate, patches the caBundle, and serves it; a standby only serves what the Secret holds", async () => {
    const f = fakes();
    const served: string[] = [];
    const leader = new TlsKeeper({ store: f.store, manage: { bundle: f.bundle, dnsNames: ["svc.ns.svc"] }, isLeader: () => true, onCertificate: (c) => served.push(c), clock: Date.now, log: () => {} });
    await leader.tick();
    expect(f.writes).toHaveLength(1);
    expect(f.config.bundle).toBe(f.secret.data.caBundle);
    expect(served).toEqual([f.secret.data.tlsCert]);
    await leader.tick();
    expect(f.writes).toHaveLength(1);

    const standbyServed: string[] = [];
    const logs: string[] = [];
    const standby = new TlsKeeper({ store: f.store, manage: { bundle: f.bundle, dnsNames: ["svc.ns.svc"] }, isLeader: () => false, onCertificate: (c) => standbyServed.push(c), clock: Date.now, log: (l) => logs.push(l) });
    await standby.tick();
    expect(standbyServed).toEqual([f.secret.data.tlsCert]);
    expect(f.writes).toHaveLength(1);
  });

  it("puts back a caBundle that was reset (a helm upgrade without lookup), and logs a missing Secret once", async () => {
    const f = fakes();
    const keeper = new TlsKeeper({ store: f.store, manage: { bundle: f.bundle, dnsNames: ["a"] }, isLeader: () => true, onCertificate: () => {}, clock: Date.now, log: () => {} });
    await keeper.tick();
    f.config.bundle = undefined;
    await keeper.tick();
    expect(pemCertificates(f.config.bundle)).toHaveLength(1);

    const logs: string[] = [];
    const missing = new TlsKeeper({ store: { read: async () => undefined, write: async () => {} }, manage: undefined, isLeader: () => true, onCertificate: () => {}, clock: Date.now, log: (l) => logs.push(l) });
    await missing.tick();
    await missing.tick();
    expect(logs).toEqual(["webhook certificate: the webhook's TLS Secret does not exist (the chart creates it) (retried every 30 s)"]);
  });
});
