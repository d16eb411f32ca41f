// The webhook's self-managed certificates, as a pure plan: what the Secret holds now, what
// the MutatingWebhookConfiguration trusts now, the time → what the Secret must hold next.
// After cert-controller (the Secret is the source of truth, renew well before expiry) and
// Kyverno (unexpired old CAs stay in the bundle beside the new one, so a rotation never fails
// an admission): a new CA first goes into the bundle, and the serving certificate switches to
// it only once the webhook configuration trusts it.
import { X509Certificate, createPrivateKey, generateKeyPairSync } from "node:crypto";
import { derCertificate } from "./x509.js";

/** The Secret's keys (PEM). `ca-bundle.crt` is what the webhook configuration's caBundle must hold. */
export const TLS_KEYS = { caCert: "ca.crt", caKey: "ca.key", caBundle: "ca-bundle.crt", tlsCert: "tls.crt", tlsKey: "tls.key" } as const;

export type TlsData = Partial<Record<keyof typeof TLS_KEYS, string>>;

const DAY_MS = 86_400_000;
/** CA: 5 years; serving certificate: 1 year. Each is renewed with a third of its life left. */
export const CA_VALIDITY_MS = 5 * 365 * DAY_MS;
export const CERT_VALIDITY_MS = 365 * DAY_MS;
/** Old CAs kept in the bundle beside the current one (unexpired only). */
const MAX_OLD_CAS = 2;

export interface TlsPlanInput {
  current: TlsData;
  /** The caBundle the webhook configuration holds now (PEM), if read. */
  trusted: string | undefined;
  /** DNS names the serving certificate must carry (the webhook Service's). */
  dnsNames: readonly string[];
  nowMs: number;
  caValidityMs?: number;
  certValidityMs?: number;
}

export interface TlsPlan {
  /** The Secret's data to write (equal to `current` when nothing changed). */
  next: TlsData;
  /** Why it changed, for the log; empty: unchanged. */
  changes: string[];
  /** The serving certificate waits for the webhook configuration to trust the new CA. */
  waitingForTrust: boolean;
}

/** Splits a PEM bundle into its certificates (unparsable blocks are dropped). */
export function pemCertificates(bundle: string | undefined): X509Certificate[] {
  const blocks = bundle?.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? [];
  const out: X509Certificate[] = [];
  for (const b of blocks) {
    try {
      out.push(new X509Certificate(b));
    } catch {
      // A damaged block: the plan replaces what depended on it.
    }
  }
  return out;
}

function parse(pem: string | undefined): X509Certificate | undefined {
  return pemCertificates(pem)[0];
}

function keyMatches(cert: X509Certificate, keyPem: string | undefined): boolean {
  if (!keyPem) return false;
  try {
    return cert.checkPrivateKey(createPrivateKey(keyPem));
  } catch {
    return false;
  }
}

/** Whether less than a third of the certificate's life is left (or it is not valid yet or any more). */
function dueForRenewal(cert: X509Certificate, nowMs: number): boolean {
  const from = Date.parse(cert.validFrom);
  const to = Date.parse(cert.validTo);
  return nowMs < from || to - nowMs < (to - from) / 3;
}

function hasNames(cert: X509Certificate, names: readonly string[]): boolean {
  const sans = new Set((cert.subjectAltName ?? "").split(", ").filter((s) => s.startsWith("DNS:")).map((s) => s.slice(4)));
  return names.every((n) => sans.has(n));
}

function issuedBy(cert: X509Certificate, ca: X509Certificate): boolean {
  return cert.checkIssued(ca) && cert.verify(ca.publicKey);
}

function newKeyPem(): { key: ReturnType<typeof createPrivateKey>; pem: string } {
  const { privateKey } = generateKeyPairSync("ec", { namedCurve: "prime256v1" });
  return { key: privateKey, pem: privateKey.export({ type: "pkcs8", format: "pem" }) as string };
}

/**
 * Each CA gets its own subject (the time it was made): during a rotation the bundle holds two
 * CAs, and verifiers that pick an issuer by subject name (OpenSSL) must not take the wrong one.
 */
function caName(nowMs: number): { commonName: string; organizations: string[] } {
  return { commonName: `connmeter-webhook-ca-${nowMs}`, organizations: ["connmeter.io"] };
}

/** The subject of a CA this module made, to name it as the issuer of the certificates it signs. */
function subjectOf(ca: X509Certificate): { commonName: string; organizations: string[] } {
  const fields = ca.subject.split("\n");
  const get = (k: string) => fields.filter((f) => f.startsWith(`${k}=`)).map((f) => f.slice(k.length + 1));
  return { commonName: get("CN")[0] ?? "", organizations: get("O") };
}

/** What the Secret must hold next: a CA, a bundle with it (and unexpired old CAs), a serving certificate it signed. */
export function planTls(input: TlsPlanInput): TlsPlan {
  const { current, nowMs } = input;
  const changes: string[] = [];
  const next: TlsData = { ...current };
  let ca = parse(current.caCert);
  const caProblem = !ca ? "no CA" : !keyMatches(ca, current.caKey) ? "CA key does not match" : dueForRenewal(ca, nowMs) ? "CA near expiry" : undefined;
  if (caProblem) {
    const { key, pem } = newKeyPem();
    const name = caName(nowMs);
    next.caCert = derCertificate({ subject: name, issuer: name, subjectKey: key, signingKey: key, ca: true, nowMs, validityMs: input.caValidityMs ?? CA_VALIDITY_MS });
    next.caKey = pem;
    ca = new X509Certificate(next.caCert);
    changes.push(`new CA (${caProblem})`);
  }
  const caNow = ca!;
  const old = pemCertificates(current.caBundle).filter((c) => !c.raw.equals(caNow.raw) && Date.parse(c.validTo) > nowMs).slice(0, MAX_OLD_CAS);
  const bundle = [caNow, ...old].map((c) => c.toString()).join("");
  if (bundle !== current.caBundle) {
    next.caBundle = bundle;
    if (!caProblem) changes.push("bundle pruned");
  }

  const cert = parse(current.tlsCert);
  const certProblem = !cert ? "no serving certificate"
    : !keyMatches(cert, current.tlsKey) ? "serving key does not match"
      : !hasNames(cert, input.dnsNames) ? "service names changed"
        : dueForRenewal(cert, nowMs) ? "serving certificate near expiry"
          : !issuedBy(cert, caNow) ? "signed by an old CA" : undefined;
  // A valid certificate of an old CA stays until the webhook configuration trusts the new one:
  // switching earlier fails every admission in between.
  // (A certificate near expiry but still valid waits too: it works for months yet.)
  const trusted = pemCertificates(input.trusted);
  const usable = cert && (certProblem === "signed by an old CA" || certProblem === "serving certificate near expiry") && Date.parse(cert.validTo) > nowMs;
  const stillTrusted = usable && trusted.some((t) => issuedBy(cert, t));
  const newCaTrusted = trusted.some((c) => c.raw.equals(caNow.raw));
  const waitingForTrust = Boolean(stillTrusted && !newCaTrusted);
  if (certProblem && !waitingForTrust) {
    const { key, pem } = newKeyPem();
    next.tlsCert = derCertificate({
      subject: { commonName: input.dnsNames[0] ?? "connmeter-webhook", organizations: [] }, issuer: subjectOf(caNow), subjectKey: key,
      signingKey: createPrivateKey(next.caKey!), ca: false, req: { server: true, altNames: input.dnsNames }, nowMs, validityMs: input.certValidityMs ?? CERT_VALIDITY_MS,
    });
    next.tlsKey = pem;
    changes.push(`new serving certificate (${certProblem})`);
  }
  return { next, changes, waitingForTrust };
}

/** The DNS names of a Service as clients inside the cluster address it. */
export function serviceDnsNames(service: string, namespace: string): string[] {
  return [`${service}.${namespace}.svc`, `${service}.${namespace}.svc.cluster.local`, `${service}.${namespace}`, service];
}
