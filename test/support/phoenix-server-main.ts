// The demo app process (`connmeter/demo-app`): a Phoenix protocol test server.
//   node dist/test/support/phoenix-server-main.js --listen 127.0.0.1:4000
// Env: LISTEN=host:port, or PORT (+ HOST); LONGPOLL_WINDOW_MS, LONGPOLL_IDLE_TIMEOUT_MS.
// Logs one line when listening; exits 0 on SIGTERM or SIGINT once closed.
import { runCli } from "./phoenix-server/cli.js";

runCli({
  argv: process.argv.slice(2),
  env: process.env,
  once: (signal, listener) => process.once(signal, listener),
  log: (line) => console.log(line),
  exit: (code) => process.exit(code),
}).catch((err: unknown) => {
  console.error(`phoenix-server: ${err instanceof Error ? err.message : String(err)}`);
  process.exit(1);
});
