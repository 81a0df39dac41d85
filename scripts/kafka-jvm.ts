// Apache Kafka on the JVM, for machines without Docker: the jars come from Maven
// Central once (scripts/kafka/pom.xml pins the release), each broker gets its own
// folder under .kafka/instances with its KRaft storage, properties and log.
import { type ChildProcess, execFile, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { closeSync, existsSync, openSync, readFileSync } from "node:fs";
import { mkdir, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { createServer } from "node:net";
import { join } from "node:path";
import { promisify } from "node:util";
import { waitForBroker } from "./kafka-ready.ts";
import {
  makeSecrets,
  type SecuredBroker,
  type SecuredPorts,
  scramArguments,
  securedListeners,
  securedProperties,
  securedReady,
} from "./kafka-secured.ts";

const run = promisify(execFile);

export const projectRoot = new URL("..", import.meta.url).pathname;
const pomFile = join(projectRoot, "scripts/kafka/pom.xml");
const log4jConfig = join(projectRoot, "scripts/kafka/log4j2.properties");
export const kafkaHome = join(projectRoot, ".kafka");
export const instancesDir = join(kafkaHome, "instances");

export interface JvmBroker {
  /** host:port clients bootstrap from */
  brokers: string;
  pid: number;
  port: number;
  controllerPort: number;
  /** the instance folder: server.properties, data/, kafka.log, instance.json */
  dir: string;
  logFile: string;
  /** the listeners that demand TLS and SASL, when started with `secured` */
  secured?: SecuredBroker;
  securedPorts?: SecuredPorts;
}

export interface StartOptions {
  /** reuse a folder (and its data) to restart a broker; a new one by default */
  dir?: string;
  /** the client port; a free one by default */
  port?: number;
  controllerPort?: number;
  startTimeoutMs?: number;
  /** also listen with SASL_SSL, mutual TLS and SASL_PLAINTEXT (scripts/kafka-secured.ts) */
  secured?: boolean;
}

/** The Kafka release pinned in the Maven file. */
export async function kafkaVersion(): Promise<string> {
  const pom = await readFile(pomFile, "utf8");
  const version = pom.match(/<kafka\.version>([^<]+)<\/kafka\.version>/)?.[1];
  if (!version) throw new Error(`${pomFile} names no <kafka.version>`);
  return version;
}

export function javaCommand(): string {
  const home = process.env.JAVA_HOME;
  return home ? join(home, "bin", "java") : "java";
}

/** True when a Java runtime answers `java -version`. */
export async function javaAvailable(): Promise<boolean> {
  try {
    await run(javaCommand(), ["-version"], { timeout: 15_000 });
    return true;
  } catch {
    return false;
  }
}

/** Copies the broker's jars with Maven once; later calls reuse the folder. */
export async function ensureJars(): Promise<string> {
  const version = await kafkaVersion();
  const libDir = join(kafkaHome, "lib", version);
  const marker = join(libDir, ".complete");
  if (existsSync(marker)) return libDir;
  await rm(libDir, { recursive: true, force: true });
  console.error(`Downloading Apache Kafka ${version} jars with Maven into ${libDir} (once)…`);
  try {
    await run(
      "mvn",
      [
        "-B",
        "-q",
        "--no-transfer-progress",
        "-f",
        pomFile,
        "dependency:copy-dependencies",
        "-DincludeScope=runtime",
        `-DoutputDirectory=${libDir}`,
      ],
      { timeout: 10 * 60_000, maxBuffer: 16 * 1024 * 1024 },
    );
  } catch (error) {
    const detail = error instanceof Error ? error.message : String(error);
    throw new Error(
      `Maven could not fetch the Kafka ${version} jars (is "mvn" installed and Maven Central reachable?): ${detail}`,
    );
  }
  await writeFile(marker, `${new Date().toISOString()}\n`);
  return libDir;
}

export async function freePort(): Promise<number> {
  return await new Promise((resolve, reject) => {
    const server = createServer();
    server.unref();
    server.on("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const address = server.address();
      server.close(() =>
        typeof address === "object" && address
          ? resolve(address.port)
          : reject(new Error("no port")),
      );
    });
  });
}

/** `count` different free ports: held open together while they are picked. */
export async function freePorts(count: number): Promise<number[]> {
  const servers = Array.from({ length: count }, () => createServer());
  try {
    return await Promise.all(
      servers.map(
        (server) =>
          new Promise<number>((resolve, reject) => {
            server.on("error", reject);
            server.listen(0, "127.0.0.1", () => {
              const address = server.address();
              if (typeof address === "object" && address) resolve(address.port);
              else reject(new Error("no port"));
            });
          }),
      ),
    );
  } finally {
    await Promise.all(servers.map((server) => new Promise((done) => server.close(done))));
  }
}

export async function portIsFree(port: number): Promise<boolean> {
  return await new Promise((resolve) => {
    const server = createServer();
    server.unref();
    server.once("error", () => resolve(false));
    server.listen(port, "127.0.0.1", () => server.close(() => resolve(true)));
  });
}

export interface Layout {
  /** where the broker keeps its data */
  dataDir: string;
  port: number;
  controllerPort: number;
  /** the address it listens on, and the one it gives clients; 127.0.0.1 both by default */
  bind?: string;
  advertised?: string;
  /** the secured listeners' lines (scripts/kafka-secured.ts) */
  secured?: ReturnType<typeof securedProperties>;
}

/** server.properties of a single node; the Docker profile "secured" uses it too. */
export function serverProperties(layout: Layout): string {
  const { dataDir, port, controllerPort, bind = "127.0.0.1", advertised = bind } = layout;
  const { secured } = layout;
  const extra = secured ? `,${secured.listeners}` : "";
  const extraAdvertised = secured ? `,${secured.advertised}` : "";
  const extraMap = secured ? `,${secured.protocolMap}` : "";
  return `${[
    "# Written by scripts/kafka-jvm.ts: one node that is both broker and controller (KRaft).",
    "process.roles=broker,controller",
    "node.id=1",
    `controller.quorum.voters=1@${advertised}:${controllerPort}`,
    `listeners=PLAINTEXT://${bind}:${port},CONTROLLER://${bind}:${controllerPort}${extra}`,
    `advertised.listeners=PLAINTEXT://${advertised}:${port}${extraAdvertised}`,
    "controller.listener.names=CONTROLLER",
    "inter.broker.listener.name=PLAINTEXT",
    `listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT${extraMap}`,
    `log.dirs=${dataDir}`,
    "num.partitions=1",
    "# A single node can hold one replica only; without these, consumer groups and",
    "# transactions never find a coordinator.",
    "offsets.topic.replication.factor=1",
    "offsets.topic.num.partitions=1",
    "transaction.state.log.replication.factor=1",
    "transaction.state.log.min.isr=1",
    "share.coordinator.state.topic.replication.factor=1",
    "share.coordinator.state.topic.min.isr=1",
    "# Tests start groups all the time; do not wait 3 s for more members to join.",
    "group.initial.rebalance.delay.ms=0",
    "auto.create.topics.enable=true",
    ...(secured?.lines ?? []),
  ].join("\n")}\n`;
}

/**
 * A new cluster id: 16 random bytes in URL-safe base64 without padding, as Kafka's
 * own. Like Kafka's, never one that starts with "-": the storage tool would read it
 * as an option (1 id in 64 did, and formatting failed).
 */
export function kraftClusterId(): string {
  for (;;) {
    const id = randomBytes(16).toString("base64url");
    if (!id.startsWith("-")) return id;
  }
}

export async function tail(file: string, lines = 40): Promise<string> {
  try {
    return (await readFile(file, "utf8")).trimEnd().split("\n").slice(-lines).join("\n");
  } catch {
    return `(no log at ${file})`;
  }
}

/**
 * Starts a broker and resolves once it answers a metadata request. With an existing
 * `dir` it restarts that broker on its data (same ports, unless told otherwise).
 */
export async function startJvmBroker(options: StartOptions = {}): Promise<JvmBroker> {
  const libDir = await ensureJars();
  const previous = options.dir ? await readInstance(options.dir) : undefined;
  const dir = options.dir ?? join(instancesDir, `${Date.now()}-${randomBytes(3).toString("hex")}`);
  // Picked together, so no two are the same.
  const [anyPort, anyControllerPort, ...anySecured] = await freePorts(5);
  const port = options.port ?? previous?.port ?? (anyPort as number);
  const controllerPort =
    options.controllerPort ?? previous?.controllerPort ?? (anyControllerPort as number);
  const logFile = join(dir, "kafka.log");
  const propertiesFile = join(dir, "server.properties");
  await mkdir(dir, { recursive: true });
  const wantSecured = options.secured ?? previous?.secured !== undefined;
  const secretsDir = join(dir, "secrets");
  const secrets = wantSecured ? await makeSecrets(secretsDir) : undefined;
  const securedPorts: SecuredPorts | undefined = secrets
    ? (previous?.securedPorts ?? {
        SASL_SSL: anySecured[0] as number,
        SSL: anySecured[1] as number,
        SASL_PLAINTEXT: anySecured[2] as number,
      })
    : undefined;
  const securedLines =
    secrets && securedPorts ? securedProperties(secrets, secretsDir, securedPorts) : undefined;
  const layout = { dataDir: join(dir, "data"), port, controllerPort, secured: securedLines };
  // It may hold the PLAIN users' passwords: readable by us only.
  await writeFile(propertiesFile, serverProperties(layout), { mode: 0o600 });

  const classpath = `${libDir}/*`;
  const jvmLogging = `-Dlog4j2.configurationFile=${log4jConfig}`;
  if (!existsSync(join(dir, "data", "meta.properties"))) {
    try {
      await run(
        javaCommand(),
        [
          "-cp",
          classpath,
          jvmLogging,
          "kafka.tools.StorageTool",
          "format",
          "--ignore-formatted",
          "-t",
          kraftClusterId(),
          "-c",
          propertiesFile,
          ...(secrets ? scramArguments(secrets) : []),
        ],
        { timeout: 120_000 },
      );
    } catch (error) {
      throw new Error(`Formatting the KRaft storage in ${dir} failed: ${String(error)}`);
    }
  }

  const logFd = openSync(logFile, "a");
  let child: ChildProcess;
  try {
    child = spawn(
      javaCommand(),
      [
        "-Xms256m",
        "-Xmx1g",
        "-XX:+UseG1GC",
        "-XX:MaxGCPauseMillis=20",
        "-XX:+ExitOnOutOfMemoryError",
        "-Djava.awt.headless=true",
        jvmLogging,
        "-cp",
        classpath,
        "kafka.Kafka",
        propertiesFile,
      ],
      // Its own process group, so a Ctrl-C meant for `npm run broker:up` or a test
      // run does not kill it before we stop it cleanly.
      { detached: true, stdio: ["ignore", logFd, logFd] },
    );
  } finally {
    closeSync(logFd);
  }
  child.unref();
  const pid = child.pid;
  if (pid === undefined) throw new Error(`Could not start ${javaCommand()}`);
  const broker: JvmBroker = {
    brokers: `127.0.0.1:${port}`,
    pid,
    port,
    controllerPort,
    dir,
    logFile,
  };
  if (secrets && securedPorts) {
    const address = (name: keyof SecuredPorts) => `127.0.0.1:${securedPorts[name]}`;
    const addresses = Object.fromEntries(securedListeners.map((name) => [name, address(name)]));
    broker.secured = { ...secrets, addresses } as SecuredBroker;
    broker.securedPorts = securedPorts;
  }
  await writeFile(join(dir, "instance.json"), `${JSON.stringify(broker, null, 2)}\n`, {
    mode: 0o600,
  });

  let exitCode: number | null = null;
  child.once("exit", (code, signal) => {
    exitCode = code ?? (signal ? 128 : 1);
  });
  try {
    await waitForBroker(broker.brokers, {
      timeoutMs: options.startTimeoutMs ?? 90_000,
      abortIf: () =>
        exitCode === null ? undefined : `the broker process exited with code ${exitCode}`,
    });
    if (broker.secured) await securedReady(broker.secured);
  } catch (error) {
    await stopJvmBroker(broker).catch(() => {});
    throw new Error(
      `Kafka did not start: ${(error as Error).message}\n--- last lines of ${logFile} ---\n${await tail(logFile)}`,
    );
  }
  return broker;
}

export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** Alive and still our kafka.Kafka (a recorded pid may have been reused since). */
function isOurBroker(broker: Pick<JvmBroker, "pid" | "dir">): boolean {
  if (!isAlive(broker.pid)) return false;
  try {
    const commandLine = readFileSync(`/proc/${broker.pid}/cmdline`, "utf8");
    return commandLine.includes("kafka.Kafka") && commandLine.includes(broker.dir);
  } catch {
    return true; // no /proc (macOS): trust the pid file
  }
}

async function waitForExit(pid: number, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (isAlive(pid)) {
    if (Date.now() > deadline) return false;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  return true;
}

/**
 * SIGTERM (Kafka shuts down cleanly and flushes its logs), wait for the exit, and
 * SIGKILL only if it has not gone within the grace period.
 */
export async function stopJvmBroker(
  broker: Pick<JvmBroker, "pid" | "dir">,
  { keepData = false, graceMs = 30_000 } = {},
): Promise<void> {
  if (isOurBroker(broker)) {
    process.kill(broker.pid, "SIGTERM");
    if (!(await waitForExit(broker.pid, graceMs))) {
      process.kill(broker.pid, "SIGKILL");
      await waitForExit(broker.pid, 10_000);
    }
  }
  if (!keepData) await rm(broker.dir, { recursive: true, force: true });
}

export async function readInstance(dir: string): Promise<JvmBroker | undefined> {
  try {
    return JSON.parse(await readFile(join(dir, "instance.json"), "utf8")) as JvmBroker;
  } catch {
    return undefined;
  }
}

/** Every broker this checkout started and has not removed, alive or not. */
export async function listInstances(): Promise<JvmBroker[]> {
  const names = await readdir(instancesDir).catch(() => [] as string[]);
  const found = await Promise.all(names.map((name) => readInstance(join(instancesDir, name))));
  return found.filter((instance): instance is JvmBroker => instance !== undefined);
}

// `node scripts/kafka-jvm.ts`: fetch the broker's jars now (CI does this up front).
if (import.meta.main) console.log(await ensureJars());
