/**
 * consumer-solved.ts: Kafka consumer back pressure, solved.
 *
 * The same job as consumer-backpressure.ts (one slow HTTP call per message), but only
 * a bounded amount of work is ever let into the process:
 *   - a queue that holds at most HIGH_WATERMARK messages, and at most MAX_BUFFERED_BYTES
 *     of messages taken in and not yet done, queued or in flight;
 *   - at most CONCURRENCY calls in flight, lowered while the API answers 429/503;
 *   - fetching from Kafka pauses when the queue is full and resumes at LOW_WATERMARK,
 *     not only when it is empty, so the queue never runs dry while a resume takes effect;
 *   - an offset is committed only once it and every offset before it in its partition
 *     are processed (auto commit is off), so a crash never skips a message;
 *   - failed calls are retried with backoff and then, like malformed messages, sent to
 *     a dead-letter topic with the reason, so nothing is dropped silently;
 *   - SIGINT/SIGTERM stop fetching, finish the queue within SHUTDOWN_TIMEOUT_MS,
 *     commit and exit 0.
 *
 *   bun run consumer-solved.ts   deno run -A consumer-solved.ts   node consumer-solved.ts
 *   CONCURRENCY=50 HIGH_WATERMARK=5000 bun run consumer-solved.ts     (settings: --help)
 *
 * Start mock-api.ts first and fill the topic with producer.ts. Every 500 ms it prints
 * a status line; at exit, one line of JSON with the summary. The core (watermarks,
 * offset tracking, the work queue, the adaptive limit) is exported for unit tests;
 * the consumer itself runs only when this file is the program.
 */

import v8 from "node:v8";
import { Kafka, type KafkaMessage, logLevel, Partitioners } from "kafkajs";
import { z } from "zod";

// ---- Settings (environment variables; --help lists them) ----
const settingsShape = {
  KAFKA_BROKERS: text("localhost:9092", "comma-separated bootstrap servers"),
  KAFKA_TOPIC: text("CREATE_USER", "topic to consume"),
  KAFKA_GROUP_ID: text("consumer-solved", "consumer group"),
  API_URL: z
    .url({ protocol: /^https?$/, error: "expected an http(s) URL" })
    .default("http://127.0.0.1:3000/users")
    .describe("where each message is POSTed (mock-api.ts)"),
  CONCURRENCY: wholeNumber(
    200,
    1,
    10_000,
    "HTTP calls in flight at most (with a 1 s API: 200 msg/s)",
  ),
  HIGH_WATERMARK: wholeNumber(2_000, 1, 10_000_000, "queued messages at which fetching pauses"),
  LOW_WATERMARK: wholeNumber(
    1_000,
    0,
    10_000_000,
    "queued messages at which fetching resumes (below HIGH_WATERMARK)",
  ),
  MAX_BUFFERED_BYTES: wholeNumber(
    16 * 2 ** 20,
    1,
    2 ** 40,
    "bytes of messages taken in and not yet done (queued or in flight) at which fetching pauses, whatever the count",
  ),
  MAX_UNCOMMITTED: wholeNumber(
    10_000,
    1,
    100_000_000,
    "messages taken but not yet committable (behind an unfinished one) at which fetching pauses: bounds redelivery after a crash",
  ),
  COMMIT_INTERVAL_MS: wholeNumber(
    1_000,
    10,
    3_600_000,
    "how often processed offsets are committed",
  ),
  FETCH_MAX_WAIT_MS: wholeNumber(
    100,
    1,
    60_000,
    "KafkaJS maxWaitTimeInMs: how long a fetch waits for data, and how long KafkaJS sleeps while paused, so how late a resume can take effect",
  ),
  REQUEST_TIMEOUT_MS: wholeNumber(
    10_000,
    1,
    3_600_000,
    "a call that has not answered by then counts as failed",
  ),
  MAX_RETRIES: wholeNumber(
    5,
    0,
    1_000,
    "retries of a failed call before the message is dead-lettered",
  ),
  RETRY_BASE_MS: wholeNumber(
    200,
    1,
    3_600_000,
    "first retry delay; doubles each retry, with jitter",
  ),
  RETRY_MAX_MS: wholeNumber(10_000, 1, 3_600_000, "longest retry delay, Retry-After included"),
  API_UNREACHABLE_MS: wholeNumber(
    15_000,
    100,
    3_600_000,
    "exit 4 when the API has given no answer at all (refused, timed out) for this long",
  ),
  DLQ_TOPIC: z.string().trim().default("").describe("dead-letter topic (empty: <KAFKA_TOPIC>.dlq)"),
  KEY_ORDERING: flag(false, "process messages with the same key one at a time, in offset order"),
  SHUTDOWN_TIMEOUT_MS: wholeNumber(
    10_000,
    0,
    3_600_000,
    "on SIGINT/SIGTERM, time to finish queued work before abandoning it",
  ),
  FROM_BEGINNING: flag(true, "start at the oldest message when the group has no committed offset"),
  STOP_AT_END: flag(
    false,
    "exit 0 once everything that was in the topic at start is processed and committed",
  ),
  MEMORY_LIMIT_MB: wholeNumber(
    256,
    0,
    1_000_000,
    "exit 3 when resident memory (RSS) passes this, as a pod is killed at its limit (0: off)",
  ),
  STATUS_INTERVAL_MS: wholeNumber(500, 50, 3_600_000, "how often to print the status line"),
  STATUS_FORMAT: choice(
    ["text", "json"],
    "text",
    "status lines as text for people or JSON for tools",
  ),
};

type Settings = z.infer<z.ZodObject<typeof settingsShape>>;

const checkSettings = (s: Settings): [keyof Settings, string] | undefined =>
  s.LOW_WATERMARK >= s.HIGH_WATERMARK
    ? ["LOW_WATERMARK", `must be below HIGH_WATERMARK (${s.HIGH_WATERMARK})`]
    : undefined;

const EXIT_MEMORY_LIMIT = 3; // the same code in every consumer: "killed" at the memory ceiling
const EXIT_API_UNREACHABLE = 4;

// ---- Main flow ----
async function main() {
  const settings = loadSettings(settingsShape, checkSettings);
  const topic = settings.KAFKA_TOPIC;
  const dlqTopic = settings.DLQ_TOPIC || `${topic}.dlq`;
  const kafka = new Kafka({
    clientId: "consumer-solved",
    brokers: settings.KAFKA_BROKERS.split(","),
    logLevel: logLevel.WARN,
    connectionTimeout: 3_000,
    retry: { retries: 5, maxRetryTime: 5_000 },
  });
  const consumer = kafka.consumer({
    groupId: settings.KAFKA_GROUP_ID,
    maxWaitTimeInMs: settings.FETCH_MAX_WAIT_MS,
  });
  // The default partitioner, named so KafkaJS does not warn that its default changed in 2.0.
  const dlqProducer = kafka.producer({ createPartitioner: Partitioners.DefaultPartitioner });
  const endAtStart = await connect(kafka, consumer, dlqProducer, settings, dlqTopic);

  const stats = newStats();
  const memory = watchMemory(settings.MEMORY_LIMIT_MB);
  adviseOnHeap(settings.MEMORY_LIMIT_MB);
  adviseOnBunConnections(settings.CONCURRENCY);
  const tracker = new OffsetTracker();
  const limit = new AdaptiveLimit(settings.CONCURRENCY);
  const api = new ApiHealth(settings.API_UNREACHABLE_MS);
  const shutdown = new AbortController(); // aborts waits and calls once the deadline passes
  const watermarks = new Watermarks(
    {
      messages: settings.HIGH_WATERMARK,
      bytes: settings.MAX_BUFFERED_BYTES,
      uncommitted: settings.MAX_UNCOMMITTED,
    },
    settings.LOW_WATERMARK / settings.HIGH_WATERMARK,
  );
  const queue = new WorkQueue<Job>({
    concurrency: () => limit.current,
    keyOrdering: settings.KEY_ORDERING,
    run: (job) => handle(job),
    onSettled: () => {
      applyFlow();
      checkEnd();
    },
  });
  let assigned = new Set<number>(); // partitions this member owns now
  let startAt: Map<number, number> | undefined; // STOP_AT_END: where each started
  let stopping = false;

  // 1. Admit: eachMessage only puts the message in the queue and returns, so KafkaJS
  //    keeps heartbeating; the queue, not KafkaJS, decides how much work is open.
  const admit = async (partition: number, message: KafkaMessage) => {
    const bytes = (message.value?.length ?? 0) + (message.key?.length ?? 0);
    // Rare: we pause as soon as the next message might not fit. But KafkaJS hands over
    // the first message of each further batch of the same fetch before it looks at the
    // pause, and a message can be bigger than the last: wait for room (paused, so
    // KafkaJS fetches nothing meanwhile) rather than go over the cap.
    while (!watermarks.hasRoom(load(), bytes)) {
      applyFlow(bytes);
      await queue.settled();
    }
    if (stopping || !assigned.has(partition)) return; // revoked while waiting
    const offset = Number(message.offset);
    const epoch = tracker.track(partition, offset);
    if (epoch === undefined) {
      stats.redelivered++; // already queued, in flight or done: KafkaJS re-fetched it
      return;
    }
    queue.push({ partition, offset, epoch, key: message.key?.toString() ?? null, bytes, message });
    stats.peakQueued = Math.max(stats.peakQueued, queue.queued);
    stats.peakBufferedBytes = Math.max(stats.peakBufferedBytes, queue.bytes);
    applyFlow(bytes);
  };

  // 2. Process: at most `limit.current` calls run; each ends processed or dead-lettered.
  const handle = async (job: Job) => {
    if (shutdown.signal.aborted) throw shutdown.signal.reason; // past the shutdown deadline
    const outcome = await processMessage(job, {
      settings,
      limit,
      api,
      stats,
      signal: shutdown.signal,
    });
    if (outcome.deadLetter) {
      await deadLetter(
        dlqProducer,
        dlqTopic,
        topic,
        settings.KAFKA_GROUP_ID,
        job,
        outcome.deadLetter,
        shutdown.signal,
      );
      stats.deadLettered++;
      if (outcome.malformed) stats.malformed++;
    } else {
      stats.processed++;
    }
    tracker.complete(job.partition, job.offset, job.epoch);
  };

  // 3. Pause at the high watermark, resume at the low one (hysteresis).
  const load = (): Load => ({
    messages: queue.queued,
    bytes: queue.bytes,
    uncommitted: tracker.uncommitted,
  });
  /** `nextBytes`: the size the next message is likely to have (the last one's). */
  const applyFlow = (nextBytes = 0) => {
    if (stopping) return;
    const change = watermarks.update(load(), nextBytes);
    if (change === "pause") {
      consumer.pause([{ topic }]);
      stats.pauses++;
    } else if (change === "resume") {
      consumer.resume([{ topic }]);
    }
  };

  // 4. Commit, per partition, the offset after the longest processed prefix.
  let committing: Promise<void> = Promise.resolve();
  const commit = () => {
    committing = committing.then(async () => {
      const offsets = tracker.committable().filter(({ partition }) => assigned.has(partition));
      if (offsets.length === 0) return;
      try {
        await consumer.commitOffsets(
          offsets.map(({ partition, offset }) => ({ topic, partition, offset: String(offset) })),
        );
      } catch (error) {
        // A rebalance or a broker restart: keep the offsets and try again next time.
        stats.commitErrors++;
        stats.lastCommitError = (error as Error).message;
      }
    });
    return committing;
  };
  const commitTimer = setInterval(commit, settings.COMMIT_INTERVAL_MS);
  // Only the broker's answer counts: while KafkaJS restarts after a crash (a broker
  // restart, say), commitOffsets resolves without committing anything.
  consumer.on(consumer.events.COMMIT_OFFSETS, ({ payload }) => {
    for (const committed of payload.topics) {
      if (committed.topic !== topic) continue;
      for (const { partition, offset } of committed.partitions) {
        tracker.markCommitted(partition, Number(offset));
      }
    }
    checkEnd();
  });

  // 5. Rebalances: commit what is done while we still own it, then forget the
  //    partitions we lost: their queued messages are dropped, never committed.
  consumer.on(consumer.events.REBALANCING, () => void commit());
  consumer.on(consumer.events.GROUP_JOIN, ({ payload }) => {
    const now = new Set(payload.memberAssignment[topic] ?? []);
    for (const partition of assigned) {
      if (now.has(partition)) continue;
      stats.droppedOnRevoke += queue.dropPartition(partition);
      tracker.revoke(partition);
    }
    assigned = now;
    // KafkaJS forgets pauses when it restarts the consumer after a crash.
    if (watermarks.paused) consumer.pause([{ topic }]);
    if (endAtStart) {
      startAt = undefined; // until the new partitions' starts are known, not caught up
      findStarts(now);
    }
  });
  // STOP_AT_END: where each assigned partition started. Right after a (re)join the
  // broker may still be away: try again rather than crash on the rejection.
  const findStarts = (partitions: Set<number>) => {
    startOffsets(kafka, settings.KAFKA_GROUP_ID, topic, settings.FROM_BEGINNING).then(
      (starts) => {
        if (partitions !== assigned) return; // a later join has its own
        startAt = new Map([...partitions].map((p) => [p, starts.get(p) ?? 0]));
        checkEnd();
      },
      (error: Error) => {
        console.error(`reading the start offsets failed (${error.message}); trying again`);
        setTimeout(() => partitions === assigned && !stopping && findStarts(partitions), 1_000);
      },
    );
  };
  consumer.on(consumer.events.CRASH, ({ payload }) => {
    if (!payload.restart) void stop(`Kafka consumer crashed: ${payload.error.message}`, 1);
  });

  // STOP_AT_END: done when every assigned partition is processed and committed up to
  // where the topic ended when we started. Processed there: commit now, not at the next
  // tick; committed there (the broker said so): stop.
  const reached = (offsetOf: (partition: number) => number | undefined) =>
    endAtStart !== undefined &&
    startAt !== undefined &&
    [...startAt].every(
      ([partition, start]) =>
        Math.max(start, offsetOf(partition) ?? 0) >= (endAtStart.get(partition) ?? 0),
    );
  const checkEnd = () => {
    if (stopping) return;
    if (reached((partition) => tracker.committed(partition))) {
      void stop("caught up with the end of the topic", 0);
    } else if (reached((partition) => tracker.position(partition))) {
      void commit();
    }
  };

  // Status every STATUS_INTERVAL_MS; the memory ceiling and the API watchdog.
  const status = () => ({
    type: "status",
    ...stats.rates(),
    queued: queue.queued,
    bufferedMb: round(queue.bytes / 2 ** 20, 1),
    inFlight: queue.inFlight,
    limit: limit.current,
    paused: watermarks.paused,
    partitions: [...assigned].sort((a, b) => a - b), // this member's share of the group
    uncommitted: tracker.uncommitted,
    awaitingCommit: tracker.awaitingCommit,
    deadLettered: stats.deadLettered,
    malformed: stats.malformed,
    retries: stats.retries,
    throttled: stats.throttled,
    ...memory.figures(),
  });
  const printStatus = () => {
    const s = status();
    console.log(
      settings.STATUS_FORMAT === "json"
        ? JSON.stringify(s)
        : `[solved] ${s.elapsedS.toFixed(1)}s processed ${fmt(s.processed)} (${fmt(s.ratePerSec)}/s, ${s.msPerMessage ?? "-"} ms/msg) queued ${fmt(s.queued)} in flight ${s.inFlight}/${s.limit} (${s.bufferedMb} MB) paused ${s.paused ? "yes" : "no"} uncommitted ${fmt(s.uncommitted)} (+${fmt(s.awaitingCommit)} awaiting commit) dlq ${s.deadLettered} (malformed ${s.malformed}) retries ${s.retries} throttled ${s.throttled} | ${memory.describe()}`,
    );
  };
  const statusTimer = setInterval(() => {
    printStatus();
    const silence = api.unreachableFor();
    if (silence !== undefined) {
      console.error(
        `The API at ${settings.API_URL} has not answered for ${Math.round(silence / 1_000)} s (last error: ${api.lastError}). Giving up: what is processed gets committed, the rest will be redelivered.`,
      );
      // No grace period: the calls in flight go to an API that does not answer, and
      // would only keep retrying until SHUTDOWN_TIMEOUT_MS.
      void stop("API unreachable", EXIT_API_UNREACHABLE, 0);
    }
  }, settings.STATUS_INTERVAL_MS);
  memory.onExceeded((figures) => {
    console.log(
      `MEMORY LIMIT EXCEEDED: rss ${figures.rssMb} MB > ${settings.MEMORY_LIMIT_MB} MB (heap ${figures.heapMb} MB); exiting with code ${EXIT_MEMORY_LIMIT}, as a pod would be killed`,
    );
    exitNow("memory limit exceeded", EXIT_MEMORY_LIMIT);
  });
  for (const signal of ["SIGINT", "SIGTERM"] as const) {
    process.once(signal, () => void stop(`stopped by ${signal}`, 0));
  }

  await consumer.run({
    autoCommit: false, // KafkaJS would commit messages that are only queued
    eachMessage: async ({ partition, message }) => admit(partition, message),
  });

  // ---- Shutdown ----

  /** Stop fetching, finish the queue within the deadline, commit, disconnect, exit. */
  async function stop(reason: string, exitCode: number, graceMs = settings.SHUTDOWN_TIMEOUT_MS) {
    if (stopping) return;
    stopping = true;
    try {
      consumer.pause([{ topic }]);
    } catch {
      // not running yet: nothing to pause
    }
    const deadline = setTimeout(() => shutdown.abort(), graceMs);
    const unfinishedBefore = queue.queued + queue.inFlight;
    await queue.drained();
    clearTimeout(deadline);
    stats.abandoned = shutdown.signal.aborted ? tracker.uncommitted : 0;
    clearInterval(commitTimer);
    await commit();
    await consumer.disconnect().catch(() => {});
    await dlqProducer.disconnect().catch(() => {});
    const notCommitted = tracker.awaitingCommit; // the last commit failed: say so
    console.error(
      `${reason}: ${unfinishedBefore} messages were queued or in flight; ${stats.abandoned} left unfinished${notCommitted ? `; ${notCommitted} processed but not committed (${stats.lastCommitError || "the broker did not confirm"}), to be delivered again` : ""}`,
    );
    exitNow(reason, exitCode);
  }

  function exitNow(exitReason: string, exitCode: number) {
    clearInterval(statusTimer);
    memory.stop();
    printStatus();
    console.log(
      JSON.stringify({
        type: "summary",
        script: "consumer-solved",
        runtime: runtime(),
        ...stats.rates(),
        deadLettered: stats.deadLettered,
        malformed: stats.malformed,
        retries: stats.retries,
        throttled: stats.throttled,
        limit: limit.current, // the concurrency limit at the end, after AIMD
        redelivered: stats.redelivered,
        droppedOnRevoke: stats.droppedOnRevoke,
        abandoned: stats.abandoned,
        pauses: stats.pauses,
        peakQueued: stats.peakQueued,
        peakBufferedMb: round(stats.peakBufferedBytes / 2 ** 20, 1),
        commitErrors: stats.commitErrors,
        committed: Object.fromEntries(tracker.committedOffsets()),
        peakRssMb: memory.peakRssMb(),
        peakHeapMb: memory.peakHeapMb(),
        memoryLimitMb: settings.MEMORY_LIMIT_MB,
        memoryLimitExceeded: exitCode === EXIT_MEMORY_LIMIT,
        exitReason,
        exitCode,
      }),
    );
    process.exit(exitCode);
  }
}

// ---- Processing one message ----

interface Job {
  partition: number;
  offset: number;
  epoch: number;
  key: string | null;
  bytes: number;
  message: KafkaMessage;
}

interface Outcome {
  deadLetter?: { reason: string; attempts: number };
  malformed?: boolean;
}

interface ProcessContext {
  settings: Settings;
  limit: AdaptiveLimit;
  api: ApiHealth;
  stats: Stats;
  signal: AbortSignal;
}

/**
 * Validates the message and POSTs it until the API takes it. 429/503 and refused
 * connections are the API asking us to slow down (or being down): wait and retry,
 * without using up retries. 5xx, 408 and timeouts use up retries, then dead-letter. Other 4xx mean
 * this message will never be accepted: dead-letter at once.
 */
async function processMessage(job: Job, context: ProcessContext): Promise<Outcome> {
  const { settings, limit, api, stats, signal } = context;
  const parsed = parseEvent(job.message.value);
  if ("problem" in parsed)
    return { deadLetter: { reason: parsed.problem, attempts: 0 }, malformed: true };
  const body = JSON.stringify(parsed.event);

  for (let attempt = 1, failures = 0; ; attempt++) {
    const startedAt = performance.now();
    const answer = await callApi(settings.API_URL, body, settings.REQUEST_TIMEOUT_MS, signal);
    api.record(answer);
    if (answer.kind === "ok") {
      limit.onSuccess();
      return {};
    }
    if (answer.kind === "overloaded" || answer.kind === "unreachable") {
      if (answer.kind === "overloaded") {
        limit.onOverload(startedAt);
        stats.throttled++;
      }
      const wait = throttledDelayMs(
        attempt,
        answer.retryAfterMs,
        settings.RETRY_BASE_MS,
        settings.RETRY_MAX_MS,
      );
      await sleep(wait, signal);
      continue;
    }
    if (answer.kind === "rejected") {
      return { deadLetter: { reason: answer.reason, attempts: attempt } };
    }
    failures++;
    if (failures > settings.MAX_RETRIES) {
      return {
        deadLetter: { reason: `${answer.reason} (${failures} failed attempts)`, attempts: attempt },
      };
    }
    stats.retries++;
    await sleep(backoffMs(failures, settings.RETRY_BASE_MS, settings.RETRY_MAX_MS), signal);
  }
}

type Answer =
  | { kind: "ok" }
  | { kind: "overloaded"; reason: string; retryAfterMs?: number } // 429, 503
  | { kind: "failed"; reason: string } // 5xx, 408
  | { kind: "timeout"; reason: string } // no answer within REQUEST_TIMEOUT_MS
  | { kind: "rejected"; reason: string } // other 4xx: this message is the problem
  | { kind: "unreachable"; reason: string; retryAfterMs?: undefined }; // no HTTP answer at all

export async function callApi(
  url: string,
  body: string,
  timeoutMs: number,
  shutdown: AbortSignal,
): Promise<Answer> {
  // One controller per call, cleaned up when the call ends: a timer or a listener on
  // the long-lived shutdown signal left behind per call would pile up with the calls.
  const call = new AbortController();
  const timer = setTimeout(
    () => call.abort(new DOMException("timeout", "TimeoutError")),
    timeoutMs,
  );
  const onShutdown = () => call.abort(shutdown.reason);
  shutdown.addEventListener("abort", onShutdown, { once: true });
  let response: Response;
  let text: string;
  try {
    response = await fetch(url, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body,
      signal: call.signal,
    });
    text = await response.text(); // the whole answer, within the same timeout
  } catch (error) {
    if (shutdown.aborted) throw error;
    if (call.signal.aborted) return { kind: "timeout", reason: `no answer within ${timeoutMs} ms` };
    const cause = (error as { cause?: { code?: string; message?: string } }).cause;
    return {
      kind: "unreachable",
      reason: `${(error as Error).message}${cause ? ` (${cause.code ?? cause.message})` : ""}`,
    };
  } finally {
    clearTimeout(timer);
    shutdown.removeEventListener("abort", onShutdown);
  }
  const status = response.status;
  if (response.ok) return { kind: "ok" };
  const reason = `HTTP ${status}${text ? `: ${text.slice(0, 200)}` : ""}`;
  if (status === 429 || status === 503) {
    return {
      kind: "overloaded",
      reason,
      retryAfterMs: retryAfterMs(response.headers.get("retry-after")),
    };
  }
  if (status >= 500 || status === 408) return { kind: "failed", reason };
  return { kind: "rejected", reason };
}

interface UserEvent {
  id: string;
  email: string;
  username: string;
}

/** The event in a message, or what is wrong with it. */
export function parseEvent(value: Buffer | null): { event: UserEvent } | { problem: string } {
  if (value === null) return { problem: "null value (a tombstone or an empty message)" };
  let event: unknown;
  try {
    event = JSON.parse(value.toString("utf8"));
  } catch (error) {
    return { problem: `invalid JSON: ${(error as Error).message}` };
  }
  if (typeof event !== "object" || event === null || Array.isArray(event)) {
    return { problem: "not a JSON object" };
  }
  const missing = ["id", "email", "username"].filter(
    (field) => typeof (event as Record<string, unknown>)[field] !== "string",
  );
  if (missing.length > 0) return { problem: `missing or non-string fields: ${missing.join(", ")}` };
  return { event: event as UserEvent };
}

/** Publishes the message to the dead-letter topic with why and where it came from. */
async function deadLetter(
  producer: ReturnType<Kafka["producer"]>,
  dlqTopic: string,
  sourceTopic: string,
  groupId: string,
  job: Job,
  why: { reason: string; attempts: number },
  signal: AbortSignal,
) {
  const headers = {
    ...job.message.headers,
    "dlq.reason": why.reason,
    "dlq.source.topic": sourceTopic,
    "dlq.source.partition": String(job.partition),
    "dlq.source.offset": String(job.offset),
    "dlq.attempts": String(why.attempts),
    "dlq.consumer.group": groupId,
    "dlq.failed.at": new Date().toISOString(),
  };
  // The offset counts as processed only once the dead letter is safely written.
  for (let attempt = 1; ; attempt++) {
    try {
      await producer.send({
        topic: dlqTopic,
        acks: -1,
        messages: [{ key: job.message.key, value: job.message.value, headers }],
      });
      return;
    } catch (error) {
      console.error(
        `dead-lettering ${sourceTopic}/${job.partition}@${job.offset} failed: ${(error as Error).message}`,
      );
      await sleep(backoffMs(Math.min(attempt, 10), 200, 10_000), signal);
    }
  }
}

// ---- The core: pure logic, exported and unit-tested without a broker ----

export interface Load {
  messages: number;
  bytes: number;
  uncommitted: number;
}

/**
 * Pause/resume with hysteresis: pause when any measure reaches its high mark; resume
 * only when every measure is back at its low mark (high × lowRatio). Resuming at a low
 * mark rather than at empty keeps work queued while Kafka's resume takes effect.
 */
export class Watermarks {
  paused = false;
  readonly high: Load;
  readonly low: Load;

  constructor(high: Load, lowRatio: number) {
    this.high = high;
    this.low = {
      messages: Math.floor(high.messages * lowRatio),
      bytes: Math.floor(high.bytes * lowRatio),
      uncommitted: Math.floor(high.uncommitted * lowRatio),
    };
  }

  /**
   * The change the load calls for, if any. `nextBytes` is the expected size of the next
   * message: pause already when it would not fit under the byte cap, so the cap is
   * kept by pausing rather than by holding KafkaJS up in eachMessage.
   */
  update(load: Load, nextBytes = 0): "pause" | "resume" | undefined {
    const { high, low } = this;
    if (!this.paused) {
      if (
        load.messages >= high.messages ||
        load.bytes >= high.bytes ||
        load.bytes + nextBytes > high.bytes ||
        load.uncommitted >= high.uncommitted
      ) {
        this.paused = true;
        return "pause";
      }
    } else if (
      load.messages <= low.messages &&
      load.bytes <= low.bytes &&
      load.uncommitted <= low.uncommitted
    ) {
      this.paused = false;
      return "resume";
    }
    return undefined;
  }

  /**
   * Whether one more message of `bytes` fits under the caps. A message bigger than the
   * byte cap still gets in when nothing else is held, or it could never be processed.
   */
  hasRoom(load: Load, bytes: number): boolean {
    if (load.messages >= this.high.messages) return false;
    return load.bytes === 0 || load.bytes + bytes <= this.high.bytes;
  }
}

interface PartitionOffsets {
  epoch: number;
  /** offsets taken, in the order Kafka gave them (ascending), from `head` on */
  taken: number[];
  head: number;
  /** offsets finished but behind an unfinished one */
  finished: Set<number>;
  /** the first offset taken: where a crash before any commit would start again */
  first: number;
  /** the next offset to commit: everything below it is processed */
  position: number | undefined;
  committed: number | undefined;
}

/**
 * Which offset may be committed per partition when messages finish out of order: the
 * lowest unfinished one (Kafka's committed offset means "everything before this is
 * done"). Each partition gets an epoch when first seen; completions carrying an older
 * epoch (from before a revoke) are ignored.
 */
export class OffsetTracker {
  #partitions = new Map<number, PartitionOffsets>();
  #nextEpoch = 1;
  /** taken and not yet committable, over all partitions */
  uncommitted = 0;

  /** Registers a message; returns its epoch, or undefined if this offset is already known. */
  track(partition: number, offset: number): number | undefined {
    let state = this.#partitions.get(partition);
    if (!state) {
      state = {
        epoch: this.#nextEpoch++,
        taken: [],
        head: 0,
        finished: new Set(),
        first: offset,
        position: undefined,
        committed: undefined,
      };
      this.#partitions.set(partition, state);
    }
    const last = state.head < state.taken.length ? state.taken[state.taken.length - 1] : undefined;
    if (
      (last !== undefined && offset <= last) ||
      (state.position !== undefined && offset < state.position)
    ) {
      return undefined;
    }
    state.taken.push(offset);
    this.uncommitted++;
    return state.epoch;
  }

  complete(partition: number, offset: number, epoch: number): void {
    const state = this.#partitions.get(partition);
    if (!state || state.epoch !== epoch) return;
    // Only an offset still held counts: a stray one parked in `finished` would mark that
    // offset done, unprocessed, the day Kafka hands it over.
    const [head, last] = [state.taken[state.head], state.taken[state.taken.length - 1]];
    if (head === undefined || last === undefined || offset < head || offset > last) return;
    if (offset === state.taken[state.head]) {
      // The oldest unfinished one, the common case: no need to park it in the set.
      state.position = offset + 1;
      state.head++;
      this.uncommitted--;
    } else {
      state.finished.add(offset);
    }
    // Advance over the finished prefix; compaction keeps `taken` from growing forever.
    while (
      state.head < state.taken.length &&
      state.finished.has(state.taken[state.head] as number)
    ) {
      const done = state.taken[state.head] as number;
      state.finished.delete(done);
      state.position = done + 1;
      state.head++;
      this.uncommitted--;
    }
    if (state.head > 1024 && state.head * 2 > state.taken.length) {
      state.taken = state.taken.slice(state.head);
      state.head = 0;
    }
  }

  /** Offsets to commit now: partitions whose processed prefix moved past the last commit. */
  committable(): { partition: number; offset: number }[] {
    const result: { partition: number; offset: number }[] = [];
    for (const [partition, state] of this.#partitions) {
      if (state.position !== undefined && state.position !== state.committed) {
        result.push({ partition, offset: state.position });
      }
    }
    return result;
  }

  /**
   * Processed, but behind the last commit: with `uncommitted`, what a crash now would
   * deliver again. Counts offsets, so gaps (compacted topics) make it an over-estimate.
   */
  get awaitingCommit(): number {
    let count = 0;
    for (const state of this.#partitions.values()) {
      if (state.position !== undefined) count += state.position - (state.committed ?? state.first);
    }
    return count;
  }

  markCommitted(partition: number, offset: number): void {
    const state = this.#partitions.get(partition);
    if (state) state.committed = offset;
  }

  /** The next offset to commit in a partition: everything before it is processed. */
  position(partition: number): number | undefined {
    return this.#partitions.get(partition)?.position;
  }

  /** The last offset the broker confirmed committed in a partition. */
  committed(partition: number): number | undefined {
    return this.#partitions.get(partition)?.committed;
  }

  committedOffsets(): Map<number, number> {
    const result = new Map<number, number>();
    for (const [partition, state] of this.#partitions) {
      if (state.committed !== undefined) result.set(partition, state.committed);
    }
    return result;
  }

  /** Forgets a partition we no longer own; its later completions are ignored. */
  revoke(partition: number): void {
    const state = this.#partitions.get(partition);
    if (!state) return;
    this.uncommitted -= state.taken.length - state.head;
    this.#partitions.delete(partition);
  }
}

interface QueueItem {
  partition: number;
  key: string | null;
  bytes: number;
}

export interface WorkQueueOptions<T> {
  /** how many jobs may run at once; read before each start, so it may change */
  concurrency: () => number;
  keyOrdering: boolean;
  run: (job: T) => Promise<void>;
  onSettled?: () => void;
}

/**
 * A FIFO of jobs that runs at most `concurrency()` of them at once. With key ordering,
 * jobs that share a partition and key form a lane: one of them is ready or running,
 * the others wait behind it and run one after another, in the order they came; other
 * keys keep running concurrently. `bytes` counts every job from push until it settles,
 * so a cap on it bounds the messages held in memory, running ones included.
 */
export class WorkQueue<T extends QueueItem> {
  #ready: T[] = [];
  #readyHead = 0;
  #lanes = new Map<string, { running: boolean; waiting: T[] }>();
  #waiting = 0; // jobs waiting in lanes
  #bytes = 0;
  #inFlight = 0;
  #settledWaiters: (() => void)[] = [];
  readonly #options: WorkQueueOptions<T>;

  constructor(options: WorkQueueOptions<T>) {
    this.#options = options;
  }

  /** jobs not started yet */
  get queued(): number {
    return this.#ready.length - this.#readyHead + this.#waiting;
  }

  /** bytes of the jobs queued or running */
  get bytes(): number {
    return this.#bytes;
  }

  get inFlight(): number {
    return this.#inFlight;
  }

  push(job: T): void {
    this.#bytes += job.bytes;
    const lane = this.#laneOf(job);
    if (lane !== undefined) {
      const busy = this.#lanes.get(lane);
      if (busy) {
        busy.waiting.push(job); // its key is taken: wait behind it
        this.#waiting++;
        return;
      }
      this.#lanes.set(lane, { running: false, waiting: [] });
    }
    this.#ready.push(job);
    this.#pump();
  }

  /** Drops the queued (not started) jobs of a partition; returns how many. */
  dropPartition(partition: number): number {
    const before = this.queued;
    const keep = (job: T) => {
      if (job.partition !== partition) return true;
      this.#bytes -= job.bytes;
      return false;
    };
    this.#ready = this.#ready.slice(this.#readyHead).filter(keep);
    this.#readyHead = 0;
    for (const [key, lane] of this.#lanes) {
      if (!key.startsWith(`${partition}\u0000`)) continue;
      this.#waiting -= lane.waiting.length;
      for (const job of lane.waiting) this.#bytes -= job.bytes;
      lane.waiting = [];
      // A lane whose head was only ready has just lost it; one whose head is running
      // stays until that job settles.
      if (!lane.running) this.#lanes.delete(key);
    }
    return before - this.queued;
  }

  /** Resolves the next time a job settles. */
  settled(): Promise<void> {
    return new Promise((resolve) => this.#settledWaiters.push(resolve));
  }

  /** Resolves once nothing is queued or in flight. */
  async drained(): Promise<void> {
    while (this.queued > 0 || this.#inFlight > 0) await this.settled();
  }

  #laneOf(job: T): string | undefined {
    return this.#options.keyOrdering && job.key !== null
      ? `${job.partition}\u0000${job.key}`
      : undefined;
  }

  #pump(): void {
    while (this.#inFlight < this.#options.concurrency() && this.#readyHead < this.#ready.length) {
      const job = this.#ready[this.#readyHead++] as T;
      if (this.#readyHead > 1024 && this.#readyHead * 2 > this.#ready.length) {
        this.#ready = this.#ready.slice(this.#readyHead);
        this.#readyHead = 0;
      }
      const lane = this.#laneOf(job);
      if (lane !== undefined) (this.#lanes.get(lane) as { running: boolean }).running = true;
      this.#inFlight++;
      this.#options
        .run(job)
        .catch(() => {}) // abandoned at shutdown: its offset stays uncommitted
        .finally(() => this.#settle(job));
    }
  }

  #settle(job: T): void {
    this.#inFlight--;
    this.#bytes -= job.bytes;
    const key = this.#laneOf(job);
    const lane = key === undefined ? undefined : this.#lanes.get(key);
    if (key !== undefined && lane) {
      const next = lane.waiting.shift();
      if (next) {
        this.#waiting--;
        lane.running = false;
        this.#ready.push(next);
      } else {
        this.#lanes.delete(key);
      }
    }
    this.#pump();
    const waiters = this.#settledWaiters;
    this.#settledWaiters = [];
    for (const resolve of waiters) resolve();
    this.#options.onSettled?.();
  }
}

/**
 * Additive increase, multiplicative decrease, as TCP does: each success adds 1/limit
 * (so about +1 per round of calls), each overload signal halves the limit, once per
 * round: signals from calls that started before the last cut are ignored.
 */
export class AdaptiveLimit {
  #limit: number;
  #lastCutAt = Number.NEGATIVE_INFINITY;
  readonly max: number;

  constructor(max: number) {
    this.max = max;
    this.#limit = max;
  }

  get current(): number {
    return Math.max(1, Math.floor(this.#limit));
  }

  onSuccess(): void {
    this.#limit = Math.min(this.max, this.#limit + 1 / this.#limit);
  }

  /** `startedAt`: when the overloaded call started (performance.now()). */
  onOverload(startedAt: number, now = performance.now()): void {
    if (startedAt < this.#lastCutAt) return;
    this.#limit = Math.max(1, this.#limit / 2);
    this.#lastCutAt = now;
  }
}

/** Delay before retry number `attempt` (1, 2, …): doubling, capped, with "equal jitter". */
export function backoffMs(
  attempt: number,
  baseMs: number,
  maxMs: number,
  random = Math.random,
): number {
  const ceiling = Math.min(maxMs, baseMs * 2 ** (attempt - 1));
  return ceiling / 2 + random() * (ceiling / 2);
}

/**
 * Wait before calling again after a 429/503 or a refused connection: Retry-After, but
 * never less than our own backoff (a "Retry-After: 0" taken at its word makes every
 * throttled call retry at once, a storm of 429s), and never more than maxMs.
 */
export function throttledDelayMs(
  attempt: number,
  retryAfter: number | undefined,
  baseMs: number,
  maxMs: number,
  random = Math.random,
): number {
  const backoff = backoffMs(Math.min(attempt, 30), baseMs, maxMs, random);
  return Math.min(maxMs, Math.max(retryAfter ?? 0, backoff));
}

/** Retry-After as milliseconds: delta-seconds or an HTTP date; undefined if absent or bad. */
export function retryAfterMs(header: string | null, now = Date.now()): number | undefined {
  if (header === null || header.trim() === "") return undefined;
  const seconds = Number(header);
  if (Number.isFinite(seconds)) return Math.max(0, seconds * 1_000);
  const date = Date.parse(header);
  return Number.isNaN(date) ? undefined : Math.max(0, date - now);
}

/** Notices an API that gives no answer at all (refused or timed out) for too long. */
export class ApiHealth {
  #silentSince: number | undefined;
  lastError = "";
  readonly #limitMs: number;

  constructor(limitMs: number) {
    this.#limitMs = limitMs;
  }

  record(answer: Answer, now = performance.now()): void {
    const silent = answer.kind === "unreachable" || answer.kind === "timeout";
    if (!silent) {
      this.#silentSince = undefined;
      return;
    }
    this.lastError = answer.reason;
    this.#silentSince ??= now;
  }

  /** How long the API has been silent, once that is longer than the limit. */
  unreachableFor(now = performance.now()): number | undefined {
    if (this.#silentSince === undefined) return undefined;
    const silence = now - this.#silentSince;
    return silence > this.#limitMs ? silence : undefined;
  }
}

// ---- Helpers ----

function newStats() {
  const started = performance.now();
  const stats = {
    processed: 0,
    deadLettered: 0,
    malformed: 0,
    retries: 0,
    throttled: 0,
    redelivered: 0,
    droppedOnRevoke: 0,
    abandoned: 0,
    pauses: 0,
    peakQueued: 0,
    peakBufferedBytes: 0,
    commitErrors: 0,
    lastCommitError: "",
    /** elapsed, processed (incl. dead-lettered), rate and ms per message so far */
    rates: () => {
      const seconds = (performance.now() - started) / 1_000;
      const done = stats.processed + stats.deadLettered;
      return {
        elapsedS: round(seconds, 1),
        durationMs: Math.round(seconds * 1_000),
        processed: stats.processed,
        ratePerSec: Math.round(done / seconds),
        msPerMessage: done ? round((seconds * 1_000) / done, 3) : null,
      };
    },
  };
  return stats;
}

type Stats = ReturnType<typeof newStats>;

/** Connects everything; with STOP_AT_END, returns where each partition ended at start. */
async function connect(
  kafka: Kafka,
  consumer: ReturnType<Kafka["consumer"]>,
  producer: ReturnType<Kafka["producer"]>,
  settings: Settings,
  dlqTopic: string,
): Promise<Map<number, number> | undefined> {
  const admin = kafka.admin();
  try {
    await admin.connect();
    await Promise.all([consumer.connect(), producer.connect()]);
    // Create the dead-letter topic up front; where topics cannot be created, it must exist.
    await admin
      .createTopics({ topics: [{ topic: dlqTopic }], waitForLeaders: true })
      .catch((error: Error) => {
        console.error(`could not create ${dlqTopic} (${error.message}); it must exist already`);
      });
    await consumer.subscribe({
      topics: [settings.KAFKA_TOPIC],
      fromBeginning: settings.FROM_BEGINNING,
    });
    if (!settings.STOP_AT_END) return undefined;
    const offsets = await admin.fetchTopicOffsets(settings.KAFKA_TOPIC);
    return new Map(offsets.map((p) => [p.partition, Number(p.high)]));
  } catch (error) {
    console.error(`Kafka is unreachable at ${settings.KAFKA_BROKERS}: ${(error as Error).message}`);
    process.exit(1);
  } finally {
    await admin.disconnect();
  }
}

/** The offset each partition starts from: committed, else the oldest (or newest). */
async function startOffsets(
  kafka: Kafka,
  groupId: string,
  topic: string,
  fromBeginning: boolean,
): Promise<Map<number, number>> {
  const admin = kafka.admin();
  try {
    await admin.connect();
    const [committed] = await admin.fetchOffsets({ groupId, topics: [topic] });
    const bounds = await admin.fetchTopicOffsets(topic);
    return new Map(
      bounds.map((p) => {
        const offset = Number(
          committed?.partitions.find((c) => c.partition === p.partition)?.offset ?? -1,
        );
        return [p.partition, offset >= 0 ? offset : Number(fromBeginning ? p.low : p.high)];
      }),
    );
  } finally {
    await admin.disconnect();
  }
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal.aborted) return reject(signal.reason);
    const timer = setTimeout(() => {
      signal.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal.reason);
    };
    signal.addEventListener("abort", onAbort, { once: true });
  });
}

interface MemoryFigures {
  rssMb: number;
  heapMb: number;
  maxRssMb: number;
  maxHeapMb: number;
}

/**
 * Watches resident memory (RSS: what a container's limit counts) and heap every
 * 100 ms, keeps the peaks, and calls back once when RSS passes the ceiling.
 */
function watchMemory(limitMb: number) {
  let current = { rssMb: 0, heapMb: 0 };
  let maxRssMb = 0;
  let maxHeapMb = 0;
  let exceeded: ((figures: MemoryFigures) => void) | undefined;
  const sample = () => {
    const { rss, heapUsed } = process.memoryUsage();
    current = { rssMb: Math.round(rss / 2 ** 20), heapMb: Math.round(heapUsed / 2 ** 20) };
    maxRssMb = Math.max(maxRssMb, current.rssMb);
    maxHeapMb = Math.max(maxHeapMb, current.heapMb);
    if (limitMb > 0 && current.rssMb > limitMb && exceeded) {
      const callback = exceeded;
      exceeded = undefined;
      callback(figures());
    }
  };
  const figures = (): MemoryFigures => ({ ...current, maxRssMb, maxHeapMb });
  sample();
  const timer = setInterval(sample, 100);
  return {
    figures,
    peakRssMb: () => maxRssMb,
    peakHeapMb: () => maxHeapMb,
    onExceeded: (callback: (figures: MemoryFigures) => void) => {
      exceeded = callback;
    },
    describe: () =>
      `rss ${current.rssMb} MB (max ${maxRssMb}${limitMb ? ` / limit ${limitMb}` : ""}) heap ${current.heapMb} MB (max ${maxHeapMb})`,
    stop: () => clearInterval(timer),
  };
}

/**
 * V8 (Node, Deno) sizes its heap from the machine, not from MEMORY_LIMIT_MB, and on a
 * large machine grows it far beyond what it needs. In a container Node sizes it from
 * the limit itself (Deno does not); elsewhere it has to be told.
 */
function adviseOnHeap(limitMb: number) {
  if (limitMb === 0 || "Bun" in globalThis) return;
  const heapLimitMb = Math.round(v8.getHeapStatistics().heap_size_limit / 2 ** 20);
  if (heapLimitMb <= 2 * limitMb) return;
  const flags = [`--max-old-space-size=${limitMb}`, "--max-semi-space-size=1"];
  console.error(
    `note: the heap may grow to ${heapLimitMb} MB here, far above MEMORY_LIMIT_MB=${limitMb}. To behave as in a pod with that limit, start with NODE_OPTIONS="${flags.join(" ")}" (Node) or DENO_V8_FLAGS=${flags.join(",")} (Deno).`,
  );
}

/**
 * Bun's fetch opens at most 256 connections (BUN_CONFIG_MAX_HTTP_REQUESTS) and queues
 * further calls inside the runtime, where their timeout is already running.
 */
function adviseOnBunConnections(concurrency: number) {
  if (!("Bun" in globalThis)) return;
  const connections = Number(process.env.BUN_CONFIG_MAX_HTTP_REQUESTS || 256);
  if (concurrency <= connections) return;
  console.error(
    `note: CONCURRENCY=${concurrency} but Bun's fetch opens at most ${connections} connections; the rest would wait inside Bun and time out. Start with BUN_CONFIG_MAX_HTTP_REQUESTS=${concurrency}.`,
  );
}

function runtime(): string {
  if ("Bun" in globalThis) return `bun ${process.versions.bun}`;
  if ("Deno" in globalThis) return `deno ${process.versions.deno}`;
  return `node ${process.versions.node}`;
}

function fmt(n: number): string {
  return n.toLocaleString("en-US");
}

function round(n: number, digits: number): number {
  return Number(n.toFixed(digits));
}

// ---- Settings helpers (each script of this project carries its own, to stand alone;
// exported here for the benchmark's strategy consumers) ----

export function text(fallback: string, doc: string) {
  return z.string().trim().min(1, { error: "must not be empty" }).default(fallback).describe(doc);
}

export function wholeNumber(fallback: number, min: number, max: number, doc: string) {
  const error = `expected a whole number from ${min} to ${max}`;
  return z.coerce
    .number({ error })
    .int({ error })
    .min(min, { error })
    .max(max, { error })
    .default(fallback)
    .describe(doc);
}

export function flag(fallback: boolean, doc: string) {
  return z.stringbool({ error: "expected true or false" }).default(fallback).describe(doc);
}

function choice<const T extends readonly [string, ...string[]]>(
  values: T,
  fallback: T[number],
  doc: string,
) {
  return z
    .enum(values, { error: `expected one of ${values.join(", ")}` })
    .default(fallback)
    .describe(doc);
}

/** Reads the settings from the environment; --help lists them; a bad one exits 2. */
export function loadSettings<S extends z.ZodRawShape>(
  shape: S,
  check?: (settings: z.infer<z.ZodObject<S>>) => [string, string] | undefined,
): z.infer<z.ZodObject<S>> {
  if (process.argv.includes("--help") || process.argv.includes("-h")) {
    console.log(`Settings of ${process.argv[1]?.split("/").pop()}, from environment variables:`);
    for (const [name, field] of Object.entries(shape) as [string, z.ZodDefault][]) {
      const fallback = field.def.defaultValue;
      const shown = fallback === "" ? "" : ` [default: ${fallback}]`;
      console.log(`  ${name.padEnd(20)} ${field.description}${shown}`);
    }
    console.log(
      `Exit codes: 0 done or stopped cleanly, 1 Kafka unreachable or failed, 2 bad setting, ${EXIT_MEMORY_LIMIT} memory limit exceeded, ${EXIT_API_UNREACHABLE} API unreachable.`,
    );
    process.exit(0);
  }
  const result = z.object(shape).safeParse(process.env);
  const problems = result.success
    ? [check?.(result.data)].filter((problem) => problem !== undefined)
    : result.error.issues.map((issue): [string, string] => [String(issue.path[0]), issue.message]);
  if (result.success && problems.length === 0) return result.data;
  for (const [name, message] of problems) {
    console.error(`Bad setting ${name}=${JSON.stringify(process.env[name])}: ${message}`);
  }
  console.error("Run with --help to see every setting.");
  process.exit(2);
}

if (import.meta.main) await main();
