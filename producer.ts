/**
 * producer.ts: fills a Kafka topic with a backlog of "create user" events.
 *
 * Each event is JSON: a unique id, an email, a username, a timestamp and padding up to
 * PAYLOAD_BYTES. The topic is created if missing; batches go out concurrently; the exit
 * code is 0 only when the broker acknowledged every event (acks from all replicas).
 *
 * Run this one file alone (settings: --help):
 *   bun:  bun run producer.ts
 *   deno: deno add npm:kafkajs && deno run --allow-net --allow-env=KAFKA_BROKERS,KAFKA_SECURITY_PROTOCOL,KAFKA_SASL_MECHANISM,KAFKA_SASL_USERNAME,KAFKA_SASL_PASSWORD,KAFKA_SSL_CA_LOCATION,KAFKA_SSL_CA_PEM,KAFKA_SSL_CERTIFICATE_LOCATION,KAFKA_SSL_CERTIFICATE_PEM,KAFKA_SSL_KEY_LOCATION,KAFKA_SSL_KEY_PEM,KAFKA_SSL_KEY_PASSWORD,KAFKA_TOPIC,MESSAGES,PAYLOAD_BYTES,PARTITIONS,BATCH_SIZE,BATCH_BYTES,SEND_CONCURRENCY,KEYS,MALFORMED_EVERY,ID_PREFIX,NODE_ENV,KAFKAJS_LOG_LEVEL,KAFKAJS_DEBUG_PROTOCOL_BUFFERS,KAFKAJS_DEBUG_EXTENDED_PROTOCOL_BUFFERS producer.ts
 *         (TLS files in KAFKA_SSL_*_LOCATION: add --allow-read=<those files>, or give their PEM text in KAFKA_SSL_*_PEM)
 *   node: npm i kafkajs && npm pkg set type=module && node producer.ts        (Node 22.18+)
 */
import { createPrivateKey, type KeyObject, randomBytes, X509Certificate } from "node:crypto";
import { readFileSync } from "node:fs";
import net, { isIP } from "node:net";
import tls from "node:tls";
import {
  type Admin,
  type ISocketFactory,
  Kafka,
  logLevel,
  type Message,
  Partitioners,
} from "kafkajs";

const settings = readSettings(
  {
    KAFKA_BROKERS: text("localhost:9092", "comma-separated bootstrap servers"),
    ...kafkaSecuritySettings(), // TLS and SASL: KAFKA_SECURITY_PROTOCOL, KAFKA_SASL_*, KAFKA_SSL_*
    KAFKA_TOPIC: text("CREATE_USER", "topic to fill"),
    MESSAGES: number(10_000, "events to send", 1, 100_000_000),
    PAYLOAD_BYTES: number(16_384, "size events are padded to (0: none, ~130 bytes)", 0, 1e6),
    PARTITIONS: number(3, "partitions of the topic, when this creates it", 1, 10_000),
    BATCH_SIZE: number(500, "events per produce request, at most", 1, 100_000),
    BATCH_BYTES: number(262_144, "bytes per request, at most (broker's cap: 1 MB)", 1_024, 1e8),
    SEND_CONCURRENCY: number(8, "produce requests in flight at once", 1, 1_000),
    KEYS: number(0, "distinct message keys, cycled (0: the key is the event's id)", 0, 1e8),
    MALFORMED_EVERY: number(0, "every Nth event malformed, for dead-lettering (0: none)", 0, 1e8),
    ID_PREFIX: text("", "ids are <ID_PREFIX>-<n>, n from 0 (empty: random per run)"),
  },
  "0 every event acknowledged, 1 Kafka failed or refused events, 2 bad setting",
);

async function main() {
  const { KAFKA_TOPIC: topic, MESSAGES: total } = settings;
  hideTimeoutNegativeWarning();
  // TLS and SASL as the settings say (KAFKA_SECURITY_PROTOCOL, …: see kafkaConnection).
  const kafka = new Kafka({
    ...kafkaConnection(settings),
    logLevel: logLevel.WARN,
    connectionTimeout: 3_000,
  });
  // The default partitioner, named so KafkaJS does not warn that its default changed in 2.0.
  const producer = kafka.producer({ createPartitioner: Partitioners.DefaultPartitioner });
  const admin = kafka.admin();

  // 1. Connect, and create the topic unless it exists.
  const failed = (error: Error) => fail(connectFailure(error, settings));
  for (const client of [admin, producer]) await client.connect().catch(failed);
  const created = await ensureTopic(admin, topic, settings.PARTITIONS);
  console.log(`${created ? "created" : "using existing"} topic ${topic}; sending ${total} events`);

  // 2. Send batches, SEND_CONCURRENCY requests at once, each one under BATCH_BYTES so
  //    that it stays below the broker's message.max.bytes.
  const idPrefix = settings.ID_PREFIX || randomBytes(4).toString("hex");
  const fitting = Math.floor(settings.BATCH_BYTES / Math.max(1, settings.PAYLOAD_BYTES));
  const batchSize = Math.max(1, Math.min(settings.BATCH_SIZE, fitting));
  const started = performance.now();
  let [sent, errors, nextEvent] = [0, 0, 0];
  const sendBatches = async () => {
    while (nextEvent < total) {
      const first = nextEvent; // shared by the senders: each batch goes out once
      const size = Math.min(batchSize, total - first);
      nextEvent += size;
      const messages = Array.from({ length: size }, (_, i) => makeEvent(first + i, idPrefix));
      try {
        await producer.send({ topic, messages, acks: -1 });
        sent += size;
      } catch (error) {
        errors += size;
        console.error(`batch at ${first} failed: ${(error as Error).message}`);
      }
    }
  };
  const progress = setInterval(() => console.log(`sent ${sent}`), 1_000);
  await Promise.all(Array.from({ length: settings.SEND_CONCURRENCY }, sendBatches));
  clearInterval(progress);

  // 3. Report, and exit 0 only if the broker acknowledged every event.
  printSummary(topic, sent, errors, idPrefix, performance.now() - started);
  await Promise.all([producer.disconnect(), admin.disconnect()]);
  process.exit(sent === total ? 0 : 1);
}

/** Creates the topic unless it exists; true if this call created it. */
async function ensureTopic(admin: Admin, topic: string, numPartitions: number, tries = 10) {
  try {
    // Asked first: creating a topic that exists makes KafkaJS log an ERROR line.
    if ((await admin.listTopics()).includes(topic)) return false;
    const topics = [{ topic, numPartitions }];
    const created = await admin.createTopics({ topics, waitForLeaders: true });
    // A new partition's leader can refuse writes for a moment after the metadata names it,
    // and KafkaJS sends a refused request again whole: the partitions it had written would
    // get those events twice. Wait until every leader answers (KafkaJS retries this read).
    await admin.fetchTopicOffsets(topic);
    return created;
  } catch (error) {
    // A broker that has just started may refuse for a moment: retry what Kafka calls retriable.
    const { retriable } = error as { retriable?: boolean };
    if (!retriable || tries === 1) fail(connectFailure(error, settings));
    await new Promise((resolve) => setTimeout(resolve, 500));
    return await ensureTopic(admin, topic, numPartitions, tries - 1);
  }
}

type EventSettings = Pick<typeof settings, "KEYS" | "MALFORMED_EVERY" | "PAYLOAD_BYTES">;
/** Event n: JSON padded to PAYLOAD_BYTES or, every MALFORMED_EVERY, a bad one. */
export function makeEvent(n: number, idPrefix: string, options: EventSettings = settings): Message {
  const id = `${idPrefix}-${n}`;
  const key = options.KEYS > 0 ? `key-${n % options.KEYS}` : id;
  const every = options.MALFORMED_EVERY;
  if (every > 0 && n % every === every - 1) {
    // In turn: not JSON, JSON without the fields a consumer needs, no value at all.
    const kind = Math.floor(n / every) % 3;
    if (kind === 0) return { key, value: `{"id":"${id}", this is not JSON` };
    if (kind === 1) return { key, value: JSON.stringify({ id, note: "no email or username" }) };
    return { key, value: null };
  }
  const username = `user_${n}`;
  const event = { id, email: `${username}@example.com`, username, createdAt: new Date() };
  const bare = JSON.stringify(event);
  // `,"padding":""` adds 13 bytes before the padding characters themselves.
  const padding = Math.max(0, options.PAYLOAD_BYTES - bare.length - 13);
  if (padding === 0) return { key, value: bare };
  return { key, value: JSON.stringify({ ...event, padding: "x".repeat(padding) }) };
}

// ==== Instrumentation and plumbing: a reader may skip from here on ====

function printSummary(topic: string, sent: number, errors: number, idPrefix: string, ms: number) {
  const ratePerSec = Math.round((sent * 1_000) / ms);
  console.log(`sent ${sent} of ${settings.MESSAGES}, errors ${errors}, ${ratePerSec} msg/s`);
  const about = { type: "summary", script: "producer", runtime: runtimeName() };
  const summary = { ...about, topic, sent, errors };
  console.log(JSON.stringify({ ...summary, durationMs: Math.round(ms), ratePerSec, idPrefix }));
}

function runtimeName(): string {
  const name = ["bun", "deno", "node"].find((r) => process.versions[r]) ?? "node";
  return `${name} ${process.versions[name]}`;
}

// ---- Connecting to a real cluster: the same copy in every script that talks to Kafka
// (tests/unit/drift.test.ts keeps the copies identical) ----

/** TLS and SASL settings, named after the Java client's and librdkafka's. */
function kafkaSecuritySettings() {
  const protocols = "PLAINTEXT|SSL|SASL_PLAINTEXT|SASL_SSL";
  const mechanisms = "PLAIN|SCRAM-SHA-256|SCRAM-SHA-512";
  const oneOf = (names: string) => new RegExp(`^\\s*(${names})\\s*$`, "i");
  const pemText = (what: string) => secret(`${what} as PEM text, instead of a file`);
  return {
    KAFKA_SECURITY_PROTOCOL: text("PLAINTEXT", protocols, oneOf(protocols), protocols),
    KAFKA_SASL_MECHANISM: text("", `${mechanisms} (SASL_*)`, oneOf(mechanisms), mechanisms),
    KAFKA_SASL_USERNAME: text("", "user name for SASL"),
    KAFKA_SASL_PASSWORD: secret("password for SASL (never printed)"),
    KAFKA_SSL_CA_LOCATION: text("", "PEM file of the CAs to trust (unset: public CAs)"),
    KAFKA_SSL_CA_PEM: pemText("the CAs"),
    KAFKA_SSL_CERTIFICATE_LOCATION: text("", "PEM file of a client certificate, for mutual TLS"),
    KAFKA_SSL_CERTIFICATE_PEM: pemText("the client certificate"),
    KAFKA_SSL_KEY_LOCATION: text("", "PEM file of the client certificate's private key"),
    KAFKA_SSL_KEY_PEM: pemText("the private key"),
    KAFKA_SSL_KEY_PASSWORD: secret("passphrase of the private key, if encrypted (never printed)"),
  };
}

/** A setting taken as it is, spaces and all; --help shows its doc, never its value. */
function secret(doc: string): Setting<string> {
  return { fallback: "", doc, expected: "text", parse: (raw) => raw };
}

/** What kafkaConnection and connectFailure read of a script's settings. */
interface KafkaSettings extends Record<keyof ReturnType<typeof kafkaSecuritySettings>, string> {
  KAFKA_BROKERS: string;
  KAFKA_TOPIC: string;
  KAFKA_GROUP_ID?: string;
}

/**
 * KafkaJS's `brokers`, `ssl`, `sasl` and `socketFactory` from the settings, checked
 * before any connection: a combination that contradicts itself or is incomplete, or a
 * certificate or key that cannot be read or used, exits 2 naming the setting.
 */
function kafkaConnection(s: KafkaSettings) {
  const protocol = s.KAFKA_SECURITY_PROTOCOL.toUpperCase();
  const [withSasl, withTls] = [protocol.startsWith("SASL_"), protocol.endsWith("SSL")];
  const names = Object.keys(s) as (keyof KafkaSettings)[];
  for (const name of names.filter((name) => /^KAFKA_(SASL|SSL)_/.test(name))) {
    const needed = name.startsWith("KAFKA_SASL_") ? withSasl : undefined; // TLS: each optional
    const allowed = name.startsWith("KAFKA_SASL_") ? withSasl : withTls;
    const has = `KAFKA_SECURITY_PROTOCOL=${protocol} has`;
    if (needed && !s[name]) badSetting(name, `needed: ${has} SASL`);
    if (!allowed && s[name]) badSetting(name, `set, but ${has} no ${name.split("_")[1]}`);
  }
  const [ca, certificate, key] = (["CA", "CERTIFICATE", "KEY"] as const).map((what) =>
    readPem(s, what),
  );
  if (!certificate !== !key) {
    const missing = certificate ? "KAFKA_SSL_KEY_LOCATION" : "KAFKA_SSL_CERTIFICATE_LOCATION";
    badSetting(missing, "a client certificate needs its key, and the key its certificate");
  }
  const passphrase = s.KAFKA_SSL_KEY_PASSWORD || undefined;
  if (passphrase && !key) badSetting("KAFKA_SSL_KEY_PASSWORD", "set, but there is no key");
  if (key && certificate) {
    if (/ENCRYPTED/.test(key.pem) && !passphrase) {
      badSetting("KAFKA_SSL_KEY_PASSWORD", `needed: the key in ${key.from} is encrypted`);
    }
    let privateKey: KeyObject | undefined;
    try {
      privateKey = createPrivateKey({ key: key.pem, passphrase });
    } catch (error) {
      const which = passphrase ? "KAFKA_SSL_KEY_PASSWORD" : key.from;
      badSetting(which, `the key in ${key.from} cannot be read with it: ${String(error)}`);
    }
    if (privateKey && !new X509Certificate(certificate.pem).checkPrivateKey(privateKey)) {
      badSetting(key.from, `not the key of the certificate in ${certificate.from}`);
    }
  }
  const clientCertificate = key && { cert: certificate?.pem, key: key.pem };
  const ssl = withTls
    ? { ...(ca && { ca: ca.pem }), ...clientCertificate, ...(passphrase && { passphrase }) }
    : undefined;
  const mechanism = s.KAFKA_SASL_MECHANISM.toLowerCase() as "plain";
  const [username, password] = [s.KAFKA_SASL_USERNAME, s.KAFKA_SASL_PASSWORD];
  return {
    brokers: s.KAFKA_BROKERS.split(",").map((broker) => broker.trim()),
    ssl,
    sasl: withSasl ? { mechanism, username, password } : undefined,
    socketFactory: watchedSockets((error) => {
      console.error(connectFailure(error, s));
      process.exit(1);
    }),
  };
}

/**
 * The CA, client certificate or key: from a file (on Deno: --allow-read=<the file>) or
 * as PEM text. Exits 2 if both are set, or it cannot be read, or it is not PEM.
 */
function readPem(s: KafkaSettings, what: "CA" | "CERTIFICATE" | "KEY") {
  const [file, text] = [`KAFKA_SSL_${what}_LOCATION`, `KAFKA_SSL_${what}_PEM`] as const;
  if (s[file] && s[text]) badSetting(text, `set, and so is ${file}: give one of them`);
  let pem = s[text];
  if (s[file]) {
    try {
      pem = readFileSync(s[file], "utf8");
    } catch (error) {
      const { name, message } = error as Error;
      const deno = name === "NotCapable" ? `; allow it with --allow-read=${s[file]}` : "";
      badSetting(file, `cannot read ${s[file]}: ${message}${deno}`);
    }
  }
  if (!pem) return undefined;
  const from = s[file] ? file : text;
  const kind = what === "KEY" ? "[A-Z ]*PRIVATE KEY" : "CERTIFICATE";
  const blocks = pem.match(
    new RegExp(`-----BEGIN ${kind}-----[\\s\\S]+?-----END ${kind}-----`, "g"),
  );
  if (!blocks) return badSetting(from, `not PEM: no "-----BEGIN ${kind}-----" in it`);
  if (what !== "KEY") {
    for (const block of blocks) {
      try {
        new X509Certificate(block);
      } catch (error) {
        badSetting(from, `a certificate in it does not parse: ${String(error)}`);
      }
    }
  }
  return { from, pem: blocks.join("\n") };
}

function badSetting(name: string, why: string): never {
  console.error(`Bad setting ${name}: ${why}\nRun with --help to see every setting.`);
  process.exit(2);
}

/**
 * KafkaJS's own way of opening a connection (TLS or not), watched. Until a broker has
 * answered once, a certificate refused (ours or the broker's), an answer in TLS to plain
 * text, or a connection the broker dropped unanswered twice means the settings do not
 * fit the listener; KafkaJS would retry that for 10 s and more, so `onMismatch` hears of
 * it at once. What happens after KafkaJS itself ended a socket (its connection timeout)
 * does not count; from the first answer on, KafkaJS's retries decide, as always.
 */
function watchedSockets(onMismatch: (error: Error) => void): ISocketFactory {
  let answered = false;
  let droppedUnanswered = 0;
  return ({ host, port, ssl, onConnect }) => {
    const socket = ssl
      ? tls.connect({ host, port, ...(!isIP(host) && { servername: host }), ...ssl }, onConnect)
      : net.connect({ host, port }, onConnect);
    socket.setKeepAlive(true, 60_000);
    const broker = `${host}:${port}`;
    const mismatch = (message: string) =>
      onMismatch(Object.assign(new Error(message), { broker, unanswered: true }));
    // Whether the broker ended it, not KafkaJS: judged at the first sign of the end.
    let byBroker: boolean | undefined;
    const theirs = () => {
      byBroker ??= !socket.writableEnded;
      return !answered && byBroker;
    };
    let [connected, heard, lastError] = [false, false, ""];
    socket.once("connect", () => (connected = true));
    socket.once("data", (chunk: Buffer) => {
      // A TLS record (an alert) where a Kafka response should be: a TLS listener.
      const tlsRecord = !ssl && (chunk[0] === 0x15 || chunk[0] === 0x16) && chunk[1] === 3;
      if (tlsRecord && theirs()) mismatch("it answered in TLS");
      answered = heard = true;
    });
    socket.once("error", (error: Error & { code?: string }) => {
      lastError = `: ${error.message}`;
      const refused = /CERT|SIGNATURE|ISSUER|SELF.SIGNED|ALERT|UNKNOWN_CA/.test(`${error.code}`);
      if (refused && theirs()) onMismatch(Object.assign(error, { broker }));
    });
    socket.once("close", () => {
      if (!theirs() || heard || !connected || ++droppedUnanswered < 2) return;
      mismatch(`the connection was closed unanswered${lastError}`);
    });
    return socket;
  };
}

/**
 * What a failure to connect means, in words that say what to change: no broker; a
 * protocol, certificate, mechanism or password that does not fit; an ACL; no topic; or
 * what Kafka said. It names the broker, mechanism, user, topic or group; never a password.
 */
export function connectFailure(
  error: unknown,
  s: Pick<KafkaSettings, "KAFKA_BROKERS" | "KAFKA_TOPIC"> & Partial<KafkaSettings>,
): string {
  type Cause = { name?: string; type?: string; code?: string; message?: string };
  type Link = Cause & { broker?: string; unanswered?: boolean; cause?: Link; errors?: Link[] };
  const chain: Link[] = []; // the error, its causes, and the errors it gathers (one per topic)
  const walk = (e: Link | undefined) => {
    if (!e || chain.length >= 9) return;
    chain.push(e);
    walk(e.cause);
    for (const each of e.errors ?? []) walk(each);
  };
  walk(error as Link);
  const said = `: ${(chain.find((e) => e.type) ?? chain[0])?.message?.trim() ?? String(error)}`;
  const found = (pattern: RegExp) =>
    chain.some((e) => pattern.test(`${e.type} ${e.name} ${e.code}`));
  const at = chain.find((e) => e.broker)?.broker ?? s.KAFKA_BROKERS;
  const protocol = (s.KAFKA_SECURITY_PROTOCOL || "PLAINTEXT").toUpperCase();
  const who = s.KAFKA_SASL_USERNAME ? `user ${s.KAFKA_SASL_USERNAME}` : "this client";
  const mechanism = s.KAFKA_SASL_MECHANISM?.toUpperCase();
  const mismatch = `KAFKA_SECURITY_PROTOCOL=${protocol} does not match the listener at ${at}`;
  if (found(/UNKNOWN_TOPIC_OR_PARTITION/)) {
    return `Topic ${s.KAFKA_TOPIC} does not exist at ${at} (producer.ts creates it)${said}`;
  }
  if (found(/TOPIC_AUTHORIZATION/)) {
    return `Kafka at ${at} refused ${who} access to topic ${s.KAFKA_TOPIC} (an ACL)${said}`;
  }
  if (found(/GROUP_AUTHORIZATION/)) {
    return `Kafka at ${at} refused ${who} access to consumer group ${s.KAFKA_GROUP_ID} (an ACL)${said}`;
  }
  if (found(/GroupCoordinatorNotFound/)) {
    // KafkaJS drops the broker's reason here (its ERROR line above has it); a broker that
    // answers but names no coordinator for a group refuses the group: an ACL, most likely.
    return `Kafka at ${at} refused ${who} access to consumer group ${s.KAFKA_GROUP_ID} (an ACL, most likely: it names no coordinator for it)${said}`;
  }
  if (found(/AUTHORIZATION_FAILED/)) return `Kafka at ${at} refused ${who} (an ACL)${said}`;
  if (found(/UNSUPPORTED_SASL_MECHANISM/)) {
    return `Kafka at ${at} does not enable SASL mechanism ${mechanism} on this listener (KafkaJS does not pass on the ones it offers; these scripts know PLAIN, SCRAM-SHA-256 and SCRAM-SHA-512)${said}`;
  }
  if (found(/SASLAuthentication/)) {
    return `Kafka at ${at}: authentication failed for ${who} with ${mechanism} (check KAFKA_SASL_USERNAME, KAFKA_SASL_PASSWORD, KAFKA_SASL_MECHANISM)${said}`;
  }
  if (found(/ILLEGAL_SASL_STATE/))
    return `${mismatch}: it takes no SASL (SSL or PLAINTEXT?)${said}`;
  if (found(/ALERT.*(CERTIFICATE|UNKNOWN_CA)/)) {
    const ours = s.KAFKA_SSL_CERTIFICATE_LOCATION || s.KAFKA_SSL_CERTIFICATE_PEM;
    return ours
      ? `Kafka at ${at} refused our client certificate: it must be signed by a CA the broker trusts${said}`
      : `Kafka at ${at} wants a client certificate (mutual TLS: KAFKA_SSL_CERTIFICATE_LOCATION and KAFKA_SSL_KEY_LOCATION)${said}`;
  }
  if (found(/CERT|SIGNATURE|ISSUER|SELF.SIGNED/)) {
    return `Certificate verification failed for Kafka at ${at}: its certificate is not signed by a CA we trust, or not for that name (KAFKA_SSL_CA_LOCATION names the CA to trust)${said}`;
  }
  if (chain.some((e) => e.unanswered) || found(/ConnectionClosed/)) {
    return protocol.endsWith("SSL")
      ? `${mismatch}: it does not answer TLS (PLAINTEXT or SASL_PLAINTEXT?)${said}`
      : `${mismatch}: it closed the connection, so it wants TLS or SASL (SSL, SASL_SSL or SASL_PLAINTEXT?)${said}`;
  }
  if (found(/ERR_SSL|ERR_TLS/)) return `TLS with Kafka at ${at} failed${said}`;
  if (found(/Connection|BrokerNotFound|NoBrokerAvailable/) || /ECONN|ENOTFOUND/.test(said)) {
    return `Kafka is unreachable at ${at}${said}`;
  }
  return `Kafka at ${at} failed while we connected for topic ${s.KAFKA_TOPIC}${said}`;
}

/**
 * KafkaJS 2.2.4 arms a timer with a negative delay when nothing is throttled; the runtime
 * warns (TimeoutNegativeWarning) and waits 1 ms, as KafkaJS meant. Hide only that warning.
 */
export function hideTimeoutNegativeWarning() {
  for (const print of process.listeners("warning")) {
    process.off("warning", print);
    process.on("warning", (warning) => warning.name === "TimeoutNegativeWarning" || print(warning));
  }
}

function fail(message: string): never {
  console.error(message);
  process.exit(1);
}

// biome-ignore-start lint/correctness/noUnusedVariables: flag() is for scripts with a switch
// ---- Settings reader: each script of this project carries the same copy, so that it
// stands alone (tests/unit/drift.test.ts keeps the copies identical) ----

interface Setting<T> {
  fallback: T;
  doc: string;
  expected: string;
  parse: (raw: string) => T | undefined; // undefined: not a valid value
}

function text(fallback: string, doc: string, pattern = /\S/, expected = "text"): Setting<string> {
  return { fallback, doc, expected, parse: (raw) => (pattern.test(raw) ? raw.trim() : undefined) };
}

function number(fallback: number, doc: string, min: number, max: number, whole = true) {
  const expected = `${whole ? "a whole number" : "a number"} from ${min} to ${max}`;
  const parse = (raw: string) => {
    const n = Number(raw);
    return n >= min && n <= max && (!whole || Number.isInteger(n)) ? n : undefined;
  };
  return { fallback, doc, expected, parse } satisfies Setting<number>;
}

function flag(fallback: boolean, doc: string): Setting<boolean> {
  const parse = (raw: string) => ({ true: true, false: false })[raw.trim() as "true" | "false"];
  return { fallback, doc, expected: "true or false", parse };
}

/** Reads settings from the environment (unset or empty: the default); a bad one exits 2. */
function readSettings<S extends Record<string, Setting<unknown>>>(spec: S, exitCodes: string) {
  const help = process.argv.includes("--help");
  if (help) console.log(`Settings of ${process.argv[1]?.split("/").pop()}, from the environment:`);
  const values: Record<string, unknown> = {};
  let bad = false;
  for (const [name, { fallback, doc, expected, parse }] of Object.entries(spec)) {
    if (help) console.log(`  ${name.padEnd(20)} ${doc} [default: ${fallback}]`);
    const raw = process.env[name];
    values[name] = raw === undefined || raw === "" ? fallback : parse(raw);
    if (values[name] !== undefined) continue;
    console.error(`Bad setting ${name}=${JSON.stringify(raw)}: expected ${expected}`);
    bad = true;
  }
  if (help) console.log(`Exit codes: ${exitCodes}.`);
  if (help || bad) process.exit(help ? 0 : 2);
  return values as { [K in keyof S]: S[K]["fallback"] };
}
// biome-ignore-end lint/correctness/noUnusedVariables: -

if (import.meta.main) await main();
