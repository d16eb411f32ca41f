import { describe, expect, it } from "vitest";
import { VSN_1, VSN_2, vsnFromUrl } from "../../../../sidecar/phoenix/message.js";

// Phoenix reads vsn from Plug's decoded query (the last value of a repeated key wins, `+` and
// percent escapes decoded) and matches it against `~> 1.0.0` / `~> 2.0.0`.
const cases: [url: string | undefined, vsn: number][] = [
  ["/socket/websocket?vsn=2.0.0", VSN_2],
  ["/socket/websocket?vsn=1.0.0", VSN_1],
  ["/socket/websocket", VSN_1],
  [undefined, VSN_1],
  ["/socket/websocket?token=a&vsn=2.0.0&", VSN_2],
  ["/socket/websocket?vsn=%32%2E0%2E0", VSN_2],
  ["/socket/websocket?v%73n=2.0.0", VSN_2],
  ["/socket/websocket?vsn=1.0.0&vsn=2.0.0", VSN_2],
  ["/socket/websocket?vsn=2.0.0&vsn=1.0.0", VSN_1],
  ["/socket/websocket?vsn=2.0.7", VSN_2],
  ["/socket/websocket?vsn=2.0.1-rc.1", VSN_2],
  ["/socket/websocket?vsn=2.0.0%2Bbuild", VSN_2],
  // Phoenix refuses these; no 101 follows, so vsn 1 is as good as any answer.
  ["/socket/websocket?vsn=2.1.0", VSN_1],
  ["/socket/websocket?vsn=2.0", VSN_1],
  ["/socket/websocket?vsn=2.0.0-rc", VSN_1],
  ["/socket/websocket?vsn=+2.0.0", VSN_1],
  ["/socket/websocket?vsn=2.0.0+build.5", VSN_1], // `+` is a space: "2.0.0 build.5" is no version
  ["/socket/websocket?vsn=2.0.0&vsn=%zz", VSN_1],
];

describe("vsnFromUrl", () => {
  it.each(cases)("reads %s as vsn %s, as Plug and Phoenix.Socket would", (url, vsn) => {
    expect(vsnFromUrl(url)).toBe(vsn);
  });
});
