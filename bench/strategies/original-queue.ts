/**
 * Strategy 3, the original project's: eachMessage only pushes the message into a queue
 * worked by CONCURRENCY calls at once (async.queue there, the same in a few lines here),
 * pauses the consumer when 2,000 messages wait, and resumes only when the queue has drained (async.queue's `drain`: nothing waiting and
 * nothing running). Offsets: KafkaJS auto commit, as kafka-node's autoCommit did, so a
 * message counts as consumed once it is queued, processed or not.
 */
import type { KafkaMessage } from "kafkajs";
import { startStrategy } from "./common.ts";

const PAUSE_AT = 2_000; // the original's figure

const strategy = await startStrategy("original-queue");
const { consumer, topic } = strategy;
let paused = false;
let pauses = 0;
let peakQueued = 0;
// async.queue's behaviour in a few lines: a FIFO worked by CONCURRENCY calls at once.
const waiting: KafkaMessage[] = [];
let running = 0;
function work() {
  while (running < strategy.settings.CONCURRENCY && waiting.length > 0) {
    const message = waiting.shift() as KafkaMessage;
    running++;
    void strategy.handle(message.value).finally(() => {
      running--;
      work();
      if (paused && waiting.length === 0 && running === 0) {
        paused = false; // the original resumed only on `drain`
        consumer.resume([{ topic }]);
      }
    });
  }
}
strategy.describe = () => ({ queued: waiting.length, paused, pauses, peakQueued });

await consumer.run({
  autoCommit: true,
  eachMessage: async ({ message }) => {
    waiting.push(message);
    work();
    peakQueued = Math.max(peakQueued, waiting.length);
    if (!paused && waiting.length >= PAUSE_AT) {
      paused = true;
      pauses++;
      consumer.pause([{ topic }]);
    }
  },
});
