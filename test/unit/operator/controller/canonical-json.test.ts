import { describe, expect, it } from "vitest";
import { canonicalJson } from "../../../../operator/controller/canonical-json.js";

describe("canonicalJson", () => {
  it("sorts keys at every level, so key order does not matter", () => {
    const a = { b: 1, a: { y: [{ q: 1, p: 2 }], x: null } };
    const b = { a: { x: null, y: [{ p: 2, q: 1 }] }, b: 1 };
    expect(canonicalJson(a)).toBe(canonicalJson(b));
    expect(canonicalJson(a)).toBe('{"a":{"x":null,"y":[{"p":2,"q":1}]},"b":1}');
  });

  it("keeps array order (a reordered list is a change)", () => {
    expect(canonicalJson([1, 2])).not.toBe(canonicalJson([2, 1]));
  });

  it("leaves out undefined fields, so an absent and an undefined field compare equal", () => {
    expect(canonicalJson({ a: 1, b: undefined })).toBe(canonicalJson({ a: 1 }));
  });

  it("tells different values apart", () => {
    expect(canonicalJson({ a: 1 })).not.toBe(canonicalJson({ a: "1" }));
    expect(canonicalJson({ a: null })).not.toBe(canonicalJson({}));
  });
});
