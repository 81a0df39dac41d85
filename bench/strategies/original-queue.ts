/**
 * Strategy 3, the original project's: eachMessage only pushes the message into a queue
 * worked by CONCURRENCY calls at once (async.queue there, consumer-solved.ts's WorkQueue
 * here, without key ordering), pauses the consumer when 2,000 messages wait, and
 * resumes only when the queue has drained (async.queue's `drain`: nothing waiting and
 * nothing running). Offsets: KafkaJS auto commit, as kafka-node's autoCommit did, so a
 * message counts as consumed once it is queued, processed or not.
 */
import type { KafkaMessage } from "kafkajs";
import { WorkQueue } from "../../consumer-solved.ts";
import { startStrategy } from "./common.ts";

const PAUSE_AT = 2_000; // the original's figure

interface Job {
  partition: number;
  key: string | null;
  bytes: number;
  message: KafkaMessage;
}

const strategy = await startStrategy("original-queue");
const { consumer, topic } = strategy;
let paused = false;
let pauses = 0;
let peakQueued = 0;
const queue = new WorkQueue<Job>({
  concurrency: () => strategy.settings.CONCURRENCY,
  keyOrdering: false,
  run: (job) => strategy.handle(job.message.value),
  onSettled: () => {
    if (paused && queue.queued === 0 && queue.inFlight === 0) {
      paused = false;
      consumer.resume([{ topic }]);
    }
  },
});
strategy.describe = () => ({ queued: queue.queued, paused, pauses, peakQueued });

await consumer.run({
  autoCommit: true,
  eachMessage: async ({ partition, message }) => {
    queue.push({ partition, key: null, bytes: message.value?.length ?? 0, message });
    peakQueued = Math.max(peakQueued, queue.queued);
    if (!paused && queue.queued >= PAUSE_AT) {
      paused = true;
      pauses++;
      consumer.pause([{ topic }]);
    }
  },
});
