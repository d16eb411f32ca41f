import { afterEach, describe, expect, it } from "vitest";
import { Informer, WATCH_INACTIVITY_TIMEOUT_MS, type ChangeType, type KubernetesObject, type InformerTransport, type ListPage, type RestartReason } from "../../../../operator/k8s/informer.js";
import { KubeApiError } from "../../../../operator/k8s/request.js";
import { FakeTime, settle } from "./fake-time.js";

const obj = (name: string, rv: string, ns = "ns"): KubernetesObject => ({ metadata: { name, namespace: ns, resourceVersion: rv } });
/**
 * The delays of the backoff, without the inactivity timer's first arming (one per watch);
 * only for tests where no event arrives mid-period (a re-arm waits for the remainder).
 */
const backoffs = (time: FakeTime) => time.delays.filter((d) => d !== WATCH_INACTIVITY_TIMEOUT_MS);

/** A scripted API server: lists answer from `pages`/`state`, watches are driven by the test. */
class FakeServer implements InformerTransport {
  state: KubernetesObject[] = [];
  listRv = "10";
  listCalls: Array<{ limit?: number; continueToken?: string }> = [];
  listError: unknown;
  watches: Array<{ query: { resourceVersion: string; timeoutSeconds: number }; emit: (type: string, o: unknown) => void; done: (err: unknown) => void; aborted: boolean }> = [];
  pages: Array<ListPage<KubernetesObject> | Error> | undefined;

  async list(query: { limit?: number; continueToken?: string }): Promise<ListPage<KubernetesObject>> {
    this.listCalls.push(query);
    if (this.listError) {
      const err = this.listError;
      this.listError = undefined;
      throw err;
    }
    const page = this.pages?.shift();
    if (page instanceof Error) throw page;
    return page ?? { items: [...this.state], resourceVersion: this.listRv };
  }

  async watch(query: { resourceVersion: string; timeoutSeconds: number }, onEvent: (type: string, o: unknown) => void, onDone: (err: unknown) => void) {
    const w = { query, emit: onEvent, done: onDone, aborted: false };
    this.watches.push(w);
    return { abort: () => { w.aborted = true; } };
  }

  get last() {
    return this.watches[this.watches.length - 1]!;
  }
}

function setup(server: FakeServer, random = () => 0.5) {
  const time = new FakeTime();
  const restarts: RestartReason[] = [];
  const lines: string[] = [];
  const inf = new Informer<KubernetesObject>({
    kc: undefined as never, resource: "pods", path: "/api/v1/pods", transport: server,
    clock: time.clock, delay: time.delay, random, log: (l) => lines.push(l),
    onWatchRestart: (_r, reason) => restarts.push(reason),
  });
  const seen: Array<[ChangeType, string, string | undefined]> = [];
  inf.onChange((type, o, old) => seen.push([type, o.metadata?.name ?? "", old?.metadata?.resourceVersion]));
  return { time, inf, restarts, seen, lines };
}

let stopLater: Informer<KubernetesObject> | undefined;
afterEach(async () => {
  await stopLater?.stop();
  stopLater = undefined;
});

describe("Informer", () => {
  it("lists, syncs, then watches from the list's resourceVersion with bookmarks and a 300-600 s server timeout", async () => {
    const server = new FakeServer();
    server.state = [obj("a", "5"), obj("b", "6")];
    const { inf, seen } = setup(server, () => 0.999);
    stopLater = inf;
    expect(inf.hasSynced).toBe(false);
    inf.start();
    inf.start();
    await inf.waitForSync();
    await settle();
    expect(inf.hasSynced).toBe(true);
    expect(seen).toEqual([["add", "a", undefined], ["add", "b", undefined]]);
    expect(server.listCalls).toEqual([{ limit: 500 }]);
    expect(server.watches).toHaveLength(1);
    expect(server.last.query).toEqual({ resourceVersion: "10", timeoutSeconds: 599 });
    expect(inf.get("ns", "a")?.metadata?.resourceVersion).toBe("5");
    expect(inf.list("ns")).toHaveLength(2);
    expect(inf.list("other")).toHaveLength(0);
  });

  it("applies events, emits update only when the resourceVersion changed, and resumes from the last one after a clean close", async () => {
    const server = new FakeServer();
    const { inf, seen, time, restarts } = setup(server);
    stopLater = inf;
    inf.start();
    await inf.waitForSync();
    await settle();
    server.last.emit("ADDED", obj("a", "11"));
    server.last.emit("MODIFIED", obj("a", "11")); // same version: no update
    server.last.emit("MODIFIED", obj("a", "12"));
    server.last.emit("DELETED", obj("a", "13"));
    server.last.emit("BOOKMARK", { metadata: { resourceVersion: "20" } });
    expect(seen).toEqual([["add", "a", undefined], ["update", "a", "11"], ["delete", "a", undefined]]);
    await time.advance(100_000);
    server.last.done(null);
    await settle();
    expect(server.watches).toHaveLength(2);
    expect(server.last.query.resourceVersion).toBe("20");
    expect(restarts).toEqual(["closed"]);
    expect(backoffs(time)).toEqual([]); // no backoff after a healthy close
    expect(server.listCalls).toHaveLength(1);
  });

  it("relists on an in-band 410 and emits deletes for vanished objects and updates for changed ones", async () => {
    const server = new FakeServer();
    server.state = [obj("keep", "1"), obj("change", "2"), obj("vanish", "3")];
    const { inf, seen, restarts } = setup(server);
    stopLater = inf;
    inf.start();
    await inf.waitForSync();
    await settle();
    seen.length = 0;
    server.state = [obj("keep", "1"), obj("change", "7"), obj("new", "8")];
    server.listRv = "30";
    server.last.emit("ERROR", { kind: "Status", code: 410, reason: "Expired", message: "too old resource version: 10 (25)" });
    await settle();
    expect(server.watches[0]!.aborted).toBe(true);
    expect(restarts).toEqual(["expired"]);
    expect(seen).toEqual([["delete", "vanish", undefined], ["update", "change", "2"], ["add", "new", undefined]]);
    expect(server.last.query.resourceVersion).toBe("30");
    expect(inf.list().map((o) => o.metadata?.name).sort()).toEqual(["change", "keep", "new"]);
  });

  it("treats an HTTP 410 on the watch request like the in-band one", async () => {
    const server = new FakeServer();
    const { inf, restarts } = setup(server);
    stopLater = inf;
    inf.start();
    await inf.waitForSync();
    await settle();
    server.last.done(Object.assign(new Error("Gone"), { statusCode: 410 }));
    await settle();
    expect(restarts).toEqual(["expired"]);
    expect(server.listCalls).toHaveLength(2);
  });

  it("backs off 800 ms, doubling, on errors and never stops; a success resets nothing until 2 min pass", async () => {
    const server = new FakeServer();
    const { inf, time, restarts, lines } = setup(server, () => 0);
    stopLater = inf;
    inf.start();
    await inf.waitForSync();
    await settle();
    for (let i = 0; i < 8; i++) {
      server.last.done(new Error("ECONNRESET"));
      await settle();
      await time.advance(backoffs(time).at(-1)!);
    }
    expect(backoffs(time)).toEqual([800, 1600, 3200, 6400, 12800, 25600, 30000, 30000]);
    expect(restarts).toEqual(Array(8).fill("error"));
    expect(server.watches).toHaveLength(9);
    expect(lines.at(-1)).toMatch(/ECONNRESET; retrying in 30000 ms/);
    await time.advance(120_000);
    server.last.emit("ERROR", { kind: "Status", code: 500, reason: "InternalError", message: "boom" });
    await settle();
    expect(backoffs(time).at(-1)).toBe(800);
  });

  it("retries a failed first list with backoff and syncs when it succeeds", async () => {
    const server = new FakeServer();
    server.listError = new KubeApiError(403, "forbidden", "Forbidden", "GET /api/v1/pods");
    const { inf, time, restarts } = setup(server, () => 0);
    stopLater = inf;
    inf.start();
    await settle();
    expect(inf.hasSynced).toBe(false);
    expect(restarts).toEqual(["list_error"]);
    await time.advance(800);
    await inf.waitForSync();
    expect(server.listCalls).toHaveLength(2);
  });

  it("follows continue tokens, and starts over in one request when a token expires", async () => {
    const server = new FakeServer();
    server.pages = [
      { items: [obj("a", "1")], resourceVersion: "5", continueToken: "t1" },
      new KubeApiError(410, "continue expired", "Expired", "GET"),
      { items: [obj("a", "1"), obj("b", "2")], resourceVersion: "9" },
    ];
    const { inf } = setup(server);
    stopLater = inf;
    inf.start();
    await inf.waitForSync();
    await settle();
    expect(server.listCalls).toEqual([{ limit: 500 }, { limit: 500, continueToken: "t1" }, {}]);
    expect(inf.list()).toHaveLength(2);
    expect(server.last.query.resourceVersion).toBe("9");
  });

  it("paces a watch that closes at once with nothing in it like an error", async () => {
    const server = new FakeServer();
    const { inf, time, restarts } = setup(server, () => 0);
    stopLater = inf;
    inf.start();
    await inf.waitForSync();
    await settle();
    server.last.done(null);
    await settle();
    expect(restarts).toEqual(["error"]);
    expect(backoffs(time)).toEqual([800]);
  });

  it("reports a stalled stream (client-node's TimeoutError) as reason timeout", async () => {
    const server = new FakeServer();
    const { inf, restarts } = setup(server);
    stopLater = inf;
    inf.start();
    await inf.waitForSync();
    await settle();
    server.last.done(new DOMException("The operation was aborted due to timeout", "TimeoutError"));
    await settle();
    expect(restarts).toEqual(["timeout"]);
  });

  it("keeps going when a handler throws, and ignores events of a watch it already left", async () => {
    const server = new FakeServer();
    const { inf, seen, lines } = setup(server);
    stopLater = inf;
    inf.onChange(() => { throw new Error("handler bug"); });
    inf.start();
    await inf.waitForSync();
    await settle();
    const first = server.last;
    first.emit("ADDED", obj("a", "11"));
    expect(lines.some((l) => l.includes("handler bug"))).toBe(true);
    first.emit("ERROR", { code: 410, reason: "Expired" });
    await settle();
    first.emit("ADDED", obj("late", "12"));
    expect(inf.get("ns", "late")).toBeUndefined();
    expect(seen.filter(([, n]) => n === "late")).toEqual([]);
  });

  it("stop() ends the watch and a pending backoff; unsubscribe stops notifications", async () => {
    const server = new FakeServer();
    const { inf, time } = setup(server);
    inf.start();
    await inf.waitForSync();
    await settle();
    const calls: string[] = [];
    const off = inf.onChange((t) => calls.push(t));
    off();
    server.last.emit("ADDED", obj("a", "11"));
    expect(calls).toEqual([]);
    server.last.done(new Error("reset"));
    await settle();
    expect(backoffs(time)).toHaveLength(1);
    await inf.stop();
    expect(server.watches).toHaveLength(1);
  });

  it("waitForSync rejects when its signal aborts first", async () => {
    const server = new FakeServer();
    server.listError = new Error("down");
    const { inf } = setup(server);
    stopLater = inf;
    inf.start();
    const ac = new AbortController();
    const p = inf.waitForSync(ac.signal);
    ac.abort(new Error("gave up"));
    await expect(p).rejects.toThrow("gave up");
  });
});

describe("Informer transform", () => {
  const big = (name: string, rv: string) => ({ metadata: { name, namespace: "ns", resourceVersion: rv, managedFields: [{ manager: "kubelet" }] }, spec: { containers: [{ name: "app" }] } });
  const strip = (o: KubernetesObject): KubernetesObject => ({ metadata: { name: o.metadata?.name, namespace: o.metadata?.namespace, resourceVersion: o.metadata?.resourceVersion } });

  it("applies the transform to list items and to ADDED, MODIFIED and DELETED objects before caching and notifying", async () => {
    const server = new FakeServer();
    server.state = [big("a", "5") as KubernetesObject];
    const time = new FakeTime();
    const inf = new Informer<KubernetesObject>({
      kc: undefined as never, resource: "pods", path: "/api/v1/pods", transport: server,
      clock: time.clock, delay: time.delay, log: () => undefined, transform: strip,
    });
    stopLater = inf;
    const seen: Array<[ChangeType, KubernetesObject, KubernetesObject | undefined]> = [];
    inf.onChange((type, o, old) => seen.push([type, o, old]));
    inf.start();
    await inf.waitForSync();
    await settle();
    server.last.emit("ADDED", big("b", "11"));
    server.last.emit("MODIFIED", big("a", "12"));
    server.last.emit("DELETED", big("b", "13"));
    const slim = (name: string, rv: string) => ({ metadata: { name, namespace: "ns", resourceVersion: rv } });
    expect(inf.list()).toEqual([slim("a", "12")]);
    expect(seen).toEqual([
      ["add", slim("a", "5"), undefined],
      ["add", slim("b", "11"), undefined],
      ["update", slim("a", "12"), slim("a", "5")],
      ["delete", slim("b", "13"), undefined],
    ]);
  });
});

describe("Informer dead-watch detection", () => {
  it("restarts a watch that delivers nothing, not even a bookmark, for 150 s: at once, from the last resourceVersion, without a relist", async () => {
    const server = new FakeServer();
    const { inf, time, restarts, lines } = setup(server);
    stopLater = inf;
    inf.start();
    await inf.waitForSync();
    await settle();
    await time.advance(30_000);
    server.last.emit("BOOKMARK", { metadata: { resourceVersion: "20" } });
    await time.advance(WATCH_INACTIVITY_TIMEOUT_MS - 1); // silent since the bookmark
    expect(server.watches).toHaveLength(1);
    await time.advance(1);
    expect(server.watches[0]!.aborted).toBe(true);
    expect(server.watches).toHaveLength(2);
    expect(server.last.query.resourceVersion).toBe("20");
    expect(restarts).toEqual(["timeout"]);
    expect(lines.at(-1)).toMatch(/no event or bookmark for 150 s/);
    expect(lines.filter((l) => l.includes("retrying in"))).toEqual([]); // no backoff
    expect(server.listCalls).toHaveLength(1);
  });

  it("keeps a quiet watch that gets the API server's bookmark about every minute", async () => {
    const server = new FakeServer();
    const { inf, time, restarts } = setup(server);
    stopLater = inf;
    inf.start();
    await inf.waitForSync();
    await settle();
    for (let minute = 1; minute <= 10; minute++) {
      await time.advance(60_000);
      server.last.emit("BOOKMARK", { metadata: { resourceVersion: String(100 + minute) } });
    }
    expect(server.watches).toHaveLength(1);
    expect(restarts).toEqual([]);
  });

  it("also restarts a watch request that never answers", async () => {
    const server = new FakeServer();
    const { inf, time, restarts } = setup(server);
    stopLater = inf;
    inf.start();
    await inf.waitForSync();
    await settle();
    await time.advance(WATCH_INACTIVITY_TIMEOUT_MS);
    expect(restarts).toEqual(["timeout"]);
    expect(server.watches).toHaveLength(2);
  });
});
