// Preloaded into the idle-phase sidecar with `node --expose-gc --import …/gc-on-signal.js`:
// on SIGUSR2 it runs a full garbage collection and says so on stdout with the V8 heap then in
// use, so the benchmark can read the memory of live objects rather than of whatever garbage the
// connection ramp left behind. The sidecar's own code is not touched.
process.on("SIGUSR2", () => {
  const gc = (globalThis as { gc?: () => void }).gc;
  if (gc === undefined) {
    console.log("bench-gc: unavailable (node was started without --expose-gc)");
    return;
  }
  // Twice: the first pass may only queue finalizers that free more.
  gc();
  gc();
  console.log(`bench-gc: done heapUsed=${process.memoryUsage().heapUsed}`);
});
