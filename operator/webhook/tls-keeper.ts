// Keeps the webhook's certificate: every replica reloads it from the Secret (the source of
// truth) and serves it; the leader alone creates, renews and rotates it (certs.ts) and keeps
// the MutatingWebhookConfiguration's caBundle equal to the Secret's bundle. One loop, every
// `periodMs`: a new certificate reaches every replica within one period, a rotation's second
// step (the serving certificate of the new CA) follows one period after the caBundle patch.
import { planTls, type TlsData } from "./certs.js";

export interface TlsSecretStore {
  /** The Secret's data and resourceVersion; undefined when it does not exist. */
  read(): Promise<{ data: TlsData; resourceVersion: string } | undefined>;
  /** Writes the data only if the Secret is still at `resourceVersion` (409 otherwise). */
  write(data: TlsData, resourceVersion: string): Promise<void>;
}

export interface CaBundleTarget {
  /** The caBundle every webhook of the configuration holds, if they all hold the same (else undefined). */
  read(): Promise<string | undefined>;
  write(bundle: string): Promise<void>;
}

export interface TlsKeeperOptions {
  store: TlsSecretStore;
  /** Undefined when someone else (cert-manager's CA injector) keeps the caBundle and the certificate. */
  manage: { bundle: CaBundleTarget; dnsNames: readonly string[] } | undefined;
  isLeader: () => boolean;
  onCertificate: (certPem: string, keyPem: string) => void;
  clock: () => number;
  log: (line: string) => void;
  periodMs?: number;
}

export const TLS_CHECK_PERIOD_MS = 30_000;

export class TlsKeeper {
  private lastError: string | undefined;

  constructor(private readonly opts: TlsKeeperOptions) {}

  /** One pass: manage (leader), then load what the Secret holds. Errors are logged once each, then retried next period. */
  async tick(): Promise<void> {
    try {
      let secret = await this.opts.store.read();
      if (!secret) throw new Error("the webhook's TLS Secret does not exist (the chart creates it)");
      if (this.opts.manage && this.opts.isLeader()) secret = await this.manage(secret, this.opts.manage);
      const { tlsCert, tlsKey } = secret.data;
      if (tlsCert && tlsKey) this.opts.onCertificate(tlsCert, tlsKey);
      this.lastError = undefined;
    } catch (err) {
      const message = (err as Error).message;
      if (message !== this.lastError) this.opts.log(`webhook certificate: ${message} (retried every ${(this.opts.periodMs ?? TLS_CHECK_PERIOD_MS) / 1000} s)`);
      this.lastError = message;
    }
  }

  private async manage(secret: { data: TlsData; resourceVersion: string }, m: NonNullable<TlsKeeperOptions["manage"]>): Promise<{ data: TlsData; resourceVersion: string }> {
    const trusted = await m.bundle.read();
    const plan = planTls({ current: secret.data, trusted, dnsNames: m.dnsNames, nowMs: this.opts.clock() });
    let data = secret.data;
    if (plan.changes.length > 0) {
      await this.opts.store.write(plan.next, secret.resourceVersion);
      this.opts.log(`webhook certificate: ${plan.changes.join(", ")}${plan.waitingForTrust ? "; the serving certificate switches once the webhook trusts the new CA" : ""}`);
      data = plan.next;
    }
    if (data.caBundle && data.caBundle !== trusted) {
      await m.bundle.write(data.caBundle);
      this.opts.log("webhook certificate: caBundle of the MutatingWebhookConfiguration updated");
    }
    return { data, resourceVersion: secret.resourceVersion };
  }

  /** Runs `tick` now and every period until `signal` aborts. */
  async run(signal: AbortSignal): Promise<void> {
    const period = this.opts.periodMs ?? TLS_CHECK_PERIOD_MS;
    while (!signal.aborted) {
      await this.tick();
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, period);
        signal.addEventListener("abort", () => {
          clearTimeout(t);
          resolve();
        }, { once: true });
      });
    }
  }
}
