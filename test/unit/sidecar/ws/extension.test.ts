import { describe, expect, it } from "vitest";
import { parseDeflateExtension, type DeflateParams } from "../../../../sidecar/ws/frame-reader.js";

const defaults: DeflateParams = {
  serverNoContextTakeover: false,
  clientNoContextTakeover: false,
  serverMaxWindowBits: 15,
  clientMaxWindowBits: 15,
};

describe("parseDeflateExtension", () => {
  it.each<[string, string | string[] | undefined, DeflateParams | null]>([
    ["no header", undefined, null],
    ["an empty header", "", null],
    ["another extension only", "x-webkit-deflate-frame", null],
    ["Bandit's answer (no space after ;)", "permessage-deflate;client_max_window_bits=15", defaults],
    ["ws's answer", "permessage-deflate; client_max_window_bits=10", { ...defaults, clientMaxWindowBits: 10 }],
    [
      "every parameter",
      "permessage-deflate; server_no_context_takeover; client_no_context_takeover; server_max_window_bits=9; client_max_window_bits=8",
      { serverNoContextTakeover: true, clientNoContextTakeover: true, serverMaxWindowBits: 9, clientMaxWindowBits: 8 },
    ],
    ["a quoted value and odd case", 'Permessage-Deflate; Server_Max_Window_Bits="12"', { ...defaults, serverMaxWindowBits: 12 }],
    ["the second of two extensions", 'foo; bar="a,b", permessage-deflate; server_no_context_takeover', { ...defaults, serverNoContextTakeover: true }],
    ["repeated header lines", ["foo", "permessage-deflate; client_no_context_takeover"], { ...defaults, clientNoContextTakeover: true }],
    ["the first of two permessage-deflate elements", "permessage-deflate; server_max_window_bits=10, permessage-deflate", { ...defaults, serverMaxWindowBits: 10 }],
    ["window bits out of range (widest window instead)", "permessage-deflate; server_max_window_bits=7; client_max_window_bits=16", defaults],
    ["a window bits parameter without a value", "permessage-deflate; client_max_window_bits", defaults],
  ])("reads %s", (_name, header, expected) => {
    expect(parseDeflateExtension(header)).toEqual(expected);
  });
});
