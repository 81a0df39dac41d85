// One broker for the whole e2e run, from the same entry point people use
// (scripts/broker.ts): KAFKA_BROKERS if set, else Docker Compose, else the JVM.
// Each e2e project (side by side, alone) names this file; vitest calls it once per
// project in the same process, so the first call starts the broker, the others share
// it, and the last teardown stops it.
import type { TestProject } from "vitest/node";
import { acquireBroker, type Broker } from "../scripts/broker.ts";
import { figuresFile, figuresTable, readFigures, removeFigures } from "./support/figures.ts";

declare module "vitest" {
  export interface ProvidedContext {
    kafkaBrokers: string;
    brokerSource: string;
    /** the JVM broker's folder, when the run started one (for restart tests) */
    brokerDir: string;
    /** where tests record the figures printed at the end of the run */
    figuresFile: string;
  }
}

interface Shared {
  broker: Promise<Broker>;
  users: number;
}
const shared = globalThis as { kafkaTestBroker?: Shared };
const figures = figuresFile();

export async function setup(project: TestProject) {
  project.provide("figuresFile", figures);
  let first = false;
  if (!shared.kafkaTestBroker) {
    first = true;
    shared.kafkaTestBroker = { broker: acquireBroker(), users: 0 };
  }
  shared.kafkaTestBroker.users++;
  const broker = await shared.kafkaTestBroker.broker;
  if (first) console.log(`[global-setup] Kafka via ${broker.source} at ${broker.brokers}`);
  project.provide("kafkaBrokers", broker.brokers);
  project.provide("brokerSource", broker.source);
  project.provide("brokerDir", broker.jvm?.dir ?? "");
}

export async function teardown() {
  const state = shared.kafkaTestBroker;
  if (!state || --state.users > 0) return;
  shared.kafkaTestBroker = undefined;
  await (await state.broker.catch(() => undefined))?.stop();
  const measured = readFigures(figures);
  removeFigures(figures);
  if (measured.length > 0) {
    console.log(
      `\nFigures measured by this run (${new Date().toISOString()}):\n${figuresTable(measured)}\n`,
    );
  }
}
