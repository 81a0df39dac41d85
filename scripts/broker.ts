// One way in to a Kafka broker, for people, tests and the demo:
//   1. KAFKA_BROKERS, if set: that cluster, checked to answer;
//   2. else Docker Compose on compose.yaml, if a Docker engine answers;
//   3. else the same Kafka release on the JVM (scripts/kafka-jvm.ts);
//   4. else an error naming those three ways.
// KAFKA_LAUNCHER=docker|jvm skips the choice.
//
//   node scripts/broker.ts up      start one (port 9092 if free) and print KAFKA_BROKERS
//   node scripts/broker.ts up --secured   the JVM broker also with listeners that demand
//                                  TLS and SASL (scripts/kafka-secured.ts), and their settings
//   node scripts/broker.ts down    stop the one `up` started
//   node scripts/broker.ts down --all   also stop every JVM broker this checkout left
import { execFile } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdir, readFile, rm, writeFile } from "node:fs/promises";
import { dirname, join } from "node:path";
import { promisify } from "node:util";
import {
  isAlive,
  javaAvailable,
  kafkaHome,
  kraftClusterId,
  listInstances,
  portIsFree,
  projectRoot,
  serverProperties,
  startJvmBroker,
  stopJvmBroker,
} from "./kafka-jvm.ts";
import { waitForBroker } from "./kafka-ready.ts";
import {
  makeSecrets,
  type SecuredBroker,
  scramArguments,
  securedProperties,
  securedReady,
} from "./kafka-secured.ts";

const run = promisify(execFile);

export type BrokerSource = "KAFKA_BROKERS" | "docker" | "jvm";

export interface Broker {
  /** comma-separated host:port list, the value for KAFKA_BROKERS */
  brokers: string;
  source: BrokerSource;
  /** the JVM broker's pid and folder, when it is one */
  jvm?: { pid: number; dir: string; logFile: string };
  /** listeners that demand TLS and SASL, when a JVM broker was asked for them */
  secured?: SecuredBroker;
  stop(): Promise<void>;
}

export class NoBrokerError extends Error {}

const composeFile = join(projectRoot, "compose.yaml");
/** compose.yaml's profile "secured" mounts this folder (ignored by git) into its broker. */
export const composeSecuredDir = join(kafkaHome, "compose-secured");
const currentFile = join(kafkaHome, "current.json");

async function dockerEngineAnswers(): Promise<boolean> {
  try {
    await run("docker", ["info", "--format", "{{.ServerVersion}}"], { timeout: 10_000 });
    return true;
  } catch {
    return false;
  }
}

async function compose(...args: string[]) {
  return await run("docker", ["compose", "-f", composeFile, ...args], {
    timeout: 5 * 60_000,
    maxBuffer: 16 * 1024 * 1024,
  });
}

async function fromEnv(brokers: string): Promise<Broker> {
  // Fail fast, naming the address, rather than letting every test hang on it.
  await waitForBroker(brokers, { timeoutMs: 10_000 }).catch((error: Error) => {
    throw new Error(`KAFKA_BROKERS=${brokers}: ${error.message}`);
  });
  return { brokers, source: "KAFKA_BROKERS", stop: async () => {} };
}

async function fromDocker(): Promise<Broker> {
  const { stdout } = await compose("ps", "-q", "kafka");
  const wasRunning = stdout.trim() !== "";
  await compose("up", "-d", "--wait");
  const brokers = "localhost:9092";
  await waitForBroker(brokers, { timeoutMs: 60_000 });
  return {
    brokers,
    source: "docker",
    // Leave a broker the user had started alone.
    stop: async () => {
      if (!wasRunning) await compose("down", "--volumes");
    },
  };
}

async function fromJvm(preferredPort?: number, secured = false): Promise<Broker> {
  const port =
    preferredPort !== undefined && (await portIsFree(preferredPort)) ? preferredPort : undefined;
  const jvm = await startJvmBroker({ port, secured });
  return {
    brokers: jvm.brokers,
    source: "jvm",
    jvm: { pid: jvm.pid, dir: jvm.dir, logFile: jvm.logFile },
    secured: jvm.secured,
    stop: () => stopJvmBroker(jvm),
  };
}

/**
 * A JVM broker with the secured listeners, for when the broker in use has none (an
 * outside cluster, Docker): the cases that need a broker demanding TLS and SASL get one.
 */
export async function acquireSecuredJvmBroker(): Promise<Broker> {
  if (!(await javaAvailable())) {
    throw new NoBrokerError(
      "A broker that demands TLS and SASL is started on the JVM, and no `java` was found on PATH or in JAVA_HOME: install Java 17+ and Maven",
    );
  }
  return await fromJvm(undefined, true);
}

/**
 * Gets a broker the way the top of this file says. `preferredPort` asks the JVM
 * launcher for that port when it is free (9092 for people, so the scripts' default
 * KAFKA_BROKERS works); tests leave it out and get a free port.
 */
export async function acquireBroker(
  options: { preferredPort?: number; secured?: boolean } = {},
): Promise<Broker> {
  const fromEnvironment = process.env.KAFKA_BROKERS?.trim();
  if (fromEnvironment) return await fromEnv(fromEnvironment);

  const launcher = process.env.KAFKA_LAUNCHER?.trim();
  if (launcher && launcher !== "docker" && launcher !== "jvm") {
    throw new NoBrokerError(`KAFKA_LAUNCHER must be "docker" or "jvm", not "${launcher}"`);
  }
  if (launcher === "docker" || (!launcher && (await dockerEngineAnswers()))) {
    return await fromDocker();
  }
  if (await javaAvailable()) return await fromJvm(options.preferredPort, options.secured);
  throw new NoBrokerError(
    [
      "No Kafka broker can be had here. Any one of these fixes it:",
      "  1. point at a running cluster: export KAFKA_BROKERS=host:9092",
      "  2. start a Docker engine; compose.yaml then runs the apache/kafka image",
      "  3. install Java 17+ and Maven; the broker's jars then run on the JVM",
      "     (no Docker engine answered `docker info`, and no `java` was found on PATH or in JAVA_HOME)",
    ].join("\n"),
  );
}

interface CurrentBroker {
  brokers: string;
  source: BrokerSource;
  jvm?: { pid: number; dir: string; logFile: string };
}

async function readCurrent(): Promise<CurrentBroker | undefined> {
  try {
    return JSON.parse(await readFile(currentFile, "utf8")) as CurrentBroker;
  } catch {
    return undefined;
  }
}

async function up(secured: boolean): Promise<void> {
  const current = await readCurrent();
  if (current?.jvm && isAlive(current.jvm.pid)) {
    console.log(
      `A broker is already up (${current.source}).\nexport KAFKA_BROKERS=${current.brokers}`,
    );
    return;
  }
  const broker = await acquireBroker({ preferredPort: 9092, secured });
  if (secured && broker.source === "docker") broker.secured = await upSecuredCompose();
  if (broker.source !== "KAFKA_BROKERS") {
    await mkdir(kafkaHome, { recursive: true });
    const record: CurrentBroker = {
      brokers: broker.brokers,
      source: broker.source,
      jvm: broker.jvm,
    };
    await writeFile(currentFile, `${JSON.stringify(record, null, 2)}\n`);
  }
  const where = broker.jvm ? ` (pid ${broker.jvm.pid}, log ${broker.jvm.logFile})` : "";
  console.log(`Kafka is up via ${broker.source}${where}.`);
  console.log(`export KAFKA_BROKERS=${broker.brokers}`);
  if (broker.secured) console.log(securedHelp(broker.secured));
  else if (secured) console.log("(--secured: KAFKA_BROKERS is an outside cluster; nothing added)");
  console.log("Stop it with: npm run broker:down");
}

/** The settings that reach each secured listener; the passwords stay in their file. */
function securedHelp(secured: SecuredBroker): string {
  const file = join(dirname(secured.caFile), "secured.json");
  const sasl = (listener: "SASL_SSL" | "SASL_PLAINTEXT", mechanism: string) =>
    [
      `KAFKA_BROKERS=${secured.addresses[listener]}`,
      `KAFKA_SECURITY_PROTOCOL=${listener}`,
      `KAFKA_SASL_MECHANISM=${mechanism}`,
      `KAFKA_SASL_USERNAME=${secured.alice.username}`,
      "KAFKA_SASL_PASSWORD=<alice's password>",
      ...(listener === "SASL_SSL" ? [`KAFKA_SSL_CA_LOCATION=${secured.caFile}`] : []),
    ].join(" ");
  return [
    `Secured listeners (alice's and admin's passwords are in ${file}):`,
    `  SASL over TLS (${secured.mechanisms.SASL_SSL.join(", ")}):`,
    `    ${sasl("SASL_SSL", "SCRAM-SHA-512")}`,
    "  mutual TLS:",
    `    KAFKA_BROKERS=${secured.addresses.SSL} KAFKA_SECURITY_PROTOCOL=SSL KAFKA_SSL_CA_LOCATION=${secured.caFile} KAFKA_SSL_CERTIFICATE_LOCATION=${secured.certificateFile} KAFKA_SSL_KEY_LOCATION=${secured.keyFile}`,
    `  SASL without TLS (${secured.mechanisms.SASL_PLAINTEXT.join(", ")}):`,
    `    ${sasl("SASL_PLAINTEXT", "SCRAM-SHA-256")}`,
  ].join("\n");
}

/**
 * The files compose.yaml's profile "secured" reads: the same certificates, passwords,
 * listeners and SCRAM credentials as the JVM broker's, with the container's paths.
 */
export async function writeComposeSecured(dir = composeSecuredDir): Promise<SecuredBroker> {
  const secrets = await makeSecrets(dir);
  const ports = { SASL_SSL: 9094, SSL: 9095, SASL_PLAINTEXT: 9096 };
  // Inside the container: listen on every interface, give clients 127.0.0.1 (compose
  // publishes these ports there only), read the secrets where the folder is mounted.
  const hosts = { bind: "0.0.0.0", advertised: "127.0.0.1" };
  const secured = securedProperties(secrets, "/etc/kafka/secrets", ports, hosts);
  const layout = { dataDir: "/tmp/kafka-data", port: 19092, controllerPort: 19093, secured };
  const write = (name: string, text: string) => writeFile(join(dir, name), text, { mode: 0o600 });
  await write("server.properties", serverProperties({ ...layout, ...hosts }));
  await write("scram-arguments", `${scramArguments(secrets).join("\n")}\n`);
  // Kept: a container restarted on its data must find the cluster it was formatted for.
  if (!existsSync(join(dir, "cluster-id"))) await write("cluster-id", kraftClusterId());
  const addresses = {
    SASL_SSL: "127.0.0.1:9094",
    SSL: "127.0.0.1:9095",
    SASL_PLAINTEXT: "127.0.0.1:9096",
  };
  return { ...secrets, addresses };
}

async function upSecuredCompose(): Promise<SecuredBroker> {
  const secured = await writeComposeSecured();
  await compose("--profile", "secured", "up", "-d", "--wait", "kafka-secured");
  await securedReady(secured);
  return secured;
}

async function down(all: boolean): Promise<void> {
  const current = await readCurrent();
  if (current?.source === "docker") await compose("--profile", "secured", "down", "--volumes");
  if (current?.jvm) await stopJvmBroker(current.jvm);
  await rm(currentFile, { force: true });
  if (current) console.log(`Stopped the ${current.source} broker at ${current.brokers}.`);
  if (all) {
    for (const instance of await listInstances()) {
      await stopJvmBroker(instance);
      console.log(`Stopped the JVM broker in ${instance.dir}.`);
    }
  }
}

if (import.meta.main) {
  const [command, ...flags] = process.argv.slice(2);
  try {
    if (command === "up") await up(flags.includes("--secured"));
    else if (command === "down") await down(flags.includes("--all"));
    else {
      console.error("usage: node scripts/broker.ts up [--secured] | down [--all]");
      process.exit(2);
    }
  } catch (error) {
    console.error((error as Error).message);
    process.exit(1);
  }
}
