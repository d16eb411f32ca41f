import { describe, expect, it } from "vitest";
import { parseConfigUpdate } from "../../../../sidecar/admin/config-update.js";
import { ConfigError, loadConfig } from "../../../../sidecar/config.js";
import { DEFAULT_LIMITS } from "../../../../sidecar/limits/admission.js";

describe("loadConfig", () => {
  it("uses DESIGN.md's defaults", () => {
    const c = loadConfig([], {});
    expect(c).toMatchObject({
      listen: { host: "0.0.0.0", port: 4001 },
      upstream: "http://127.0.0.1:4000",
      admin: { host: "0.0.0.0", port: 9090 },
      limits: { maxConnections: 0, rejectAtPercent: 90 },
    });
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
  ])("refuses %j with an error naming the flag", (argv, message) => {
    expect(() => loadConfig(argv, {})).toThrow(ConfigError);
    expect(() => loadConfig(argv, {})).toThrow(message);
  });
});

describe("parseConfigUpdate", () => {
  it("merges a partial update over the current limits", () => {
    const u = parseConfigUpdate('{"maxConnections": 7, "topics": [{"match": "room:*", "maxChannels": 3}]}', DEFAULT_LIMITS);
    expect(u).toEqual({ ok: true, limits: { ...DEFAULT_LIMITS, maxConnections: 7 }, topics: [{ match: "room:*", maxChannels: 3 }] });
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
