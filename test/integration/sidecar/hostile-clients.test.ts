import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import WebSocket from "ws";
import { startPhoenixServer, type PhoenixServer } from "../../support/phoenix-server/index.js";
import { startSidecar, waitFor, type SidecarHandle } from "../../support/sidecar-harness.js";
import { wsFrame } from "../../unit/sidecar/ws/ws-internals.js";

/** A raw vsn 2 client that writes hand-made frames and records every reply it gets. */
async function rawClient(baseUrl: string, query = "vsn=2.0.0"): Promise<{ ws: WebSocket; replies: unknown[][]; writeAtOnce(texts: string[]): void }> {
  const ws = new WebSocket(`${baseUrl.replace(/^http/, "ws")}/socket/websocket?${query}`, { perMessageDeflate: false });
  const replies: unknown[][] = [];
  ws.on("message", (data: Buffer) => replies.push(JSON.parse(data.toString()) as unknown[]));
  await new Promise((resolve, reject) => ws.once("open", resolve).once("error", reject));
  const socket = (ws as unknown as { _socket: { write(b: Buffer): boolean } })._socket;
  return {
    ws,
    replies,
    // Every message in one TCP write, so the sidecar sees them all before any reply.
    writeAtOnce: (texts) => void socket.write(Buffer.concat(texts.map((t) => wsFrame(Buffer.from(t), { fin: true, opcode: 1, mask: true, rsv1: false })))),
  };
}

const joins = (n: number, topic: (i: number) => string, event = "phx_join") =>
  Array.from({ length: n }, (_, i) => JSON.stringify([String(i + 1), String(i + 1), topic(i), event, {}]));
/** Reply statuses in ref order (the sidecar answers a refused join at once, ahead of the app's replies). */
const statuses = (replies: unknown[][]) =>
  replies
    .filter((r) => r[3] === "phx_reply")
    .sort((a, b) => Number(a[1]) - Number(b[1]))
    .map((r) => (r[4] as { status: string }).status);

describe("hostile and unusual clients against the Phoenix test app", () => {
  let app: PhoenixServer;
  let sidecar: SidecarHandle | undefined;
  const open: WebSocket[] = [];

  beforeAll(async () => {
    app = await startPhoenixServer();
  });
  afterEach(async () => {
    open.splice(0).forEach((ws) => ws.terminate());
    await sidecar?.close();
    sidecar = undefined;
    await waitFor(() => app.count(), (n) => n === 0, "the app to drop test channels");
  });
  afterAll(async () => {
    await app?.close();
  });

  it("counts 300 joins written at once exactly as the app does", async () => {
    sidecar = await startSidecar({ upstream: app.url });
    const c = await rawClient(sidecar.url);
    open.push(c.ws);
    c.writeAtOnce(joins(300, (i) => `room:${i}`));
    await waitFor(() => c.replies.length, (n) => n === 300, "300 join replies");
    expect(app.count()).toBe(300);
    expect((await sidecar.stats()).channels).toBe(300);
  });

  it("counts 3,000 joins written at once exactly, pausing the client while too many wait for a reply", async () => {
    sidecar = await startSidecar({ upstream: app.url });
    const c = await rawClient(sidecar.url);
    open.push(c.ws);
    c.writeAtOnce(joins(3000, (i) => `room:${i}`));
    await waitFor(() => c.replies.length, (n) => n === 3000, "3,000 join replies");
    expect(app.count()).toBe(3000);
    expect((await sidecar.stats()).channels).toBe(3000);
    expect(sidecar.sidecar.ledger.joinPauses).toBeGreaterThan(0);
    const metrics = await (await fetch(`${sidecar.adminUrl}/metrics`)).text();
    expect(metrics).toMatch(/^connmeter_join_pauses_total [1-9]/m);
    expect(metrics).toMatch(/^connmeter_messages_undecided_total\{reason="field_too_long"\} 0$/m);
  });

  it("lets exactly 500 of a 2,000-join burst through a group budget of 500, refusing the rest itself", async () => {
    sidecar = await startSidecar({ upstream: app.url, topics: [{ match: "room:*", maxChannels: 500 }] });
    const c = await rawClient(sidecar.url);
    open.push(c.ws);
    c.writeAtOnce(joins(2000, (i) => `room:${i}`));
    await waitFor(() => c.replies.length, (n) => n === 2000, "2,000 join replies");
    const got = statuses(c.replies);
    expect(got.filter((s) => s === "ok")).toHaveLength(500);
    expect(c.replies.filter((r) => JSON.stringify(r[4]) === '{"response":{"reason":"capacity"},"status":"error"}')).toHaveLength(1500);
    expect(app.count()).toBe(500);
    expect((await sidecar.stats()).channels).toBe(500);
  });

  it('counts a join spelled "phx\\u005fjoin" and refuses it over budget, as the app would join it', async () => {
    sidecar = await startSidecar({ upstream: app.url, topics: [{ match: "room:*", maxChannels: 1 }] });
    const c = await rawClient(sidecar.url);
    open.push(c.ws);
    c.writeAtOnce(['["1","1","room:1","phx\\u005fjoin",{}]', '["2","2","room:2","phx\\u005fjoin",{}]', '["3","3","patterns:x","phx\\u005fjoin",{}]']);
    await waitFor(() => c.replies.length, (n) => n === 3, "3 join replies");
    expect(statuses(c.replies)).toEqual(["ok", "error", "ok"]);
    expect(app.countByTopic()).toEqual({ "room:1": 1, "patterns:x": 1 });
    expect(await sidecar.stats()).toMatchObject({ channels: 2, topics: { "room:*": 1, "patterns:x": 1 } });
  });

  it("counts joins whatever their JSON spelling: escaped topics, whitespace, numeric and null refs, extra elements", async () => {
    sidecar = await startSidecar({ upstream: app.url });
    const c = await rawClient(sidecar.url);
    open.push(c.ws);
    c.writeAtOnce([
      ' [ "1" , "1" , "room\\u003a1" , "phx_join" , { } ] ',
      '[2,2,"room:2","phx_join",{}]',
      '[null,null,"room:3","phx_join",{}]',
      '["4","4","room:4","phx_join",{"topic":"room:decoy","event":"phx_join"},"extra"]',
      '[{"a":1},"5","room:5","phx_join",{}]',
    ]);
    await waitFor(() => c.replies.length, (n) => n === 5, "5 join replies");
    expect(app.count()).toBe(5);
    expect((await sidecar.stats()).channels).toBe(5);
  });

  it("reads a percent-encoded vsn as Phoenix does", async () => {
    sidecar = await startSidecar({ upstream: app.url });
    const c = await rawClient(sidecar.url, "v%73n=%32.0.0");
    open.push(c.ws);
    c.writeAtOnce(joins(2, (i) => `room:${i}`));
    await waitFor(() => c.replies.length, (n) => n === 2, "2 join replies");
    expect((await sidecar.stats()).channels).toBe(2);
  });

  it("reads a repeated vsn as Plug does, the last one winning, like the app", async () => {
    sidecar = await startSidecar({ upstream: app.url });
    const c = await rawClient(sidecar.url, "vsn=1.0.0&vsn=2.0.0");
    open.push(c.ws);
    c.writeAtOnce(joins(3, (i) => `room:${i}`));
    await waitFor(() => c.replies.length, (n) => n === 3, "3 join replies");
    expect(c.replies.every((r) => Array.isArray(r) && r[3] === "phx_reply")).toBe(true); // the app spoke vsn 2
    expect(app.count()).toBe(3);
    expect((await sidecar.stats()).channels).toBe(3);
  });
});
