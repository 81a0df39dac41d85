// One broker for the whole e2e run, from the same entry point people use
// (scripts/broker.ts): KAFKA_BROKERS if set, else Docker Compose, else the JVM.
import type { TestProject } from "vitest/node";
import { acquireBroker, type Broker } from "../scripts/broker.ts";

declare module "vitest" {
  export interface ProvidedContext {
    kafkaBrokers: string;
    brokerSource: string;
    /** the JVM broker's folder, when the run started one (for restart tests) */
    brokerDir: string;
  }
}

let broker: Broker | undefined;

export async function setup(project: TestProject) {
  broker = await acquireBroker();
  console.log(`[global-setup] Kafka via ${broker.source} at ${broker.brokers}`);
  project.provide("kafkaBrokers", broker.brokers);
  project.provide("brokerSource", broker.source);
  project.provide("brokerDir", broker.jvm?.dir ?? "");
}

export async function teardown() {
  await broker?.stop();
}
