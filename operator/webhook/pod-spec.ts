// The parts of a core/v1 Pod the injector reads, as plain structural types (the webhook gets
// the pod as JSON in an AdmissionReview; nothing here imports client-node). Only what the
// patch builder looks at is typed; every other field passes through untouched because the
// injector writes JSON patches and never rebuilds the pod.

export interface ContainerPort {
  name?: string;
  containerPort: number;
  protocol?: string;
}

/** httpGet / tcpSocket / grpc handler of a probe or lifecycle hook. */
export interface PortHandler {
  port?: number | string;
  [key: string]: unknown;
}

export interface Probe {
  httpGet?: PortHandler;
  tcpSocket?: PortHandler;
  grpc?: { port: number; service?: string };
  [key: string]: unknown;
}

export interface Container {
  name: string;
  image?: string;
  ports?: ContainerPort[];
  livenessProbe?: Probe;
  readinessProbe?: Probe;
  startupProbe?: Probe;
  lifecycle?: { postStart?: Probe; preStop?: Probe };
  restartPolicy?: string;
  [key: string]: unknown;
}

export interface PodSpec {
  containers: Container[];
  initContainers?: Container[];
  [key: string]: unknown;
}

export interface Pod {
  apiVersion?: string;
  kind?: string;
  metadata?: {
    name?: string;
    generateName?: string;
    namespace?: string;
    labels?: Record<string, string>;
    annotations?: Record<string, string>;
    ownerReferences?: { kind?: string; name?: string }[];
  };
  spec?: PodSpec;
}

/** One RFC 6902 operation, as the API server applies them to an admitted object. */
export type JsonPatchOp =
  | { op: "add" | "replace" | "test"; path: string; value: unknown }
  | { op: "remove"; path: string };

/** A JSON Pointer token (RFC 6901): `~` and `/` escaped, so `connmeter.io/injected` fits a path. */
export function pointerToken(key: string): string {
  return key.replace(/~/g, "~0").replace(/\//g, "~1");
}
