/**
 * Strategy 4: eachBatch with CONCURRENCY calls at once inside each batch and a barrier
 * at its end: the batch's offsets are resolved (and auto-committed by KafkaJS) only
 * once every message of it is processed, then the next batch starts. Memory is bounded
 * by KafkaJS's fetch size; throughput dips at the end of every batch, while its last
 * calls finish and nothing new starts.
 */
import { startStrategy } from "./common.ts";

const strategy = await startStrategy("each-batch");
let batches = 0;
strategy.describe = () => ({ batches });

await strategy.consumer.run({
  eachBatchAutoResolve: false,
  eachBatch: async ({ batch, resolveOffset, heartbeat, isRunning, isStale }) => {
    batches++;
    const messages = batch.messages;
    let next = 0;
    let done = 0;
    const worker = async () => {
      while (next < messages.length && isRunning() && !isStale()) {
        const message = messages[next++];
        if (!message) break;
        await strategy.handle(message.value);
        done++;
        await heartbeat(); // KafkaJS sends one only once heartbeatInterval has passed
      }
    };
    const workers = Math.min(strategy.settings.CONCURRENCY, messages.length);
    await Promise.all(Array.from({ length: workers }, worker));
    // The barrier: resolve the batch only when all of it is processed, so a crash
    // mid-batch redelivers it rather than skipping what was still running.
    if (done === messages.length) resolveOffset(batch.lastOffset());
    await heartbeat();
  },
});
