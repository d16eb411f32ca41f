// The node agent behaves like a kubelet where tests can see it: environment and `$(VAR)`
// expansion, restart policies and back-off, probes, grace periods, init containers, service
// account identity, logs through the API server. Containers are small Node scripts
// (image connmeter/node: `node` with the container's args).
import type { V1Pod } from "@kubernetes/client-node";
import { execFileSync } from "node:child_process";
import { describe, expect, it } from "vitest";
import {
  containerPids, createNamespace, describeNamespace, isPodReady, kube, processExists, waitFor, waitForPodGone,
} from "../env/e2e-helpers.js";
import { onLocalCluster } from "../env/e2e-cluster.js";

type PodSpec = NonNullable<V1Pod["spec"]>;

async function runPod(namespace: string, name: string, spec: Partial<PodSpec>, labels: Record<string, string> = {}): Promise<void> {
  await kube().core.createNamespacedPod({
    namespace,
    body: { metadata: { name, labels }, spec: { restartPolicy: "Never", terminationGracePeriodSeconds: 5, containers: [], ...spec } },
  });
}

async function getPod(namespace: string, name: string): Promise<V1Pod> {
  return kube().core.readNamespacedPod({ name, namespace });
}

function waitForPod(namespace: string, name: string, what: string, ok: (p: V1Pod) => boolean, timeoutMs = 30_000): Promise<V1Pod> {
  return waitFor(`pod ${name} ${what}`, async () => {
    const p = await getPod(namespace, name);
    return ok(p) ? p : undefined;
  }, timeoutMs, { explain: () => describeNamespace(namespace) });
}

const phase = (want: string) => (p: V1Pod) => p.status?.phase === want;

function logs(namespace: string, name: string, container = "main", previous = false): Promise<string> {
  return kube().core.readNamespacedPodLog({ name, namespace, container, previous });
}

/** A connmeter/node container running `script` (`node -e script`). */
function nodeContainer(script: string, extra: Record<string, unknown> = {}) {
  return { name: "main", image: "connmeter/node:dev", args: ["-e", script], ...extra };
}

/** The network namespaces on this host (`ip netns list`). */
const podNamespaces = () => execFileSync("ip", ["netns", "list"], { encoding: "utf8" }).split("\n").map((l) => l.split(" ")[0]);

// The local process cluster's node agent itself: nothing to test on kind (a real kubelet).
describe.skipIf(!onLocalCluster())("the node agent", () => {
  it("expands $(VAR) references, the downward API and ConfigMap keys like the kubelet", async () => {
    const ns = await createNamespace("env");
    await kube().core.createNamespacedConfigMap({ namespace: ns, body: { metadata: { name: "settings" }, data: { color: "blue" } } });
    await runPod(ns, "env", {
      containers: [nodeContainer("console.log(JSON.stringify({ env: process.env, argv: process.argv.slice(1) }))", {
        args: ["-e", "console.log(JSON.stringify({ env: process.env, argv: process.argv.slice(1) }))", "$(POD_IP)", "$$(POD_IP)", "$(NOPE)"],
        env: [
          { name: "POD_NAME", valueFrom: { fieldRef: { fieldPath: "metadata.name" } } },
          { name: "POD_NAMESPACE", valueFrom: { fieldRef: { fieldPath: "metadata.namespace" } } },
          { name: "POD_IP", valueFrom: { fieldRef: { fieldPath: "status.podIP" } } },
          { name: "NODE", valueFrom: { fieldRef: { fieldPath: "spec.nodeName" } } },
          { name: "TIER", valueFrom: { fieldRef: { fieldPath: "metadata.labels['tier']" } } },
          { name: "COLOR", valueFrom: { configMapKeyRef: { name: "settings", key: "color" } } },
          { name: "LISTEN", value: "$(POD_IP):4000" },
          { name: "GREETING", value: "hi $(POD_NAME) $$(POD_NAME) $(LATER) $(COLOR)" },
          { name: "LATER", value: "late" },
        ],
      })],
    }, { tier: "web" });
    const pod = await waitForPod(ns, "env", "to succeed", phase("Succeeded"));
    const out = JSON.parse(await logs(ns, "env")) as { env: Record<string, string>; argv: string[] };
    const podIP = pod.status?.podIP ?? "";
    expect(podIP).not.toBe("");
    expect(out.env).toMatchObject({
      POD_NAME: "env", POD_NAMESPACE: ns, POD_IP: podIP, NODE: pod.spec?.nodeName, TIER: "web", COLOR: "blue",
      LISTEN: `${podIP}:4000`,
      // $$ escapes; a variable defined later is not visible yet and stays as written.
      GREETING: "hi env $(POD_NAME) $(LATER) blue",
      HOSTNAME: "env",
    });
    expect(out.argv).toEqual([podIP, "$(POD_IP)", "$(NOPE)"]);
    // The agent's own environment (cluster-up sets CONNMETER_CLUSTER_DIR for it) does not leak.
    expect(out.env.CONNMETER_CLUSTER_DIR).toBeUndefined();
  });

  it("gives a container its ServiceAccount's identity through KUBECONFIG", async () => {
    const ns = await createNamespace("sa");
    const script = `
      const cfg = JSON.parse(require("fs").readFileSync(process.env.KUBECONFIG, "utf8"));
      const https = require("https");
      const server = cfg.clusters[0].cluster.server;
      const req = https.request(server + "/api/v1/namespaces/" + process.env.NS + "/secrets", {
        ca: require("fs").readFileSync(cfg.clusters[0].cluster["certificate-authority"]),
        headers: { Authorization: "Bearer " + cfg.users[0].user.token },
      }, (res) => { let b = ""; res.on("data", (c) => b += c); res.on("end", () => console.log(res.statusCode, JSON.parse(b).message)); });
      req.end();`;
    await runPod(ns, "who", {
      containers: [nodeContainer(script, { env: [{ name: "NS", valueFrom: { fieldRef: { fieldPath: "metadata.namespace" } } }] })],
    });
    await waitForPod(ns, "who", "to succeed", phase("Succeeded"));
    // Authenticated as the pod's ServiceAccount, which RBAC does not allow to list secrets.
    expect(await logs(ns, "who")).toContain(`403 secrets is forbidden: User "system:serviceaccount:${ns}:default" cannot list resource "secrets"`);
  });

  it("restarts a crashing container with back-off (restartPolicy Always)", async () => {
    const ns = await createNamespace("crash");
    await runPod(ns, "crash", { restartPolicy: "Always", containers: [nodeContainer("console.log('boom'); process.exit(3)")] });
    const pod = await waitForPod(ns, "crash", "to restart twice", (p) => (p.status?.containerStatuses?.[0]?.restartCount ?? 0) >= 2, 30_000);
    const cs = pod.status?.containerStatuses?.[0];
    expect(cs?.lastState?.terminated).toMatchObject({ exitCode: 3, reason: "Error" });
    expect(pod.status?.phase).toBe("Running");
    // The previous run is complete: its log is there whatever the current run is doing.
    expect(await logs(ns, "crash", "main", true)).toBe("boom\n");
    const backoff = await waitForPod(ns, "crash", "to be in CrashLoopBackOff", (p) => p.status?.containerStatuses?.[0]?.state?.waiting?.reason === "CrashLoopBackOff");
    expect(backoff.status?.conditions?.find((c) => c.type === "Ready")?.status).toBe("False");
  });

  it("marks a pod Failed when a container fails under restartPolicy Never", async () => {
    const ns = await createNamespace("never");
    await runPod(ns, "once", { containers: [nodeContainer("process.exit(2)")] });
    const pod = await waitForPod(ns, "once", "to fail", phase("Failed"));
    expect(pod.status?.containerStatuses?.[0]).toMatchObject({ restartCount: 0, state: { terminated: { exitCode: 2, reason: "Error" } } });
  });

  it("runs init containers to completion before the containers", async () => {
    const ns = await createNamespace("init");
    await runPod(ns, "init", {
      initContainers: [{ name: "setup", image: "connmeter/node:dev", args: ["-e", "setTimeout(() => console.log('setup done'), 500)"] }],
      containers: [nodeContainer("console.log('main ran')")],
    });
    const pod = await waitForPod(ns, "init", "to succeed", phase("Succeeded"));
    const init = pod.status?.initContainerStatuses?.[0]?.state?.terminated;
    const main = pod.status?.containerStatuses?.[0]?.state?.terminated;
    expect(init?.exitCode).toBe(0);
    expect(Date.parse(String(main?.startedAt))).toBeGreaterThanOrEqual(Date.parse(String(init?.finishedAt)));
    expect(await logs(ns, "init", "setup")).toContain("setup done");
  });

  it("follows the readiness probe both ways", async () => {
    const ns = await createNamespace("ready");
    const server = `
      let ready = true;
      require("http").createServer((req, res) => {
        if (req.url === "/toggle") { ready = !ready; return res.end(String(ready)); }
        res.statusCode = ready ? 200 : 503; res.end();
      }).listen(8080, process.env.POD_IP);`;
    await runPod(ns, "probe", {
      restartPolicy: "Always",
      containers: [nodeContainer(server, {
        env: [{ name: "POD_IP", valueFrom: { fieldRef: { fieldPath: "status.podIP" } } }],
        ports: [{ name: "http", containerPort: 8080 }],
        readinessProbe: { httpGet: { path: "/readyz", port: "http" }, periodSeconds: 1, failureThreshold: 1 },
      })],
    });
    const pod = await waitForPod(ns, "probe", "to be Ready", isPodReady);
    const toggle = () => fetch(`http://${pod.status?.podIP}:8080/toggle`).then((r) => r.text());
    expect(await toggle()).toBe("false");
    await waitForPod(ns, "probe", "to turn not Ready", (p) => !isPodReady(p) && p.status?.phase === "Running", 10_000);
    expect(await toggle()).toBe("true");
    const back = await waitForPod(ns, "probe", "to be Ready again", isPodReady, 10_000);
    expect(back.status?.containerStatuses?.[0]?.restartCount).toBe(0);
  });

  it("restarts a container whose liveness probe fails", async () => {
    const ns = await createNamespace("live");
    await runPod(ns, "live", {
      restartPolicy: "Always",
      terminationGracePeriodSeconds: 1,
      containers: [nodeContainer("setInterval(() => {}, 1000)", {
        livenessProbe: { tcpSocket: { port: 9 }, periodSeconds: 1, failureThreshold: 2 },
      })],
    });
    const pod = await waitForPod(ns, "live", "to be restarted by its liveness probe", (p) => (p.status?.containerStatuses?.[0]?.restartCount ?? 0) >= 1, 30_000);
    expect(pod.status?.containerStatuses?.[0]?.lastState?.terminated).toBeTruthy();
    const events = await kube().core.listNamespacedEvent({ namespace: ns });
    expect(events.items.some((e) => e.reason === "Unhealthy" && e.message?.includes("liveness probe failed"))).toBe(true);
  });

  it("kills a container that ignores SIGTERM once terminationGracePeriodSeconds is over", async () => {
    const ns = await createNamespace("grace");
    await runPod(ns, "stubborn", {
      restartPolicy: "Always",
      terminationGracePeriodSeconds: 2,
      containers: [nodeContainer("process.on('SIGTERM', () => console.log('ignoring SIGTERM')); setInterval(() => {}, 1000); console.log('up')")],
    });
    const pod = await waitForPod(ns, "stubborn", "to run", (p) => p.status?.containerStatuses?.[0]?.state?.running != null);
    await waitFor("the script to install its SIGTERM handler", async () => (await logs(ns, "stubborn")).includes("up"), 10_000);
    const [pid] = [...containerPids(pod).values()];
    const t0 = Date.now();
    await kube().core.deleteNamespacedPod({ name: "stubborn", namespace: ns });
    await waitForPodGone(ns, "stubborn", 20_000);
    const took = Date.now() - t0;
    expect(took).toBeGreaterThanOrEqual(2_000);
    expect(took).toBeLessThan(10_000);
    expect(processExists(pid ?? 0)).toBe(false);
  });

  it("holds a container with an unknown image in ErrImagePull, saying which images exist", async () => {
    const ns = await createNamespace("image");
    await runPod(ns, "nginx", { containers: [{ name: "main", image: "nginx:1.27" }] });
    const pod = await waitForPod(ns, "nginx", "to report the image", (p) => p.status?.containerStatuses?.[0]?.state?.waiting?.reason === "ErrImagePull");
    const waiting = pod.status?.containerStatuses?.[0]?.state?.waiting;
    expect(waiting?.message).toContain('image "nginx:1.27" is not known');
    expect(waiting?.message).toContain("connmeter/sidecar");
    expect(pod.status?.phase).toBe("Pending");
  });

  it("gives each pod its own network namespace: two pods listen on 0.0.0.0 on the same port", async () => {
    const ns = await createNamespace("addr");
    const server = `require("http").createServer((q, s) => s.end(process.env.POD_NAME)).listen(7000, "0.0.0.0")`;
    const env = [{ name: "POD_NAME", valueFrom: { fieldRef: { fieldPath: "metadata.name" } } }];
    for (const n of ["a", "b"]) {
      await runPod(ns, n, { restartPolicy: "Always", containers: [nodeContainer(server, { env, readinessProbe: { tcpSocket: { port: 7000 }, periodSeconds: 1 } })] });
    }
    const [a, b] = await Promise.all(["a", "b"].map((n) => waitForPod(ns, n, "to be Ready", isPodReady)));
    expect(a?.status?.podIP).not.toBe(b?.status?.podIP);
    expect(await (await fetch(`http://${a?.status?.podIP}:7000/`)).text()).toBe("a");
    expect(await (await fetch(`http://${b?.status?.podIP}:7000/`)).text()).toBe("b");
    // Pod to pod, from inside a's namespace, and nothing of a pod on the host's own ports.
    const probe = `fetch("http://${b?.status?.podIP}:7000/").then((r) => r.text()).then((t) => console.log("b says " + t))`;
    await runPod(ns, "client", { containers: [nodeContainer(probe)] });
    await waitForPod(ns, "client", "to succeed", phase("Succeeded"));
    expect(await logs(ns, "client", "main")).toContain("b says b");
    await expect(fetch("http://127.0.0.1:7000/")).rejects.toThrow();
  });

  it("runs a native sidecar (init container with restartPolicy Always) beside the containers", async () => {
    const ns = await createNamespace("native");
    // The containers of a pod share its loopback, as in a real pod.
    const sidecar = `require("http").createServer((q, s) => s.end("from sidecar")).listen(7100, "127.0.0.1")`;
    const main = `
      const get = () => fetch("http://127.0.0.1:7100/").then((r) => r.text())
        .then((t) => { console.log("main got: " + t); setInterval(() => {}, 1000); })
        .catch(() => setTimeout(get, 100));
      get();`;
    await runPod(ns, "native", {
      restartPolicy: "Always",
      initContainers: [{ name: "proxy", image: "connmeter/node:dev", restartPolicy: "Always", args: ["-e", sidecar],
        readinessProbe: { exec: { command: ["node", "-e", "fetch('http://127.0.0.1:7100/').then(() => process.exit(0), () => process.exit(1))"] }, periodSeconds: 1 } }],
      containers: [nodeContainer(main)],
    });
    const pod = await waitForPod(ns, "native", "to be Ready", isPodReady);
    expect(pod.status?.initContainerStatuses?.[0]).toMatchObject({ name: "proxy", ready: true, state: { running: {} } });
    await waitFor("main to reach the sidecar", async () => (await logs(ns, "native")).includes("main got: from sidecar"), 10_000);
    const pids = [...containerPids(pod).values()];
    expect(pids).toHaveLength(2);
    await kube().core.deleteNamespacedPod({ name: "native", namespace: ns });
    await waitForPodGone(ns, "native", 20_000);
    for (const pid of pids) expect(processExists(pid)).toBe(false);
    // Nothing left behind: the pod's network namespace (and its veth pair) is gone.
    expect(podNamespaces()).not.toContain(`connmeter-${pod.metadata?.uid}`);
  });
});
