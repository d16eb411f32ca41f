import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { MAX_TTL_SECONDS, parseConfigUpdate } from "../../../../sidecar/admin/config-update.js";
import { PushedConfig } from "../../../../sidecar/admin/pushed-config.js";
import { ConfigError, loadConfig } from "../../../../sidecar/config.js";
import type { TopicGroupSpec } from "../../../../sidecar/ledger/topic-groups.js";
import { DEFAULT_LIMITS, type Limits } from "../../../../sidecar/limits/admission.js";

describe("loadConfig", () => {
  it("uses DESIGN.md's defaults", () => {
    const c = loadConfig([], {});
    expect(c).toMatchObject({
      listen: { host: "0.0.0.0", port: 4001 },
      upstream: "http://127.0.0.1:4000",
      admin: { host: "0.0.0.0", port: 9090 },
      limits: { maxConnections: 0, rejectAtPercent: 90 },
      maxHandshakes: 1000,
      handshakeTimeoutSeconds: 10,
      awaitBudgetSeconds: 0,
      tap: true,
    });
    expect(loadConfig(["--tap", "off"], {})).toMatchObject({ tap: false });
  });

  it("reads --await-budget-seconds and CONNMETER_AWAIT_BUDGET_SECONDS", () => {
    expect(loadConfig(["--await-budget-seconds", "20"], {})).toMatchObject({ awaitBudgetSeconds: 20 });
    expect(loadConfig([], { CONNMETER_AWAIT_BUDGET_SECONDS: "15" })).toMatchObject({ awaitBudgetSeconds: 15 });
  });

  it("prefers flags over env vars and env vars over defaults", () => {
    const c = loadConfig(["--listen", "127.0.0.2:5001", "--topic-group", "room:*=10", "--topic-group", "lobby"], {
      CONNMETER_LISTEN: "127.0.0.3:1",
      CONNMETER_MAX_CONNECTIONS: "500",
      CONNMETER_ADMIN_TOKEN: "s3cret",
    });
    expect(c).toMatchObject({
      listen: { host: "127.0.0.2", port: 5001 },
      limits: { maxConnections: 500 },
      topics: [{ match: "room:*", maxChannels: 10 }, { match: "lobby" }],
      adminToken: "s3cret",
    });
  });

  it.each([
    [["--listen", "nope"], /--listen must be host:port/],
    [["--upstream", "ftp://x"], /--upstream must use http/],
    [["--max-connections=-1"], /--max-connections must be an integer/],
    [["--reject-at-percent", "101"], /--reject-at-percent must be an integer in 1..100/],
    [["--bogus"], /Unknown option '--bogus'[\s\S]*usage:/],
    [["--max-handshakes", "0"], /--max-handshakes must be an integer in 1\.\./],
    [["--handshake-timeout-seconds", "0"], /--handshake-timeout-seconds must be an integer in 1\.\.3600/],
    [["--await-budget-seconds=-1"], /--await-budget-seconds must be an integer in 0\.\.3600/],
    [["--max-topic-labels", "5001"], /--max-topic-labels must be an integer in 0\.\.5000/],
    [["--tap", "no"], /--tap must be on or off, got "no"/],
  ])("refuses %j with an error naming the flag", (argv, message) => {
    expect(() => loadConfig(argv, {})).toThrow(ConfigError);
    expect(() => loadConfig(argv, {})).toThrow(message);
  });
});

describe("parseConfigUpdate", () => {
  it("merges a partial update over the current limits", () => {
    const u = parseConfigUpdate('{"maxConnections": 7, "topics": [{"match": "room:*", "maxChannels": 3}]}', DEFAULT_LIMITS);
    expect(u).toEqual({ ok: true, limits: { ...DEFAULT_LIMITS, maxConnections: 7 }, topics: [{ match: "room:*", maxChannels: 3 }], ttlSeconds: undefined });
  });

  it.each([
    ["not json", /not JSON/],
    ["[]", /JSON object/],
    ['{"maxConnection": 1}', /unknown field\(s\) maxConnection/],
    ['{"rejectAtPercent": 0}', /rejectAtPercent must be an integer in 1..100/],
    ['{"topics": [{"match": ""}]}', /topics\[0\].match/],
    ['{"topics": [{"match": "a"}, {"match": "a"}]}', /appears twice/],
    ['{"topics": [{"match": "a", "maxChannels": -2}]}', /topics\[0\].maxChannels/],
  ])("refuses %s with an error naming the field", (body, message) => {
    const u = parseConfigUpdate(body, DEFAULT_LIMITS);
    expect(u.ok).toBe(false);
    if (!u.ok) expect(u.error).toMatch(message);
  });
});

describe("parseConfigUpdate ttlSeconds", () => {
  it("passes a positive integer ttlSeconds through and leaves it undefined when absent", () => {
    expect(parseConfigUpdate('{"maxConnections": 7, "ttlSeconds": 30}', DEFAULT_LIMITS)).toMatchObject({ ok: true, ttlSeconds: 30 });
    expect(parseConfigUpdate('{"maxConnections": 7}', DEFAULT_LIMITS)).toMatchObject({ ok: true, ttlSeconds: undefined });
  });

  it.each(["0", "-5", "1.5", '"30"', "null", String(MAX_TTL_SECONDS + 1)])("refuses ttlSeconds %s", (ttl) => {
    const u = parseConfigUpdate(`{"ttlSeconds": ${ttl}}`, DEFAULT_LIMITS);
    expect(u.ok).toBe(false);
    if (!u.ok) expect(u.error).toMatch(/ttlSeconds must be an integer in 1\.\./);
  });
});

describe("PushedConfig", () => {
  const flags = { limits: { ...DEFAULT_LIMITS, maxConnections: 100 }, topics: [{ match: "room:*" }] };

  function setup() {
    const applied: { limits: Limits; topics: TopicGroupSpec[] | undefined }[] = [];
    const log: string[] = [];
    const config = new PushedConfig({ configure: (limits, topics) => applied.push({ limits, topics }) }, flags, (m) => log.push(m), Date.now);
    return { config, applied, log };
  }

  beforeEach(() => {
    vi.useFakeTimers({ now: Date.parse("2026-01-01T00:00:00Z") });
  });
  afterEach(() => {
    vi.useRealTimers();
  });

  it("starts on the flags with no expiry", () => {
    expect(setup().config.provenance()).toMatchObject({ source: "flags", expiresAt: null, ttlSeconds: null });
  });

  it("falls back to the flags when the TTL passes without a refresh, and logs it", () => {
    const { config, applied, log } = setup();
    config.push({ ...DEFAULT_LIMITS, maxConnections: 7 }, [{ match: "a:*", maxChannels: 1 }], 30);
    expect(config.provenance()).toMatchObject({ source: "pushed", expiresAt: "2026-01-01T00:00:30.000Z", ttlSeconds: 30 });
    vi.advanceTimersByTime(29_999);
    expect(config.isPushed).toBe(true);
    vi.advanceTimersByTime(1);
    expect(config.provenance()).toMatchObject({ source: "flags", expiresAt: null, ttlSeconds: null });
    expect(applied.at(-1)).toEqual({ limits: flags.limits, topics: flags.topics });
    expect(log).toHaveLength(2);
    expect(log[0]).toMatch(/pushed values in force for 30s unless refreshed \(maxConnections=7/);
    expect(log[1]).toMatch(/pushed values expired \(no PUT \/config within 30s\); back to flag values \(maxConnections=100/);
  });

  it("refreshes the TTL on every PUT, and logs only source changes", () => {
    const { config, applied, log } = setup();
    for (let i = 0; i < 5; i++) {
      config.push({ ...DEFAULT_LIMITS, maxConnections: 7 }, undefined, 10);
      vi.advanceTimersByTime(9_000);
    }
    expect(config.isPushed).toBe(true);
    expect(applied).toHaveLength(5);
    expect(log).toHaveLength(1);
    vi.advanceTimersByTime(1_000);
    expect(config.isPushed).toBe(false);
    expect(log).toHaveLength(2);
  });

  it("keeps values pushed without a TTL until replaced", () => {
    const { config } = setup();
    config.push({ ...DEFAULT_LIMITS, maxConnections: 7 }, undefined, 10);
    config.push({ ...DEFAULT_LIMITS, maxConnections: 8 }, undefined, undefined);
    vi.advanceTimersByTime(3_600_000);
    expect(config.provenance()).toMatchObject({ source: "pushed", expiresAt: null, ttlSeconds: null });
  });

  it("a new revision with every push, lift and expiry, none repeated by a restarted process; reads change none", () => {
    const { config } = setup();
    const seen = [config.provenance().revision];
    const note = () => {
      const r = config.provenance().revision;
      expect(config.provenance().revision).toBe(r);
      seen.push(r);
    };
    config.push({ ...DEFAULT_LIMITS, maxConnections: 7 }, undefined, 10);
    note();
    config.push({ ...DEFAULT_LIMITS, maxConnections: 7 }, undefined, 10); // the same values again: a refresh is a change of lease
    note();
    config.reset();
    note();
    config.push({ ...DEFAULT_LIMITS, maxConnections: 7 }, undefined, 10);
    note();
    vi.advanceTimersByTime(10_000);
    note();
    // Another process (the sidecar restarted) starts from other revisions.
    seen.push(setup().config.provenance().revision);
    expect(new Set(seen).size).toBe(seen.length);
  });

  it("reverts on read when the timer has not fired yet (a busy loop fires timers late)", () => {
    const { config } = setup();
    config.push({ ...DEFAULT_LIMITS, maxConnections: 7 }, undefined, 10);
    vi.setSystemTime(Date.now() + 10_000); // the clock moves, the timer has not run
    expect(config.provenance().source).toBe("flags");
  });
});
