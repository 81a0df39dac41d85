// Readiness: a broker is up when it answers a metadata request, not after a sleep.
import { Kafka, logLevel } from "kafkajs";
import { hideTimeoutNegativeWarning } from "./quiet-kafkajs.ts";

export interface WaitOptions {
  timeoutMs: number;
  /** checked between attempts; a returned reason stops the wait at once */
  abortIf?: () => string | undefined;
}

/** Resolves once `brokers` answers DescribeCluster; rejects with the address on timeout. */
export async function waitForBroker(brokers: string, { timeoutMs, abortIf }: WaitOptions) {
  const deadline = Date.now() + timeoutMs;
  hideTimeoutNegativeWarning();
  const kafka = new Kafka({
    clientId: "kafka-ready",
    brokers: brokers.split(","),
    logLevel: logLevel.NOTHING,
    connectionTimeout: 1_000,
    requestTimeout: 5_000,
    retry: { retries: 0 },
  });
  let lastError = "no attempt made";
  while (Date.now() < deadline) {
    const reason = abortIf?.();
    if (reason) throw new Error(reason);
    const admin = kafka.admin();
    try {
      await admin.connect();
      const cluster = await admin.describeCluster();
      if (cluster.brokers.length > 0) return cluster;
      lastError = "the cluster reported no brokers";
    } catch (error) {
      lastError = error instanceof Error ? error.message : String(error);
    } finally {
      await admin.disconnect().catch(() => {});
    }
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
  throw new Error(
    `No Kafka broker answered a metadata request at ${brokers} within ${timeoutMs / 1000} s (last error: ${lastError})`,
  );
}
