// The demo-app entry point: configuration, the one log line, and a clean exit on SIGTERM,
// in-process and as a real compiled process.
import { EventEmitter } from "node:events";
import { execFile, spawn } from "node:child_process";
import { rmSync } from "node:fs";
import { resolve } from "node:path";
import { promisify } from "node:util";
import { describe, expect, it } from "vitest";
import { readCliConfig, runCli } from "../../support/phoenix-server/cli.js";

const ROOT = resolve(import.meta.dirname, "../../..");
const OUT_DIR = resolve(ROOT, ".local/phoenix-server-cli-test");

async function get(url: string): Promise<{ status: number; body: string }> {
  const res = await fetch(url);
  return { status: res.status, body: await res.text() };
}

describe("phoenix-server CLI configuration", () => {
  it("reads --listen host:port, --listen=host:port, LISTEN, and PORT with HOST", () => {
    expect(readCliConfig(["--listen", "0.0.0.0:4100"], {}).listen).toEqual({ host: "0.0.0.0", port: 4100 });
    expect(readCliConfig(["--listen=[::1]:4101"], {}).listen).toEqual({ host: "::1", port: 4101 });
    expect(readCliConfig([], { LISTEN: "127.0.0.2:4102" }).listen).toEqual({ host: "127.0.0.2", port: 4102 });
    expect(readCliConfig([], { PORT: "4103" }).listen).toEqual({ host: "127.0.0.1", port: 4103 });
    expect(readCliConfig([], { PORT: "4104", HOST: "0.0.0.0" }).listen).toEqual({ host: "0.0.0.0", port: 4104 });
    expect(readCliConfig(["--listen", ":4105"], { PORT: "1" }).listen).toEqual({ host: "127.0.0.1", port: 4105 });
    expect(readCliConfig([], {}).listen).toEqual({ host: "127.0.0.1", port: 4000 });
  });

  it("reads the long-poll timings and refuses bad values", () => {
    expect(readCliConfig(["--longpoll-window-ms", "500"], { LONGPOLL_IDLE_TIMEOUT_MS: "900" })).toMatchObject({
      longpollWindowMs: 500,
      longpollIdleTimeoutMs: 900,
    });
    expect(() => readCliConfig(["--listen", "nope"], {})).toThrow(/invalid listen address/);
    expect(() => readCliConfig(["--listen", "h:99999"], {})).toThrow(/invalid listen address/);
    expect(() => readCliConfig([], { LONGPOLL_WINDOW_MS: "-1" })).toThrow(/positive integer/);
  });

  it("logs one line when listening and exits 0 after closing on SIGTERM", async () => {
    const signals = new EventEmitter();
    const lines: string[] = [];
    const exits: number[] = [];
    const server = await runCli({
      argv: ["--listen", "127.0.0.1:0"],
      env: {},
      once: (signal, listener) => signals.once(signal, listener),
      log: (line) => lines.push(line),
      exit: (code) => exits.push(code),
    });
    expect(lines).toEqual([expect.stringContaining(`listening on ${server.url}`)]);
    expect((await get(`${server.url}/healthz`)).status).toBe(200);
    signals.emit("SIGTERM");
    await expect.poll(() => exits).toEqual([0]);
    await expect(get(`${server.url}/healthz`)).rejects.toThrow();
  });
});

describe("phoenix-server-main as a process", () => {
  it("runs from compiled JavaScript, serves /count and exits 0 on SIGTERM", async () => {
    rmSync(OUT_DIR, { recursive: true, force: true });
    const tsc = resolve(ROOT, "node_modules/typescript/bin/tsc");
    await promisify(execFile)(process.execPath, [
      tsc,
      "--outDir", OUT_DIR, "--rootDir", ROOT,
      "--ignoreConfig", "--module", "NodeNext", "--moduleResolution", "NodeNext", "--target", "ES2024",
      "--types", "node", "--skipLibCheck", "--strict",
      resolve(ROOT, "test/support/phoenix-server-main.ts"),
    ], { cwd: ROOT });

    const child = spawn(process.execPath, [resolve(OUT_DIR, "test/support/phoenix-server-main.js"), "--listen", "127.0.0.1:0"], {
      cwd: ROOT,
      stdio: ["ignore", "pipe", "pipe"],
    });
    const exited = new Promise<number | null>((done) => child.once("exit", (code) => done(code)));
    let stdout = "";
    child.stdout.on("data", (chunk: Buffer) => (stdout += chunk.toString()));
    await expect.poll(() => stdout, { timeout: 10_000 }).toMatch(/listening on http:\/\/127\.0\.0\.1:\d+/);
    const url = /listening on (http:\/\/127\.0\.0\.1:\d+)/.exec(stdout)?.[1] ?? "";
    expect(stdout.trim().split("\n")).toHaveLength(1);

    const count = await get(`${url}/count`);
    expect(count.status).toBe(200);
    expect(JSON.parse(count.body)).toMatchObject({ total: 0, topics: {} });

    child.kill("SIGTERM");
    expect(await exited).toBe(0);
    await expect(get(`${url}/healthz`)).rejects.toThrow();
  });
});
