import { describe, expect, it } from "vitest";
import { withDefaults, type Condition } from "../../../../operator/api/types.js";
import { assessInjection, emitInjectionEvents } from "../../../../operator/controller/assess-injection.js";
import { assessReady } from "../../../../operator/controller/assess.js";
import { podsWithoutSidecar, scrapeTargets } from "../../../../operator/controller/target-pods.js";
import type { PodLike } from "../../../../operator/controller/cluster.js";
import { PodSamples } from "../../../../operator/controller/pod-samples.js";

const spec = withDefaults({ targetRef: { apiVersion: "apps/v1", kind: "Deployment", name: "chat" } });
const target = { metadata: { name: "chat", namespace: "chat" }, spec: { selector: { matchLabels: { app: "chat" } } } };

function pod(name: string, hasSidecar: boolean | undefined, extra: Partial<PodLike["metadata"]> = {}): PodLike {
  return { metadata: { name, namespace: "chat", labels: { app: "chat" }, ...extra }, spec: { nodeName: "n1", ...(hasSidecar === undefined ? {} : { hasSidecar }) }, status: { phase: "Running", podIP: "198.18.1.2" } };
}
const lister = (pods: PodLike[]) => ({ get: () => undefined, list: () => pods });

describe("pods without the sidecar", () => {
  const pods = lister([pod("chat-b", false), pod("chat-a", true), pod("chat-c", false, { deletionTimestamp: "2026-12-02T00:00:00Z" }), pod("other", false, { labels: { app: "web" } }), pod("chat-d", undefined)]);
  it("are listed (not the ones being deleted, not other workloads', not one whose sidecar under other names answered), and still scraped", () => {
    expect(podsWithoutSidecar(pods, "chat", target, () => false)).toEqual(["chat-b"]);
    expect(podsWithoutSidecar(pods, "chat", target, (name) => name === "chat-b")).toEqual([]);
    expect(scrapeTargets(pods, "chat", target).map((t) => t.name)).toEqual(["chat-a", "chat-b", "chat-c", "chat-d"]);
  });

  it("count as never answered only once scraped and refused, not before the first scrape, not after one answer", async () => {
    const samples = new PodSamples();
    const t = { name: "chat-b", ip: "198.18.1.2", node: "n1", ready: true, terminating: false };
    expect(samples.neverAnswered("chat-b")).toBe(false);
    await samples.scrape([t], async () => { throw new Error("ECONNREFUSED"); }, 1000);
    expect(samples.neverAnswered("chat-b")).toBe(true);
    await samples.scrape([t], async () => ({ connections: 0, channels: 0, longpoll: 0, topics: {} }) as never, 2000);
    await samples.scrape([t], async () => { throw new Error("ECONNREFUSED"); }, 3000);
    expect(samples.neverAnswered("chat-b")).toBe(false);
  });

  it("make Injected False, reason PodsWithoutSidecar, with the restart to run; and Ready False with that reason", () => {
    const c = assessInjection(spec, "chat", true, ["chat-b", "chat-e"]);
    expect(c).toMatchObject({ type: "Injected", status: "False", reason: "PodsWithoutSidecar" });
    expect(c.message).toContain("2 pods of Deployment chat run without the connmeter sidecar and are not metered: chat-b, chat-e");
    expect(c.message).toContain("kubectl rollout restart deployment/chat -n chat");
    const metered = { type: "Metered", status: "False" as const, reason: "NoPods", message: "no pods" };
    expect(assessReady([metered, c])).toMatchObject({ status: "False", reason: "PodsWithoutSidecar" });
    expect(assessInjection(spec, "chat", true, [])).toMatchObject({ status: "True", reason: "AllPodsInjected" });
    expect(assessInjection(spec, "chat", false, [])).toMatchObject({ status: "Unknown", reason: "TargetNotFound" });
  });

  it("raise a Warning Event once, when the condition turns to PodsWithoutSidecar", () => {
    const recorded: string[] = [];
    const events = { record: (_r: unknown, type: string, reason: string) => void recorded.push(`${type} ${reason}`) };
    const ref = { apiVersion: "connmeter.io/v1alpha1", kind: "ConnectionPolicy", namespace: "chat", name: "p" };
    const cond = (status: "True" | "False", reason: string): Condition[] => [{ type: "Injected", status, reason, message: "m", observedGeneration: 1, lastTransitionTime: "t" }];
    emitInjectionEvents(events, ref, cond("True", "AllPodsInjected"), cond("False", "PodsWithoutSidecar"));
    emitInjectionEvents(events, ref, cond("False", "PodsWithoutSidecar"), cond("False", "PodsWithoutSidecar"));
    expect(recorded).toEqual(["Warning PodsWithoutSidecar"]);
  });
});
