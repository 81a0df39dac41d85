/**
 * Strategy 2: eachMessage awaited as in strategy 1, but partitionsConsumedConcurrently
 * set to the topic's partition count, so each partition has its call in flight: at
 * most partitions / latency messages a second, however many messages wait.
 */
import { startStrategy } from "./common.ts";

const strategy = await startStrategy("partitions-concurrently");
await strategy.consumer.run({
  partitionsConsumedConcurrently: strategy.partitions,
  eachMessage: async ({ message }) => strategy.handle(message.value),
});
