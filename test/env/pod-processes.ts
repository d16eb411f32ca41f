// The processes behind a pod's containers, for tests and the soak that act on them directly:
// find them (the node agent reports containerID `process://<pid>`), freeze or thaw them, kill
// them. Free of vitest, so plain scripts (test/soak) can use it as the e2e tests do.
import type { V1Pod } from "@kubernetes/client-node";
import { execFileSync } from "node:child_process";
import { onKind } from "./e2e-cluster.js";
import { processStartTicks } from "./procs.js";

/** Local process ids of a pod's containers (the agent reports containerID `process://<pid>`). */
export function containerPids(pod: V1Pod): Map<string, number> {
  const out = new Map<string, number>();
  for (const c of [...(pod.status?.containerStatuses ?? []), ...(pod.status?.initContainerStatuses ?? [])]) {
    const m = /^process:\/\/(\d+)$/.exec(c.containerID ?? "");
    if (m) out.set(c.name, Number(m[1]));
  }
  return out;
}

/** Whether a process with this pid exists (a zombie does not count). */
export function processExists(pid: number): boolean {
  return processStartTicks(pid) !== undefined;
}

/**
 * Freezes one container of a pod (it keeps its sockets but runs nothing, like a wedged
 * process) or thaws it: SIGSTOP/SIGCONT of its process on the local cluster; on kind, the
 * container's cgroup freezer (`ctr task pause/resume` on its node, a kind node container).
 */
export function freezeContainer(pod: V1Pod, container: string, frozen: boolean): void {
  const podName = `${pod.metadata?.namespace}/${pod.metadata?.name}`;
  if (onKind()) {
    const id = /^containerd:\/\/([0-9a-f]+)$/.exec(pod.status?.containerStatuses?.find((c) => c.name === container)?.containerID ?? "")?.[1];
    if (!id || !pod.spec?.nodeName) throw new Error(`no container ${container} of ${podName} on a kind node`);
    execFileSync("docker", ["exec", pod.spec.nodeName, "ctr", "-n", "k8s.io", "task", frozen ? "pause" : "resume", id], { stdio: "pipe" });
    return;
  }
  process.kill(containerPid(pod, container), frozen ? "SIGSTOP" : "SIGCONT");
}

/**
 * Kills one container's process with SIGKILL, as an OOM kill or a crash would (local cluster
 * only): the node agent sees it exit and restarts it per the pod's restartPolicy. Returns the pid.
 */
export function killContainer(pod: V1Pod, container: string): number {
  if (onKind()) throw new Error("killContainer: local cluster only");
  const pid = containerPid(pod, container);
  process.kill(pid, "SIGKILL");
  return pid;
}

function containerPid(pod: V1Pod, container: string): number {
  const pid = containerPids(pod).get(container);
  if (!pid) throw new Error(`no process recorded for container ${container} of ${pod.metadata?.namespace}/${pod.metadata?.name}`);
  return pid;
}
