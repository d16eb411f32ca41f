// The serializers on their own: the byte layouts of the traces and the errors bad input gets.
import { describe, expect, it } from "vitest";
import { encodeJson, negotiateSerializer, ProtocolError, V1_SERIALIZER, V2_SERIALIZER } from "../../support/phoenix-server/index.js";

function codeOf(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (err) {
    return err instanceof ProtocolError ? err.code : `not a ProtocolError: ${String(err)}`;
  }
  return undefined;
}

describe("serializers", () => {
  it("decodes the s07 client binary push (kind 0) and encodes the reply, broadcast and server push layouts", () => {
    const fields = ["8", "9", "patterns:vsm", "bin"].map((f) => Buffer.from(f));
    const frame = Buffer.concat([Buffer.from([0, ...fields.map((f) => f.length)]), ...fields, Buffer.from("\u0001\u0002hello-binary")]);
    const msg = V2_SERIALIZER.decode(frame, true);
    expect({ ...msg, payload: (msg.payload as Buffer).toString() }).toEqual({
      joinRef: "8", ref: "9", topic: "patterns:vsm", event: "bin", payload: "\u0001\u0002hello-binary",
    });
    // Byte strings recorded in s07-binary-v2.jsonl.
    expect((V2_SERIALIZER.reply("8", "9", "patterns:vsm", "ok", Buffer.from("\u0001\u0002hello-binary")) as Buffer).toString("base64"))
      .toBe("AQEBDAI4OXBhdHRlcm5zOnZzbW9rAQJoZWxsby1iaW5hcnk=");
    expect((V2_SERIALIZER.broadcast("patterns:vsm", "binbcast", Buffer.from("bcast-bytes")) as Buffer).toString("base64"))
      .toBe("AgwIcGF0dGVybnM6dnNtYmluYmNhc3RiY2FzdC1ieXRlcw==");
    expect((V2_SERIALIZER.message("8", null, "patterns:vsm", "binpush", Buffer.from("push-bytes")) as Buffer).toString("base64"))
      .toBe("AAEMBzhwYXR0ZXJuczp2c21iaW5wdXNocHVzaC1ieXRlcw==");
  });

  it("writes vsn 1 objects with event, payload, ref, topic only, never join_ref", () => {
    expect(V1_SERIALIZER.message("2", "2", "patterns:stream", "phx_close", {})).toBe('{"event":"phx_close","payload":{},"ref":"2","topic":"patterns:stream"}');
    expect(V1_SERIALIZER.broadcast("t", "bcast", { b: 1, a: 2 })).toBe('{"event":"bcast","payload":{"a":2,"b":1},"ref":null,"topic":"t"}');
    expect(V1_SERIALIZER.decode('{"topic":"t","event":"e","payload":{},"ref":"1"}', false).joinRef).toBeNull();
  });

  it("refuses bad frames with stable codes", () => {
    expect(codeOf(() => V2_SERIALIZER.decode("nope", false))).toBe("ERR_PHX_BAD_JSON");
    expect(codeOf(() => V2_SERIALIZER.decode("[1,2,3,4]", false))).toBe("ERR_PHX_BAD_MESSAGE");
    expect(codeOf(() => V2_SERIALIZER.decode(Buffer.from([1, 0, 0, 0, 0]), true))).toBe("ERR_PHX_BAD_BINARY");
    expect(codeOf(() => V2_SERIALIZER.decode(Buffer.from([0, 9, 0, 0, 0, 1]), true))).toBe("ERR_PHX_BAD_BINARY");
    expect(codeOf(() => V1_SERIALIZER.decode('{"topic":"t","event":"e","payload":{}}', false))).toBe("ERR_PHX_BAD_MESSAGE");
    expect(codeOf(() => V1_SERIALIZER.decode("[]", false))).toBe("ERR_PHX_BAD_MESSAGE");
    expect(codeOf(() => V1_SERIALIZER.reply(null, "1", "t", "ok", Buffer.from("x")))).toBe("ERR_PHX_BINARY_V1");
    expect(codeOf(() => V2_SERIALIZER.broadcast("t".repeat(256), "e", Buffer.from("x")))).toBe("ERR_PHX_FIELD_TOO_LONG");
  });

  it("negotiates vsn like Phoenix's ~> 1.0.0 and ~> 2.0.0", () => {
    expect(negotiateSerializer(undefined)?.vsn).toBe("1.0.0");
    expect(negotiateSerializer("1.0.0")?.vsn).toBe("1.0.0");
    expect(negotiateSerializer("2.0.0")?.vsn).toBe("2.0.0");
    expect(negotiateSerializer("2.0.7")?.vsn).toBe("2.0.0");
    for (const bad of ["2.1.0", "3.0.0", "0.9.0", "2.0.0-rc.1", "2", "abc", ""]) expect(negotiateSerializer(bad)).toBeUndefined();
  });

  it("encodes JSON with keys sorted at every depth", () => {
    expect(encodeJson({ z: [{ b: 1, a: null }], a: "é\n", m: true })).toBe('{"a":"é\\n","m":true,"z":[{"a":null,"b":1}]}');
  });
});
