// One broker for the whole e2e run, from the same entry point people use
// (scripts/broker.ts): KAFKA_BROKERS if set, else Docker Compose, else the JVM. A JVM
// broker also gets the secured listeners (TLS, SASL, ACLs: scripts/kafka-secured.ts);
// when the broker in use is another one, a second, JVM broker serves the secured cases.
// Each e2e project (side by side, alone) names this file; vitest calls it once per
// project in the same process, so the first call starts the brokers, the others share
// them, and the last teardown stops them.
import type { TestProject } from "vitest/node";
import { acquireBroker, acquireSecuredJvmBroker, type Broker } from "../scripts/broker.ts";
import type { SecuredBroker } from "../scripts/kafka-secured.ts";
import { figuresFile, figuresTable, readFigures, removeFigures } from "./support/figures.ts";

declare module "vitest" {
  export interface ProvidedContext {
    kafkaBrokers: string;
    brokerSource: string;
    /** the JVM broker's folder, when the run started one (for restart tests) */
    brokerDir: string;
    /** where tests record the figures printed at the end of the run */
    figuresFile: string;
    /**
     * Listeners that demand TLS and SASL (addresses, CA and client certificate files,
     * users), or why there are none: the secured cases then fail with that reason.
     */
    kafkaSecured: SecuredBroker | { unavailable: string };
    /** the plain-text listener of the broker that has the secured ones */
    kafkaSecuredPlaintext: string;
  }
}

interface Brokers {
  main: Broker;
  /** the broker with the secured listeners: `main` itself, or a second one */
  secured?: Broker;
  /** why there is none */
  unavailable?: string;
  /** brokers this run started and must stop */
  started: Broker[];
}
interface Shared {
  brokers: Promise<Brokers>;
  users: number;
}
const shared = globalThis as { kafkaTestBroker?: Shared };
const figures = figuresFile();

async function acquire(): Promise<Brokers> {
  const main = await acquireBroker({ secured: true });
  console.log(`[global-setup] Kafka via ${main.source} at ${main.brokers}`);
  if (main.secured) return { main, secured: main, started: [main] };
  try {
    const secured = await acquireSecuredJvmBroker();
    console.log(`[global-setup] secured listeners on a second, JVM broker at ${secured.brokers}`);
    return { main, secured, started: [main, secured] };
  } catch (error) {
    return { main, unavailable: (error as Error).message, started: [main] };
  }
}

export async function setup(project: TestProject) {
  project.provide("figuresFile", figures);
  shared.kafkaTestBroker ??= { brokers: acquire(), users: 0 };
  shared.kafkaTestBroker.users++;
  const { main, secured, unavailable } = await shared.kafkaTestBroker.brokers;
  project.provide("kafkaBrokers", main.brokers);
  project.provide("brokerSource", main.source);
  project.provide("brokerDir", main.jvm?.dir ?? "");
  project.provide("kafkaSecured", secured?.secured ?? { unavailable: unavailable ?? "none" });
  project.provide("kafkaSecuredPlaintext", secured?.brokers ?? "");
}

export async function teardown() {
  const state = shared.kafkaTestBroker;
  if (!state || --state.users > 0) return;
  shared.kafkaTestBroker = undefined;
  const brokers = await state.brokers.catch(() => undefined);
  await Promise.all((brokers?.started ?? []).map((broker) => broker.stop()));
  const measured = readFigures(figures);
  removeFigures(figures);
  if (measured.length > 0) {
    console.log(
      `\nFigures measured by this run (${new Date().toISOString()}):\n${figuresTable(measured)}\n`,
    );
  }
}
