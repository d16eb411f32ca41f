// Command-line flags of the control-plane components: etcd on 127.0.0.1, the API server on
// apiserverHost (the pod network's gateway, or 127.0.0.1 when pods share the host's network).
import { apiserverHost, statePaths, type ClusterConfig } from "./config.js";

export function etcdArgs(config: ClusterConfig): string[] {
  const client = `http://127.0.0.1:${config.etcdClientPort}`;
  const peer = `http://127.0.0.1:${config.etcdPeerPort}`;
  return [
    "--name=connmeter", `--data-dir=${statePaths(config).etcdData}`,
    `--listen-client-urls=${client}`, `--advertise-client-urls=${client}`,
    `--listen-peer-urls=${peer}`, `--initial-advertise-peer-urls=${peer}`, `--initial-cluster=connmeter=${peer}`,
    // A throwaway test store: no fsync keeps it fast on shared disks.
    "--unsafe-no-fsync", "--log-level=warn", "--quota-backend-bytes=2147483648",
  ];
}

export function apiserverArgs(config: ClusterConfig, pki: (f: string) => string): string[] {
  return [
    `--etcd-servers=http://127.0.0.1:${config.etcdClientPort}`,
    `--bind-address=${apiserverHost(config)}`, `--secure-port=${config.apiserverPort}`, `--advertise-address=${apiserverHost(config)}`,
    `--tls-cert-file=${pki("apiserver.crt")}`, `--tls-private-key-file=${pki("apiserver.key")}`,
    `--client-ca-file=${pki("ca.crt")}`,
    `--kubelet-client-certificate=${pki("apiserver-kubelet-client.crt")}`,
    `--kubelet-client-key=${pki("apiserver-kubelet-client.key")}`,
    `--kubelet-certificate-authority=${pki("ca.crt")}`,
    "--kubelet-preferred-address-types=InternalIP",
    "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
    `--service-account-key-file=${pki("sa.pub")}`, `--service-account-signing-key-file=${pki("sa.key")}`,
    `--service-cluster-ip-range=${config.serviceCidr}`,
    "--authorization-mode=RBAC", "--allow-privileged=true",
    // There is no kube-proxy to route the 'kubernetes' Service (and validation refuses an
    // endpoint at 127.0.0.1): pods get the API server's address in KUBERNETES_SERVICE_HOST.
    "--endpoint-reconciler-type=none",
    // Nor a route to Service IPs from the API server: it reaches admission webhooks (the
    // operator's sidecar injector) and aggregated APIs through their endpoints instead.
    "--enable-aggregator-routing=true",
    "--profiling=false", "--event-ttl=1h", "-v=1",
  ];
}

export function controllerManagerArgs(config: ClusterConfig, pki: (f: string) => string, kubeconfig: string): string[] {
  return [
    `--kubeconfig=${kubeconfig}`, "--leader-elect=false", "--secure-port=0",
    "--use-service-account-credentials=true",
    `--service-account-private-key-file=${pki("sa.key")}`, `--root-ca-file=${pki("ca.crt")}`,
    `--cluster-signing-cert-file=${pki("ca.crt")}`, `--cluster-signing-key-file=${pki("ca.key")}`,
    `--service-cluster-ip-range=${config.serviceCidr}`,
    // Nothing here attaches volumes or talks to a cloud.
    "--controllers=*,-persistentvolume-attach-detach-controller,-cloud-node-lifecycle-controller,-node-route-controller,-service-lb-controller",
    "--concurrent-deployment-syncs=5", "--concurrent-replicaset-syncs=5",
    "-v=1",
  ];
}

export function schedulerArgs(kubeconfig: string): string[] {
  return ["--kubeconfig", kubeconfig, "--leader-elect=false", "--secure-port=0", "-v=1"];
}
