/**
 * mock-api.ts: the slow external service every consumer in this project calls.
 *
 * A Hono app that "creates a user" for each POST /users, after a configurable
 * latency, and can misbehave on purpose: fail a share of calls with 500, hang on a
 * share of them (so callers time out), and answer 429 with Retry-After when more than
 * CAPACITY calls are in progress. It counts what it received so tests and the demo can
 * ask, over HTTP, whether every message reached it and how many came twice. Like a
 * payment API, it honours Idempotency-Key: a key already answered 201 gets the same
 * answer back at once, and a call that finishes after another with its key did the
 * work causes no second side effect.
 *
 *   bun run mock-api.ts          deno run -A mock-api.ts          node mock-api.ts
 *   LATENCY_MS=1000 CAPACITY=20 bun run mock-api.ts      (settings: --help)
 *
 * Endpoints: POST /users, GET /stats, GET /ids (in the order they first arrived),
 * GET /succeeded (ids in the order they were answered 201: what was really delivered, and
 * in which order; a caller that gave up first is not answered), GET
 * /latency (end-to-end latency percentiles, from each event's createdAt), GET /timeline
 * (successes per second), GET /failing (each FAIL_IDS answer: when, and how many
 * successes came before it), POST /reset, GET /health.
 */
import { serve as serveOnNode } from "@hono/node-server";
import { Hono } from "hono";
import { z } from "zod";

// ---- Settings (environment variables; --help lists them) ----
const settingsShape = {
  HOST: text("127.0.0.1", "address to listen on (0.0.0.0 to reach it from other machines)"),
  PORT: wholeNumber(3000, 0, 65_535, "port to listen on (0: any free port, printed at start)"),
  LATENCY_MS: wholeNumber(1_000, 0, 600_000, "time each call takes before it answers"),
  JITTER_MS: wholeNumber(100, 0, 600_000, "random extra time, 0 to JITTER_MS, added to each call"),
  ERROR_RATE: fraction(0, "share of calls answered 500 after the latency (0 to 1)"),
  HANG_RATE: fraction(0, "share of calls that take HANG_MS instead, to make callers time out"),
  HANG_MS: wholeNumber(30_000, 0, 600_000, "how long a hanging call takes"),
  CAPACITY: wholeNumber(
    0,
    0,
    1_000_000,
    "calls in progress above which it answers 429 (0: no limit)",
  ),
  RETRY_AFTER_S: wholeNumber(1, 0, 3_600, "Retry-After seconds sent with a 429"),
  RESPONSE_BYTES: wholeNumber(64, 0, 10_000_000, "size of the JSON body of a successful answer"),
  FAIL_IDS: z
    .string()
    .default("")
    .describe(
      "comma-separated ids always answered 500 after the latency (messages that keep failing)",
    ),
  IDEMPOTENCY_KEYS: flag(
    true,
    "a call whose Idempotency-Key was already answered 201 gets that answer again, with no second side effect",
  ),
};

type Settings = z.infer<z.ZodObject<typeof settingsShape>>;

// ---- What it has seen, for GET /stats ----
interface Stats {
  requests: number; // every POST /users, rejected ones included
  accepted: number; // admitted under CAPACITY
  succeeded: number; // answered 201 after the latency
  failed: number; // answered 500 on purpose
  hung: number; // held for HANG_MS on purpose
  abandoned: number; // the caller had gone (timed out) before the answer: not a success
  rejected: number; // answered 429
  invalid: number; // answered 400: no JSON body with a string id
  inFlight: number;
  peakConcurrent: number;
  duplicates: number; // accepted calls for an id already seen
  deduplicated: number; // answered from an earlier call with the same Idempotency-Key
  sideEffects: number; // users "created": calls answered 201 that did the work
  repeatedSideEffects: number; // side effects for an id that already had one
}

function emptyStats(): Stats {
  return {
    requests: 0,
    accepted: 0,
    succeeded: 0,
    failed: 0,
    hung: 0,
    abandoned: 0,
    rejected: 0,
    invalid: 0,
    inFlight: 0,
    peakConcurrent: 0,
    duplicates: 0,
    deduplicated: 0,
    sideEffects: 0,
    repeatedSideEffects: 0,
  };
}

// ---- The app ----
export function createApp(settings: Settings) {
  let stats = emptyStats();
  let seenIds = new Set<string>();
  let effectIds = new Set<string>(); // ids whose side effect happened
  // Idempotency-Keys whose work is done: the first call with the key to succeed did it.
  let doneKeys = new Set<string>();
  let succeededIds: string[] = []; // in the order answered 201: shows processing order
  let latenciesMs: number[] = []; // created → answered, per successful call
  let timeline: number[] = []; // successes per second since the last reset
  let since = Date.now();
  let failing: { id: string; at: number; succeededBefore: number }[] = []; // FAIL_IDS answers
  const failIds = new Set(settings.FAIL_IDS.split(",").filter((id) => id !== ""));
  const padding = "x".repeat(settings.RESPONSE_BYTES);
  const app = new Hono();

  app.post("/users", async (c) => {
    stats.requests++;
    if (settings.CAPACITY > 0 && stats.inFlight >= settings.CAPACITY) {
      stats.rejected++;
      c.header("Retry-After", String(settings.RETRY_AFTER_S));
      return c.json({ error: "over capacity" }, 429);
    }
    stats.accepted++;
    stats.inFlight++;
    stats.peakConcurrent = Math.max(stats.peakConcurrent, stats.inFlight);
    const counted = stats; // a reset during this call must not skew the new counters
    try {
      const { id, createdAt } = await readEvent(c.req.raw);
      if (id === undefined) {
        counted.invalid++;
        return c.json({ error: 'expected a JSON object with a string "id"' }, 400);
      }
      if (seenIds.has(id)) counted.duplicates++;
      else seenIds.add(id);
      const key = settings.IDEMPOTENCY_KEYS ? c.req.header("idempotency-key") : undefined;
      if (key !== undefined && doneKeys.has(key)) {
        counted.deduplicated++;
        return c.json({ ok: true, id, padding }, 201);
      }

      if (Math.random() < settings.HANG_RATE) {
        counted.hung++;
        await delay(settings.HANG_MS);
      } else {
        await delay(settings.LATENCY_MS + Math.random() * settings.JITTER_MS);
      }
      if (failIds.has(id)) {
        counted.failed++;
        failing.push({ id, at: Date.now(), succeededBefore: counted.succeeded });
        return c.json({ error: "this id always fails" }, 500);
      }
      if (Math.random() < settings.ERROR_RATE) {
        counted.failed++;
        return c.json({ error: "injected failure" }, 500);
      }
      // A caller that timed out never sees this 201: counting it would call delivered
      // what the caller will retry or dead-letter. (Bun aborts the signal on disconnect.)
      // Pending I/O first: a hang-up that came while we waited (or while this process
      // was stopped) shows only once the event loop has polled the socket.
      await delay(1);
      if (c.req.raw.signal.aborted) {
        counted.abandoned++;
        return c.json({ error: "the caller had gone" }, 408); // nobody reads it
      }
      counted.succeeded++;
      // A call still running when another with its key did the work (a redelivery that
      // overtook a slow call) is answered the same, but does nothing more.
      if (key !== undefined && doneKeys.has(key)) {
        counted.deduplicated++;
      } else {
        if (key !== undefined) doneKeys.add(key);
        counted.sideEffects++;
        if (effectIds.has(id)) counted.repeatedSideEffects++;
        else effectIds.add(id);
      }
      if (counted === stats) {
        succeededIds.push(id);
        const now = Date.now();
        if (createdAt !== undefined) latenciesMs.push(now - createdAt);
        const second = Math.floor((now - since) / 1_000);
        timeline[second] = (timeline[second] ?? 0) + 1;
      }
      return c.json({ ok: true, id, padding }, 201);
    } finally {
      counted.inFlight--;
    }
  });

  app.get("/stats", (c) =>
    c.json({ ...stats, distinctIds: seenIds.size, distinctSucceeded: new Set(succeededIds).size }),
  );
  app.get("/ids", (c) => c.json({ ids: [...seenIds] }));
  app.get("/succeeded", (c) => c.json({ ids: succeededIds }));
  app.get("/latency", (c) => c.json(percentiles(latenciesMs)));
  app.get("/timeline", (c) => c.json({ perSecond: Array.from(timeline, (n) => n ?? 0) }));
  app.get("/failing", (c) => c.json({ answers: failing }));
  app.post("/reset", (c) => {
    stats = emptyStats();
    failing = [];
    seenIds = new Set();
    effectIds = new Set();
    doneKeys = new Set();
    succeededIds = [];
    latenciesMs = [];
    timeline = [];
    since = Date.now();
    return c.json({ ok: true });
  });
  app.get("/health", (c) => c.json({ ok: true }));
  return app;
}

async function main() {
  const settings = loadSettings(settingsShape);
  const app = createApp(settings);
  const server = await listen(app.fetch, settings.HOST, settings.PORT);
  // Tests and the demo wait for this exact line to learn the port.
  console.log(
    `mock-api listening on http://${settings.HOST}:${server.port} (${runtime()}, latency ${settings.LATENCY_MS}+${settings.JITTER_MS} ms, error rate ${settings.ERROR_RATE}, hang rate ${settings.HANG_RATE}, capacity ${settings.CAPACITY || "unlimited"})`,
  );
  for (const signal of ["SIGINT", "SIGTERM"] as const) {
    process.once(signal, () => {
      server.close();
      process.exit(0);
    });
  }
}

// ---- Helpers ----

/** The event's id (required) and creation time (optional) from the JSON body. */
async function readEvent(request: Request): Promise<{ id?: string; createdAt?: number }> {
  try {
    const body = (await request.json()) as { id?: unknown; createdAt?: unknown } | null;
    const id = typeof body?.id === "string" && body.id !== "" ? body.id : undefined;
    const created = typeof body?.createdAt === "string" ? Date.parse(body.createdAt) : Number.NaN;
    return { id, createdAt: Number.isNaN(created) ? undefined : created };
  } catch {
    return {};
  }
}

/** Latency percentiles in ms (nearest rank). */
function percentiles(values: number[]) {
  const sorted = [...values].sort((a, b) => a - b);
  const at = (p: number) =>
    sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)] ?? null;
  return {
    count: sorted.length,
    p50: at(50),
    p90: at(90),
    p99: at(99),
    max: sorted.at(-1) ?? null,
  };
}

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

function runtime(): string {
  if ("Bun" in globalThis) return `bun ${process.versions.bun}`;
  if ("Deno" in globalThis) return `deno ${process.versions.deno}`;
  return `node ${process.versions.node}`;
}

type FetchHandler = (request: Request) => Response | Promise<Response>;

interface RuntimeGlobals {
  Bun?: {
    serve(options: { fetch: FetchHandler; hostname: string; port: number; idleTimeout: number }): {
      port: number;
      stop(closeActive?: boolean): void;
    };
  };
  Deno?: {
    serve(
      options: { hostname: string; port: number; onListen?: () => void },
      handler: FetchHandler,
    ): { addr: { port: number }; shutdown(): Promise<void> };
  };
}

/** Serves with each runtime's own HTTP server: Bun.serve, Deno.serve, or node:http. */
async function listen(fetch: FetchHandler, hostname: string, port: number) {
  const { Bun, Deno } = globalThis as RuntimeGlobals;
  if (Bun) {
    // idleTimeout 0: Bun would otherwise cut a hanging call (HANG_MS) after 10 s.
    const server = Bun.serve({ fetch, hostname, port, idleTimeout: 0 });
    return { port: server.port, close: () => server.stop(true) };
  }
  if (Deno) {
    const server = Deno.serve({ hostname, port, onListen: () => {} }, fetch);
    return { port: server.addr.port, close: () => void server.shutdown() };
  }
  return await new Promise<{ port: number; close: () => void }>((resolve) => {
    const server = serveOnNode({ fetch, hostname, port }, (info) =>
      resolve({ port: info.port, close: () => server.close() }),
    );
  });
}

// ---- Settings helpers (each script of this project carries its own, to stand alone) ----

function text(fallback: string, doc: string) {
  return z.string().trim().min(1, { error: "must not be empty" }).default(fallback).describe(doc);
}

function wholeNumber(fallback: number, min: number, max: number, doc: string) {
  const error = `expected a whole number from ${min} to ${max}`;
  return z.coerce
    .number({ error })
    .int({ error })
    .min(min, { error })
    .max(max, { error })
    .default(fallback)
    .describe(doc);
}

function flag(fallback: boolean, doc: string) {
  return z.stringbool({ error: "expected true or false" }).default(fallback).describe(doc);
}

function fraction(fallback: number, doc: string) {
  const error = "expected a number from 0 to 1";
  return z.coerce
    .number({ error })
    .min(0, { error })
    .max(1, { error })
    .default(fallback)
    .describe(doc);
}

/** Reads the settings from the environment; --help lists them; a bad one exits 2. */
function loadSettings<S extends z.ZodRawShape>(shape: S): z.infer<z.ZodObject<S>> {
  if (process.argv.includes("--help") || process.argv.includes("-h")) {
    console.log(`Settings of ${process.argv[1]?.split("/").pop()}, from environment variables:`);
    for (const [name, field] of Object.entries(shape) as [string, z.ZodDefault][]) {
      const fallback = field.def.defaultValue;
      const shown = fallback === "" ? "" : ` [default: ${fallback}]`;
      console.log(`  ${name.padEnd(18)} ${field.description}${shown}`);
    }
    process.exit(0);
  }
  const result = z.object(shape).safeParse(process.env);
  if (result.success) return result.data;
  for (const issue of result.error.issues) {
    const name = String(issue.path[0]);
    console.error(`Bad setting ${name}=${JSON.stringify(process.env[name])}: ${issue.message}`);
  }
  console.error("Run with --help to see every setting.");
  process.exit(2);
}

if (import.meta.main) await main();
