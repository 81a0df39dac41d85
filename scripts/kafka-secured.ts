// The secured side of the test broker: listeners that demand TLS and SASL, as every
// managed Kafka does, so the scripts' security settings are tested against a broker
// that refuses what is wrong. Made at start, kept in the broker's own folder under
// .kafka/ (ignored by git), never printed, gone when the broker is removed:
//   - a CA, the broker's certificate (localhost, 127.0.0.1) and a client certificate
//     for mutual TLS (CN=alice), with openssl; the client key once plain, once
//     encrypted with a passphrase;
//   - random passwords for the users: `admin` (a super user, for the tests' own
//     clients) and `alice` (what a script connects as), SCRAM credentials given to the
//     storage tool at format time as salted passwords (no password on a command line),
//     PLAIN users in the SASL_SSL listener's JAAS settings;
//   - an authorizer: the plain-text listener (User:ANONYMOUS) and admin are super
//     users, so the rest of the suite is unaffected; alice may use every topic and
//     group unless a test denies her one.
import { execFile } from "node:child_process";
import { pbkdf2Sync, randomBytes } from "node:crypto";
import { readFileSync } from "node:fs";
import { chmod, mkdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { promisify } from "node:util";
import kafkajs, { Kafka, type KafkaConfig, logLevel, type SASLOptions } from "kafkajs";
import { hideTimeoutNegativeWarning } from "./quiet-kafkajs.ts";

const run = promisify(execFile);

/** The secured listeners' names, as `listener.security.protocol.map` maps them. */
export const securedListeners = ["SASL_SSL", "SSL", "SASL_PLAINTEXT"] as const;
export type SecuredListener = (typeof securedListeners)[number];

export interface SecuredPorts {
  /** SASL over TLS: PLAIN, SCRAM-SHA-256 and SCRAM-SHA-512 */
  SASL_SSL: number;
  /** TLS that requires a client certificate (mutual TLS) */
  SSL: number;
  /** SASL without TLS, SCRAM-SHA-256 only: the mechanism another one asks for is refused */
  SASL_PLAINTEXT: number;
}

export interface User {
  username: string;
  password: string;
}

/** What a client needs to reach the secured listeners; paths are absolute. */
export interface SecuredBroker {
  /** host:port per listener */
  addresses: Record<SecuredListener, string>;
  /** mechanisms each SASL listener enables */
  mechanisms: Record<"SASL_SSL" | "SASL_PLAINTEXT", string[]>;
  /** the CA that signed the broker's certificate (PEM) */
  caFile: string;
  /** alice's client certificate and key (PEM), for mutual TLS */
  certificateFile: string;
  keyFile: string;
  /** the same key, encrypted with `keyPassword` */
  encryptedKeyFile: string;
  keyPassword: string;
  /** a super user, for the tests' own admin clients */
  admin: User;
  /** an ordinary user; principal User:alice over SASL and over mutual TLS */
  alice: User;
  /** the principal alice has on every secured listener */
  principal: string;
}

const saslSslMechanisms = ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"];
const saslPlaintextMechanisms = ["SCRAM-SHA-256"];
const scramIterations = 4_096;

const password = () => randomBytes(18).toString("base64url");

async function openssl(cwd: string, ...args: string[]) {
  try {
    await run("openssl", args, { cwd, timeout: 60_000 });
  } catch (error) {
    const { code, stderr } = error as { code?: string; stderr?: string };
    if (code === "ENOENT") {
      throw new Error(
        "openssl is needed to make the test broker's certificates (apt-get install openssl)",
      );
    }
    throw new Error(`openssl ${args[0]} failed: ${stderr?.trim() || String(error)}`);
  }
}

/**
 * Makes the CA, the certificates, the keys and the users' passwords in `dir` (once:
 * a restart of the same broker reuses them), and returns where they are.
 */
export async function makeSecrets(dir: string): Promise<Omit<SecuredBroker, "addresses">> {
  const file = (name: string) => join(dir, name);
  const recorded = file("secured.json");
  try {
    return JSON.parse(await readFile(recorded, "utf8")) as Omit<SecuredBroker, "addresses">;
  } catch {
    // not made yet
  }
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const days = "30";
  const rsa = ["-newkey", "rsa:2048", "-nodes"];
  // The CA, and a certificate it signs for the broker and one for the client.
  await openssl(
    dir,
    "req",
    "-x509",
    ...rsa,
    "-keyout",
    "ca.key",
    "-out",
    "ca.pem",
    "-days",
    days,
    "-subj",
    "/CN=kafka-backpressure test CA",
  );
  const sign = async (name: string, subject: string, extension: string) => {
    await openssl(
      dir,
      "req",
      ...rsa,
      "-keyout",
      `${name}.key`,
      "-out",
      `${name}.csr`,
      "-subj",
      subject,
    );
    await writeFile(file(`${name}.ext`), `${extension}\n`);
    await openssl(
      dir,
      "x509",
      "-req",
      "-in",
      `${name}.csr`,
      "-CA",
      "ca.pem",
      "-CAkey",
      "ca.key",
      "-CAcreateserial",
      "-out",
      `${name}.pem`,
      "-days",
      days,
      "-extfile",
      `${name}.ext`,
    );
  };
  await sign("broker", "/CN=localhost", "subjectAltName=DNS:localhost,IP:127.0.0.1");
  await sign("client", "/CN=alice", "extendedKeyUsage=clientAuth");
  const keyPassword = password();
  await writeFile(file("client-key.pass"), keyPassword, { mode: 0o600 });
  await openssl(
    dir,
    "pkcs8",
    "-topk8",
    "-in",
    "client.key",
    "-out",
    "client-encrypted.key",
    "-v2",
    "aes-256-cbc",
    "-passout",
    "file:client-key.pass",
  );
  // The broker's keystore as Kafka reads PEM: its key, then its certificate and the CA's.
  const keystore = [
    await readFile(file("broker.key"), "utf8"),
    await readFile(file("broker.pem"), "utf8"),
    await readFile(file("ca.pem"), "utf8"),
  ].join("\n");
  await writeFile(file("broker-keystore.pem"), keystore, { mode: 0o600 });
  for (const key of ["ca.key", "broker.key", "client.key", "client-encrypted.key"]) {
    await chmod(file(key), 0o600);
  }
  const made = {
    mechanisms: { SASL_SSL: saslSslMechanisms, SASL_PLAINTEXT: saslPlaintextMechanisms },
    caFile: file("ca.pem"),
    certificateFile: file("client.pem"),
    keyFile: file("client.key"),
    encryptedKeyFile: file("client-encrypted.key"),
    keyPassword,
    admin: { username: "admin", password: password() },
    alice: { username: "alice", password: password() },
    principal: "User:alice",
  };
  await writeFile(recorded, `${JSON.stringify(made, null, 2)}\n`, { mode: 0o600 });
  return made;
}

/**
 * The lines server.properties needs for the secured listeners (after the plain ones);
 * `dir`: the secrets' folder as the broker sees it (in a container, where it is mounted).
 */
export function securedProperties(
  secrets: Pick<SecuredBroker, "admin" | "alice">,
  dir: string,
  ports: SecuredPorts,
  hosts: { bind?: string; advertised?: string } = {},
) {
  const { bind = "127.0.0.1", advertised = bind } = hosts;
  const plain = (name: string) => `org.apache.kafka.common.security.${name}`;
  const users = [secrets.admin, secrets.alice];
  // PLAIN checks passwords against the listener's JAAS settings; SCRAM against the
  // credentials the storage tool put in the cluster's metadata.
  const plainJaas = `${plain("plain.PlainLoginModule")} required ${users.map((u) => `user_${u.username}="${u.password}"`).join(" ")};`;
  const scramJaas = `${plain("scram.ScramLoginModule")} required;`;
  const at = (host: string) =>
    securedListeners.map((name) => `${name}://${host}:${ports[name]}`).join(",");
  const protocolMap = securedListeners.map((name) => `${name}:${name}`).join(",");
  return {
    listeners: at(bind),
    advertised: at(advertised),
    protocolMap,
    lines: [
      "# Secured listeners (scripts/kafka-secured.ts): the certificates and passwords are",
      "# made at start in this folder; nothing here is committed.",
      "ssl.keystore.type=PEM",
      `ssl.keystore.location=${join(dir, "broker-keystore.pem")}`,
      "ssl.truststore.type=PEM",
      `ssl.truststore.location=${join(dir, "ca.pem")}`,
      "listener.name.ssl.ssl.client.auth=required",
      "# CN=alice in a client certificate is the principal User:alice.",
      "ssl.principal.mapping.rules=RULE:^CN=([^,]+).*$/$1/,DEFAULT",
      `listener.name.sasl_ssl.sasl.enabled.mechanisms=${saslSslMechanisms.join(",")}`,
      `listener.name.sasl_ssl.plain.sasl.jaas.config=${plainJaas}`,
      `listener.name.sasl_ssl.scram-sha-256.sasl.jaas.config=${scramJaas}`,
      `listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=${scramJaas}`,
      `listener.name.sasl_plaintext.sasl.enabled.mechanisms=${saslPlaintextMechanisms.join(",")}`,
      `listener.name.sasl_plaintext.scram-sha-256.sasl.jaas.config=${scramJaas}`,
      "# ACLs are enforced; the plain-text and controller listeners (User:ANONYMOUS) and",
      "# admin may do anything, alice what the ACLs made at start allow her.",
      "authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer",
      `super.users=User:ANONYMOUS;User:${secrets.admin.username}`,
      "allow.everyone.if.no.acl.found=false",
    ],
  };
}

/**
 * `--add-scram` arguments for the storage tool: each user's SCRAM-SHA-256 and -512
 * credentials as salt and salted password (RFC 5802's Hi), so that no password is on
 * a command line, where `ps` would show it.
 */
export function scramArguments(secrets: Pick<SecuredBroker, "admin" | "alice">): string[] {
  const args: string[] = [];
  for (const user of [secrets.admin, secrets.alice]) {
    for (const [mechanism, digest, length] of [
      ["SCRAM-SHA-256", "sha256", 32],
      ["SCRAM-SHA-512", "sha512", 64],
    ] as const) {
      const salt = randomBytes(16);
      const salted = pbkdf2Sync(user.password, salt, scramIterations, length, digest);
      const fields = [
        `name=${user.username}`,
        `iterations=${scramIterations}`,
        `salt="${salt.toString("base64")}"`,
        `saltedpassword="${salted.toString("base64")}"`,
      ];
      args.push("--add-scram", `${mechanism}=[${fields.join(",")}]`);
    }
  }
  return args;
}

/** The KafkaJS options that reach `listener` as `user` (or with alice's certificate). */
export function clientOptions(
  secured: SecuredBroker,
  listener: SecuredListener,
  user: User = secured.admin,
  mechanism = "SCRAM-SHA-512",
): KafkaConfig {
  const brokers = [secured.addresses[listener]];
  const ca = [readFileSync(secured.caFile, "utf8")];
  if (listener === "SSL") {
    const cert = readFileSync(secured.certificateFile, "utf8");
    const key = readFileSync(secured.keyFile, "utf8");
    return { brokers, ssl: { ca, cert, key } };
  }
  const sasl = { mechanism, username: user.username, password: user.password } as SASLOptions;
  return { brokers, ssl: listener === "SASL_SSL" ? { ca } : undefined, sasl };
}

/**
 * Once the broker is up: admin logs in over SASL_SSL (or the secured listeners are not
 * what the tests expect), and lets alice use every topic and group (a test denies her
 * one with an ACL of its own).
 */
export async function securedReady(secured: SecuredBroker): Promise<void> {
  hideTimeoutNegativeWarning();
  // Named imports of these do not reach Node's ESM loader from KafkaJS's CommonJS.
  const { AclOperationTypes, AclPermissionTypes, AclResourceTypes, ResourcePatternTypes } = kafkajs;
  const quiet = { logLevel: logLevel.NOTHING, retry: { retries: 3 } };
  const admin = new Kafka({ ...clientOptions(secured, "SASL_SSL"), ...quiet }).admin();
  try {
    await admin.connect();
  } catch (error) {
    throw new Error(`the SASL_SSL listener refused admin: ${(error as Error).message}`);
  }
  try {
    const allow = (resourceType: number) => ({
      resourceType,
      resourceName: "*",
      resourcePatternType: ResourcePatternTypes.LITERAL,
      principal: secured.principal,
      host: "*",
      operation: AclOperationTypes.ALL,
      permissionType: AclPermissionTypes.ALLOW,
    });
    await admin.createAcls({ acl: [allow(AclResourceTypes.TOPIC), allow(AclResourceTypes.GROUP)] });
  } finally {
    await admin.disconnect();
  }
}
