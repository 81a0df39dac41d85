// mock-api.ts's service without a socket: Hono's app.request runs each call in process.
// What the tests read is what the service answers over HTTP (status codes, GET /stats,
// /succeeded, /failing, /latency), the evidence every e2e test relies on.
import { describe, expect, it } from "vitest";
import { createApp } from "../../mock-api.ts";

type Settings = Parameters<typeof createApp>[0];

const quick: Settings = {
  HOST: "127.0.0.1",
  PORT: 0,
  LATENCY_MS: 0,
  JITTER_MS: 0,
  ERROR_RATE: 0,
  HANG_RATE: 0,
  HANG_MS: 0,
  CAPACITY: 0,
  RETRY_AFTER_S: 1,
  RESPONSE_BYTES: 8,
  FAIL_IDS: "",
  IDEMPOTENCY_KEYS: true,
};

function service(overrides: Partial<Settings> = {}) {
  const app = createApp({ ...quick, ...overrides });
  const post = (body: unknown, key?: string) =>
    app.request("/users", {
      method: "POST",
      headers: { "content-type": "application/json", ...(key ? { "idempotency-key": key } : {}) },
      body: typeof body === "string" ? body : JSON.stringify(body),
    });
  const get = async (path: string) => (await (await app.request(path)).json()) as never;
  const stats = () => get("/stats") as Promise<Record<string, number>>;
  return { app, post, get, stats };
}

describe("mock-api.ts", () => {
  it("answers 201 with RESPONSE_BYTES of padding and counts the success", async () => {
    const api = service();
    const answer = await api.post({ id: "a-1" });
    expect(answer.status).toBe(201);
    expect(await answer.json()).toEqual({ ok: true, id: "a-1", padding: "xxxxxxxx" });
    expect(await api.stats()).toMatchObject({ requests: 1, succeeded: 1, sideEffects: 1 });
    expect(await api.get("/succeeded")).toEqual({ ids: ["a-1"] });
  });

  it("answers 400 to a body without a string id, and counts it as invalid", async () => {
    const api = service();
    expect((await api.post("not json")).status).toBe(400);
    expect((await api.post({ id: 7 })).status).toBe(400);
    expect((await api.post(null)).status).toBe(400);
    expect(await api.stats()).toMatchObject({ invalid: 3, succeeded: 0, distinctIds: 0 });
  });

  it("a repeated Idempotency-Key gets its 201 again without a second side effect", async () => {
    const api = service();
    expect((await api.post({ id: "a-1" }, "key-1")).status).toBe(201);
    expect((await api.post({ id: "a-1" }, "key-1")).status).toBe(201);
    expect(await api.stats()).toMatchObject({
      duplicates: 1,
      deduplicated: 1,
      sideEffects: 1,
      repeatedSideEffects: 0,
    });
  });

  it("a slow call that finishes after another with its key did the work does nothing more", async () => {
    const api = service({ LATENCY_MS: 50 });
    const slow = api.post({ id: "a-1" }, "key-1");
    await new Promise((resolve) => setTimeout(resolve, 10));
    const second = api.post({ id: "a-1" }, "key-1");
    const [a, b] = await Promise.all([slow, second]);
    expect([a.status, b.status]).toEqual([201, 201]);
    const stats = await api.stats();
    expect(stats).toMatchObject({ succeeded: 2, sideEffects: 1, deduplicated: 1 });
  });

  it("without IDEMPOTENCY_KEYS, every success is a side effect and repeats are counted", async () => {
    const api = service({ IDEMPOTENCY_KEYS: false });
    await api.post({ id: "a-1" }, "key-1");
    await api.post({ id: "a-1" }, "key-1");
    expect(await api.stats()).toMatchObject({ sideEffects: 2, repeatedSideEffects: 1 });
  });

  it("answers 429 with Retry-After above CAPACITY calls in progress", async () => {
    const api = service({ LATENCY_MS: 50, CAPACITY: 2, RETRY_AFTER_S: 3 });
    const answers = await Promise.all([1, 2, 3].map((n) => api.post({ id: `a-${n}` })));
    expect(answers.map((a) => a.status).sort()).toEqual([201, 201, 429]);
    expect(answers.find((a) => a.status === 429)?.headers.get("retry-after")).toBe("3");
    expect(await api.stats()).toMatchObject({ rejected: 1, accepted: 2, peakConcurrent: 2 });
  });

  it("answers 500 to FAIL_IDS every time and lists each answer under /failing", async () => {
    const api = service({ FAIL_IDS: "p-1,p-2" });
    await api.post({ id: "a-1" });
    expect((await api.post({ id: "p-1" })).status).toBe(500);
    await api.post({ id: "a-2" });
    expect((await api.post({ id: "p-1" })).status).toBe(500);
    const { answers } = (await api.get("/failing")) as { answers: Record<string, unknown>[] };
    expect(answers.map(({ id, succeededBefore }) => ({ id, succeededBefore }))).toEqual([
      { id: "p-1", succeededBefore: 1 },
      { id: "p-1", succeededBefore: 2 },
    ]);
    expect(await api.stats()).toMatchObject({ failed: 2, succeeded: 2 });
  });

  it("ERROR_RATE 1 fails every call, HANG_RATE 1 holds every call for HANG_MS", async () => {
    const failing = service({ ERROR_RATE: 1 });
    expect((await failing.post({ id: "a-1" })).status).toBe(500);
    // A call that waited LATENCY_MS instead would outlast the test's timeout.
    const hanging = service({ HANG_RATE: 1, HANG_MS: 30, LATENCY_MS: 600_000 });
    expect((await hanging.post({ id: "a-1" })).status).toBe(201);
    expect(await hanging.stats()).toMatchObject({ hung: 1, succeeded: 1 });
  });

  it("a caller that hung up before the answer is not counted as delivered", async () => {
    const api = service({ LATENCY_MS: 30 });
    const caller = new AbortController();
    const call = api.app.request("/users", {
      method: "POST",
      body: JSON.stringify({ id: "a-1" }),
      signal: caller.signal,
    });
    caller.abort();
    await Promise.resolve(call).catch(() => undefined);
    await new Promise((resolve) => setTimeout(resolve, 60));
    expect(await api.stats()).toMatchObject({ abandoned: 1, succeeded: 0, sideEffects: 0 });
    expect(await api.get("/succeeded")).toEqual({ ids: [] });
  });

  it("POST /reset starts afresh; a call in progress at the reset does not count in the new one", async () => {
    const api = service({ LATENCY_MS: 40 });
    await api.post({ id: "a-1" });
    const during = api.post({ id: "a-2" });
    await new Promise((resolve) => setTimeout(resolve, 10));
    await api.app.request("/reset", { method: "POST" });
    expect((await during).status).toBe(201);
    expect(await api.stats()).toMatchObject({ requests: 0, succeeded: 0, inFlight: 0 });
    expect(await api.get("/succeeded")).toEqual({ ids: [] });
  });

  it("/latency gives nearest-rank percentiles from each event's createdAt", async () => {
    const api = service();
    const now = Date.now();
    for (let n = 1; n <= 10; n++) {
      await api.post({ id: `a-${n}`, createdAt: new Date(now - n * 1_000).toISOString() });
    }
    const latency = (await api.get("/latency")) as Record<string, number>;
    expect(latency.count).toBe(10);
    expect(Math.round((latency.p50 ?? 0) / 1_000)).toBe(5);
    expect(Math.round((latency.p90 ?? 0) / 1_000)).toBe(9);
    expect(Math.round((latency.max ?? 0) / 1_000)).toBe(10);
    expect(await api.get("/timeline")).toEqual({ perSecond: [10] });
  });
});
