// The events producer.ts writes, without a broker: every consumer, test and benchmark
// reads this format (ids <ID_PREFIX>-<n>, padding to PAYLOAD_BYTES, keys, malformed ones).
import { describe, expect, it } from "vitest";
import { makeEvent } from "../../producer.ts";

// The settings makeEvent reads are KEYS, MALFORMED_EVERY and PAYLOAD_BYTES.
const options: NonNullable<Parameters<typeof makeEvent>[2]> = {
  PAYLOAD_BYTES: 0,
  KEYS: 0,
  MALFORMED_EVERY: 0,
};
const text = (value: unknown) => (value === null ? null : String(value));

describe("producer.ts makeEvent", () => {
  it("writes id <prefix>-<n>, an email, a username and createdAt, keyed by the id", () => {
    const { key, value } = makeEvent(7, "run", { ...options });
    expect(key).toBe("run-7");
    const event = JSON.parse(text(value) ?? "");
    expect(event).toMatchObject({ id: "run-7", email: "user_7@example.com", username: "user_7" });
    expect(Number.isNaN(Date.parse(event.createdAt))).toBe(false);
    expect(event.padding).toBeUndefined();
  });

  it.each([200, 1_024, 16_384])("pads each event to exactly PAYLOAD_BYTES=%i bytes", (bytes) => {
    const { value } = makeEvent(123, "run", { ...options, PAYLOAD_BYTES: bytes });
    expect(Buffer.byteLength(text(value) ?? "")).toBe(bytes);
    expect(JSON.parse(text(value) ?? "").id).toBe("run-123");
  });

  it("cycles KEYS distinct keys", () => {
    const keys = Array.from(
      { length: 9 },
      (_, n) => makeEvent(n, "p", { ...options, KEYS: 4 }).key,
    );
    expect(keys).toEqual([
      "key-0",
      "key-1",
      "key-2",
      "key-3",
      "key-0",
      "key-1",
      "key-2",
      "key-3",
      "key-0",
    ]);
  });

  it("makes every MALFORMED_EVERY-th event bad, in turn: not JSON, no fields, no value", () => {
    const events = Array.from({ length: 12 }, (_, n) =>
      makeEvent(n, "p", { ...options, MALFORMED_EVERY: 4 }),
    );
    const bad = events.filter((_, n) => n % 4 === 3).map((e) => text(e.value));
    expect(() => JSON.parse(bad[0] ?? "")).toThrow();
    expect(JSON.parse(bad[1] ?? "")).toEqual({ id: "p-7", note: "no email or username" });
    expect(bad[2]).toBeNull();
    const good = events.filter((_, n) => n % 4 !== 3).map((e) => JSON.parse(text(e.value) ?? ""));
    expect(good.map((e) => e.username)).toEqual(
      [0, 1, 2, 4, 5, 6, 8, 9, 10].map((n) => `user_${n}`),
    );
  });
});
