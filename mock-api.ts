/**
 * mock-api.ts: the slow external service every consumer in this project calls.
 *
 * A Hono app that "creates a user" for each POST /users after LATENCY_MS and, when asked,
 * misbehaves: 500 for a share of calls (for FAIL_IDS always), hangs so that callers time
 * out, 429 with Retry-After above CAPACITY calls in progress. Like a payment API it honours
 * Idempotency-Key: a key already done gets its 201 again, with no second side effect. It
 * counts what it saw, so tests can ask whether every message arrived, and how many twice.
 *
 * Run this one file alone (settings: --help):
 *   bun:  bun run mock-api.ts
 *   deno: deno add npm:hono npm:@hono/node-server && deno run --allow-net --allow-env=HOST,PORT,LATENCY_MS,JITTER_MS,ERROR_RATE,HANG_RATE,HANG_MS,CAPACITY,RETRY_AFTER_S,RESPONSE_BYTES,FAIL_IDS,IDEMPOTENCY_KEYS mock-api.ts
 *   node: npm i hono @hono/node-server && npm pkg set type=module && node mock-api.ts   (Node 22.18+)
 *
 * Besides POST /users, for tests and the demo: GET /stats (counters), /ids (in order of
 * arrival), /succeeded (ids answered 201, in order: what was delivered), /latency (from each
 * event's createdAt), /timeline (successes per second), /failing (each FAIL_IDS answer: when,
 * and how many successes came before it), /health; POST /reset.
 */
import { serve as serveOnNode } from "@hono/node-server";
import { Hono } from "hono";

const settings = readSettings(
  {
    HOST: text("127.0.0.1", "address to listen on (0.0.0.0: reachable from other machines)"),
    PORT: number(3000, "port to listen on (0: any free port, printed at start)", 0, 65_535),
    LATENCY_MS: number(1_000, "time each call takes before it answers", 0, 600_000),
    JITTER_MS: number(100, "random extra time, 0 to JITTER_MS, per call", 0, 600_000),
    ERROR_RATE: number(0, "share of calls answered 500 after the latency", 0, 1, false),
    HANG_RATE: number(0, "share of calls that take HANG_MS instead, to time out", 0, 1, false),
    HANG_MS: number(30_000, "how long a hanging call takes", 0, 600_000),
    CAPACITY: number(0, "calls in progress beyond which it answers 429 (0: no limit)", 0, 1e6),
    RETRY_AFTER_S: number(1, "Retry-After seconds sent with a 429", 0, 3_600),
    RESPONSE_BYTES: number(64, "size of the JSON body of a successful answer", 0, 1e7),
    FAIL_IDS: text("", "comma-separated ids always answered 500 (messages that keep failing)"),
    IDEMPOTENCY_KEYS: flag(true, "a call whose Idempotency-Key is done gets its 201 again"),
  },
  "0 stopped by SIGINT or SIGTERM, 1 could not listen, 2 bad setting",
);

async function main() {
  // 1. The service, and what it counts.
  const app = createApp(settings);
  // 2. Listen with the runtime's own HTTP server. Tests and the demo read this line for the port.
  const { HOST: host, PORT: port } = settings;
  const boundPort = await listen(app.fetch, host, port).catch((error: Error) => {
    console.error(`Could not listen on ${host}:${port}: ${error.message}`);
    process.exit(1);
  });
  const faults = `error rate ${settings.ERROR_RATE}, hang rate ${settings.HANG_RATE}`;
  const behaviour = `${settings.LATENCY_MS}+${settings.JITTER_MS} ms, ${faults}`;
  console.log(`mock-api listening on http://${host}:${boundPort} (${runtimeName()}, ${behaviour})`);
  // 3. Stop at once on SIGINT or SIGTERM: calls in progress are the callers' to retry.
  for (const signal of ["SIGINT", "SIGTERM"]) process.once(signal, () => process.exit(0));
}

/** The service: POST /users creates a user, slowly, failing as often as the settings say. */
export function createApp(config: typeof settings) {
  const current = { ledger: newLedger() }; // POST /reset starts a new one
  const failIds = new Set(config.FAIL_IDS.split(",").filter((id) => id !== ""));
  const padding = "x".repeat(config.RESPONSE_BYTES);
  const app = new Hono();
  app.post("/users", async (c) => {
    const seen = current.ledger; // a reset during this call must not skew the new counts
    const { stats } = seen;
    stats.requests++;
    // 1. Admit at most CAPACITY calls at once; tell the others when to come back.
    if (config.CAPACITY > 0 && stats.inFlight >= config.CAPACITY) {
      stats.rejected++;
      c.header("Retry-After", String(config.RETRY_AFTER_S));
      return c.json({ error: "over capacity" }, 429);
    }
    stats.accepted++;
    stats.peakConcurrent = Math.max(stats.peakConcurrent, ++stats.inFlight);
    try {
      // 2. Read the event: a JSON object with a string id.
      const { id, createdAt } = await readEvent(c.req.raw);
      if (id === undefined) {
        stats.invalid++;
        return c.json({ error: 'expected a JSON object with a string "id"' }, 400);
      }
      if (seen.ids.has(id)) stats.duplicates++;
      seen.ids.add(id);
      // 3. A key whose work is done gets the same answer at once.
      const key = config.IDEMPOTENCY_KEYS ? c.req.header("idempotency-key") : undefined;
      if (key !== undefined && seen.doneKeys.has(key)) {
        stats.deduplicated++;
        return c.json({ ok: true, id, padding }, 201);
      }
      // 4. Take the time the work takes, or hang.
      const hang = Math.random() < config.HANG_RATE;
      if (hang) stats.hung++;
      await delay(hang ? config.HANG_MS : config.LATENCY_MS + Math.random() * config.JITTER_MS);
      // 5. Fail on purpose: FAIL_IDS every time, the others at ERROR_RATE.
      const always = failIds.has(id);
      if (always) seen.failing.push({ id, at: Date.now(), succeededBefore: stats.succeeded });
      if (always || Math.random() < config.ERROR_RATE) {
        stats.failed++;
        return c.json({ error: always ? "this id always fails" : "injected failure" }, 500);
      }
      // 6. A caller that hung up never sees a 201 and will retry: not a success. Poll the
      //    socket first, or a hang-up during the wait would not show yet.
      await delay(1);
      if (c.req.raw.signal.aborted) {
        stats.abandoned++;
        return c.json({ error: "the caller had gone" }, 408); // nobody reads it
      }
      // 7. Do the work once per key: a call that finishes after another with its key did
      //    the work (a redelivery that overtook a slow call) gets the same 201, nothing more.
      stats.succeeded++;
      if (key !== undefined && seen.doneKeys.has(key)) stats.deduplicated++;
      else createUser(seen, id, key);
      recordSuccess(seen, id, createdAt);
      return c.json({ ok: true, id, padding }, 201);
    } finally {
      stats.inFlight--;
    }
  });
  addInspection(app, current);
  return app;
}

type Ledger = ReturnType<typeof newLedger>;

/** The side effect: a user "created". Counted per id, to show what came twice. */
function createUser(seen: Ledger, id: string, key: string | undefined) {
  if (key !== undefined) seen.doneKeys.add(key);
  seen.stats.sideEffects++;
  if (seen.effectIds.has(id)) seen.stats.repeatedSideEffects++;
  seen.effectIds.add(id);
}

// ==== Instrumentation and plumbing: a reader may skip from here on ====

/** What the service saw since it started or was last reset. */
function newLedger() {
  return {
    stats: {
      requests: 0, // every POST /users, rejected ones included
      accepted: 0, // admitted under CAPACITY
      succeeded: 0, // answered 201 after the latency
      failed: 0, // answered 500 on purpose
      hung: 0, // held for HANG_MS on purpose
      abandoned: 0, // the caller had gone before the answer: not a success
      rejected: 0, // answered 429
      invalid: 0, // answered 400: no JSON body with a string id
      inFlight: 0,
      peakConcurrent: 0,
      duplicates: 0, // accepted calls for an id already seen
      deduplicated: 0, // answered from an earlier call with the same Idempotency-Key
      sideEffects: 0, // users "created": calls answered 201 that did the work
      repeatedSideEffects: 0, // side effects for an id that already had one
    },
    ids: new Set<string>(), // in the order they first arrived
    doneKeys: new Set<string>(), // Idempotency-Keys whose work is done
    effectIds: new Set<string>(), // ids whose side effect happened
    succeeded: [] as string[], // in the order answered 201
    succeededIds: new Set<string>(), // the same, once each: /stats stays cheap to poll
    latenciesMs: [] as number[], // createdAt to the 201
    perSecond: [] as number[], // successes per second since `since`
    failing: [] as { id: string; at: number; succeededBefore: number }[],
    since: Date.now(),
  };
}

function recordSuccess(seen: Ledger, id: string, createdAt: number | undefined) {
  const now = Date.now();
  seen.succeeded.push(id);
  seen.succeededIds.add(id);
  if (createdAt !== undefined) seen.latenciesMs.push(now - createdAt);
  const second = Math.floor((now - seen.since) / 1_000);
  seen.perSecond[second] = (seen.perSecond[second] ?? 0) + 1;
}

/** The read side, for tests and the demo. */
function addInspection(app: Hono, current: { ledger: Ledger }) {
  const read = (path: string, answer: (seen: Ledger) => unknown) =>
    app.get(path, (c) => c.json(answer(current.ledger)));
  read("/stats", ({ stats, ids, succeededIds }) => ({
    ...stats,
    distinctIds: ids.size,
    distinctSucceeded: succeededIds.size,
  }));
  read("/ids", ({ ids }) => ({ ids: [...ids] }));
  read("/succeeded", ({ succeeded }) => ({ ids: succeeded }));
  read("/latency", ({ latenciesMs }) => percentiles(latenciesMs));
  read("/timeline", ({ perSecond }) => ({ perSecond: Array.from(perSecond, (n) => n ?? 0) }));
  read("/failing", ({ failing }) => ({ answers: failing }));
  read("/health", () => ({ ok: true }));
  app.post("/reset", (c) => {
    current.ledger = newLedger();
    return c.json({ ok: true });
  });
}

/** The event's id (required) and creation time (optional) from the JSON body. */
async function readEvent(request: Request): Promise<{ id?: string; createdAt?: number }> {
  const body = (await request.json().catch(() => null)) as { id?: unknown; createdAt?: unknown };
  const id = typeof body?.id === "string" && body.id !== "" ? body.id : undefined;
  const created = typeof body?.createdAt === "string" ? Date.parse(body.createdAt) : Number.NaN;
  return { id, createdAt: Number.isNaN(created) ? undefined : created };
}

/** Latency percentiles in ms (nearest rank). */
function percentiles(values: number[]) {
  const sorted = [...values].sort((a, b) => a - b);
  const at = (p: number) =>
    sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)] ?? null;
  return { count: sorted.length, p50: at(50), p90: at(90), p99: at(99), max: at(100) };
}

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

function runtimeName(): string {
  const name = ["bun", "deno", "node"].find((r) => process.versions[r]) ?? "node";
  return `${name} ${process.versions[name]}`;
}

type Handler = (request: Request) => Response | Promise<Response>;
const { Bun, Deno } = globalThis as unknown as {
  Bun?: { serve(options: object): { port: number } };
  Deno?: { serve(options: object, handler: Handler): { addr: { port: number } } };
};

/** Serves with each runtime's own HTTP server (Bun.serve, Deno.serve, node:http): the port. */
async function listen(fetch: Handler, hostname: string, port: number): Promise<number> {
  // idleTimeout 0: Bun would otherwise cut a hanging call (HANG_MS) after 10 s.
  if (Bun) return Bun.serve({ fetch, hostname, port, idleTimeout: 0 }).port;
  if (Deno) return Deno.serve({ hostname, port, onListen: () => {} }, fetch).addr.port;
  return await new Promise((resolve, reject) => {
    serveOnNode({ fetch, hostname, port }, (info) => resolve(info.port)).once("error", reject);
  });
}

// ---- Settings reader: each script of this project carries the same copy, so that it
// stands alone (tests/unit/drift.test.ts keeps the copies identical) ----

interface Setting<T> {
  fallback: T;
  doc: string;
  expected: string;
  parse: (raw: string) => T | undefined; // undefined: not a valid value
}

function text(fallback: string, doc: string, pattern = /\S/, expected = "text"): Setting<string> {
  return { fallback, doc, expected, parse: (raw) => (pattern.test(raw) ? raw.trim() : undefined) };
}

function number(fallback: number, doc: string, min: number, max: number, whole = true) {
  const expected = `${whole ? "a whole number" : "a number"} from ${min} to ${max}`;
  const parse = (raw: string) => {
    const n = Number(raw);
    return n >= min && n <= max && (!whole || Number.isInteger(n)) ? n : undefined;
  };
  return { fallback, doc, expected, parse } satisfies Setting<number>;
}

function flag(fallback: boolean, doc: string): Setting<boolean> {
  const parse = (raw: string) => ({ true: true, false: false })[raw.trim() as "true" | "false"];
  return { fallback, doc, expected: "true or false", parse };
}

/** Reads settings from the environment (unset or empty: the default); a bad one exits 2. */
function readSettings<S extends Record<string, Setting<unknown>>>(spec: S, exitCodes: string) {
  const help = process.argv.includes("--help");
  if (help) console.log(`Settings of ${process.argv[1]?.split("/").pop()}, from the environment:`);
  const values: Record<string, unknown> = {};
  let bad = false;
  for (const [name, { fallback, doc, expected, parse }] of Object.entries(spec)) {
    if (help) console.log(`  ${name.padEnd(20)} ${doc} [default: ${fallback}]`);
    const raw = process.env[name];
    values[name] = raw === undefined || raw === "" ? fallback : parse(raw);
    if (values[name] !== undefined) continue;
    console.error(`Bad setting ${name}=${JSON.stringify(raw)}: expected ${expected}`);
    bad = true;
  }
  if (help) console.log(`Exit codes: ${exitCodes}.`);
  if (help || bad) process.exit(help ? 0 : 2);
  return values as { [K in keyof S]: S[K]["fallback"] };
}

if (import.meta.main) await main();
