// One broker for the whole e2e run, from the same entry point people use
// (scripts/broker.ts): KAFKA_BROKERS if set, else Docker Compose, else the JVM.
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

let broker: Broker | undefined;
const figures = figuresFile();

export async function setup(project: TestProject) {
  project.provide("figuresFile", figures);
  broker = await acquireBroker();
  console.log(`[global-setup] Kafka via ${broker.source} at ${broker.brokers}`);
  project.provide("kafkaBrokers", broker.brokers);
  project.provide("brokerSource", broker.source);
  project.provide("brokerDir", broker.jvm?.dir ?? "");
}

export async function teardown() {
  await broker?.stop();
  const measured = readFigures(figures);
  removeFigures(figures);
  if (measured.length > 0) {
    console.log(
      `\nFigures measured by this run (${new Date().toISOString()}):\n${figuresTable(measured)}\n`,
    );
  }
}
