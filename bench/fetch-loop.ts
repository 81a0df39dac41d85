/**
 * bench/fetch-loop.ts: the HTTP ceiling, with no Kafka at all. CONCURRENCY workers POST
 * MESSAGES events of PAYLOAD_BYTES to API_URL, one call after another each, and read
 * every answer: what a consumer with that concurrency could reach at best on this
 * runtime, against the same API. Prints one JSON summary line.
 *
 *   API_URL=http://127.0.0.1:3000/users CONCURRENCY=100 bun run bench/fetch-loop.ts
 */
import { numberOption, option } from "./harness.ts";

const url = option("API_URL", "http://127.0.0.1:3000/users");
const concurrency = numberOption("CONCURRENCY", 100);
const messages = numberOption("MESSAGES", 40_000);
const payloadBytes = numberOption("PAYLOAD_BYTES", 1_024);

// The event producer.ts writes, parsed: what a consumer POSTs.
const padding = "x".repeat(Math.max(0, payloadBytes - 120));
const event = (n: number) => ({
  id: `loop-${n}`,
  email: `user_${n}@example.com`,
  username: `user_${n}`,
  createdAt: new Date().toISOString(),
  padding,
});

let next = 0;
let failed = 0;
const worker = async () => {
  while (next < messages) {
    const response = await fetch(url, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify(event(next++)),
    });
    await response.text();
    if (!response.ok) failed++;
  }
};
const started = performance.now();
await Promise.all(Array.from({ length: concurrency }, worker));
const durationMs = performance.now() - started;
console.log(
  JSON.stringify({
    type: "summary",
    script: "fetch-loop",
    processed: messages - failed,
    failed,
    durationMs: Math.round(durationMs),
    ratePerSec: Math.round((messages * 1_000) / durationMs),
  }),
);
