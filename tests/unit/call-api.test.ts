// callApi's classification of what the API says, against a real local HTTP server (a
// Hono app on node:http): which answers are success, overload (wait, no retry used up),
// failure (retry, then dead-letter), rejection (dead-letter at once), timeout, or no
// answer at all. No broker; each call takes milliseconds.
import { serve } from "@hono/node-server";
import { Hono } from "hono";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { abortOpenCalls, callApi } from "../../consumer-solved.ts";
import { freePort } from "../../scripts/kafka-jvm.ts";

let base = "";
let close: () => void = () => {};

beforeAll(async () => {
  const app = new Hono();
  app.post("/status/:code", (c) => {
    const code = Number(c.req.param("code"));
    const retryAfter = c.req.query("retry-after");
    if (retryAfter !== undefined) c.header("Retry-After", retryAfter);
    return c.body(`answer ${code}`, code as 201);
  });
  app.post("/slow", async (c) => {
    await new Promise((resolve) => setTimeout(resolve, 1_000));
    return c.body("late", 201);
  });
  // Holds the calls whose ?n= is a multiple of 4 for 1 s, answers the others at once.
  app.post("/some-slow", async (c) => {
    const n = Number(c.req.query("n"));
    if (n % 4 === 0) await new Promise((resolve) => setTimeout(resolve, 1_000));
    return c.body(`answer ${n}`, 201);
  });
  await new Promise<void>((resolve) => {
    const server = serve({ fetch: app.fetch, hostname: "127.0.0.1", port: 0 }, (info) => {
      base = `http://127.0.0.1:${info.port}`;
      resolve();
    });
    close = () => server.close();
  });
});
afterAll(() => close());

const never = new AbortController().signal;
// The request body as callApi takes it: the message's bytes.
const body = new TextEncoder().encode("{}") as Parameters<typeof callApi>[1];
const key = "test-0-1"; // the Idempotency-Key
const call = (path: string, timeoutMs = 2_000) =>
  callApi(`${base}${path}`, body, timeoutMs, never, key);

describe("callApi", () => {
  it("201 and 200 are success", async () => {
    expect(await call("/status/201")).toEqual({ kind: "ok" });
    expect(await call("/status/200")).toEqual({ kind: "ok" });
  });

  it("429 with Retry-After is overload, with the wait it asks for", async () => {
    expect(await call("/status/429?retry-after=3")).toMatchObject({
      kind: "overloaded",
      retryAfterMs: 3_000,
      reason: expect.stringMatching(/^HTTP 429: answer 429/),
    });
  });

  it("429 without Retry-After is overload, with no wait of its own", async () => {
    const answer = await call("/status/429");
    expect(answer).toMatchObject({ kind: "overloaded" });
    expect(answer).toHaveProperty("retryAfterMs", undefined);
  });

  it("503 is overload too", async () => {
    expect(await call("/status/503?retry-after=1")).toMatchObject({
      kind: "overloaded",
      retryAfterMs: 1_000,
    });
  });

  it("408 and 500 are failures, to retry", async () => {
    expect(await call("/status/408")).toMatchObject({ kind: "failed", reason: /^HTTP 408/ });
    expect(await call("/status/500")).toMatchObject({ kind: "failed", reason: /^HTTP 500/ });
  });

  it("400 and 422 are rejections: this message will never be accepted", async () => {
    expect(await call("/status/400")).toMatchObject({ kind: "rejected", reason: /^HTTP 400/ });
    expect(await call("/status/422")).toMatchObject({ kind: "rejected", reason: /^HTTP 422/ });
  });

  it("no answer within the timeout is a timeout", async () => {
    expect(await call("/slow", 100)).toEqual({
      kind: "timeout",
      reason: "no answer within 100 ms",
    });
  });

  it("over kept-alive connections, each held call times out and each other one is ok", async () => {
    // Deno's node:http answered "ok" for held calls here once their connections were
    // reused: the consumer's client must tell each call's own fate, call after call.
    const kinds = new Map<number, string>();
    let next = 0;
    const worker = async () => {
      while (next < 40) {
        const n = next++;
        kinds.set(n, (await call(`/some-slow?n=${n}`, 300)).kind);
      }
    };
    await Promise.all(Array.from({ length: 8 }, worker));
    for (const [n, kind] of kinds) expect(kind, `call ${n}`).toBe(n % 4 === 0 ? "timeout" : "ok");
    expect(kinds.size).toBe(40);
  });

  it("a refused connection is unreachable, naming the cause", async () => {
    const url = `http://127.0.0.1:${await freePort()}/users`;
    const answer = await callApi(url, body, 2_000, never, key);
    expect(answer).toMatchObject({ kind: "unreachable", reason: /ECONNREFUSED/ });
  });

  it("shutdown aborts the call with an error instead of classifying it", async () => {
    // As the consumer wires it: one listener on the shutdown signal aborts every open call.
    const shutdown = new AbortController();
    shutdown.signal.addEventListener("abort", () => abortOpenCalls(shutdown.signal.reason));
    const pending = callApi(`${base}/slow`, body, 5_000, shutdown.signal, key);
    shutdown.abort(new Error("shutting down"));
    await expect(pending).rejects.toThrow();
    // And a call started after the shutdown does not start at all.
    await expect(
      callApi(`${base}/status/201`, body, 5_000, shutdown.signal, key),
    ).rejects.toThrow();
  });
});
