/**
 * Strategy 1, KafkaJS's default: eachMessage awaits the call, so a partition waits for
 * each call before its next message. And with partitionsConsumedConcurrently at its
 * default of 1, KafkaJS works through the batches of a fetch one after another, so on
 * one broker there is one call in flight in all: at most 1 / latency messages a second.
 */
import { startStrategy } from "./common.ts";

const strategy = await startStrategy("each-message");
await strategy.consumer.run({
  eachMessage: async ({ message }) => strategy.handle(message.value),
});
