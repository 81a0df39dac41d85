// The broker that demands TLS and SASL (tests/global-setup.ts provides it; see
// scripts/kafka-secured.ts): the settings each way of connecting takes, the tests' own
// admin client over SASL_SSL, and the watch that no output ever holds a password.
import { Buffer } from "node:buffer";
import { readFileSync } from "node:fs";
import kafkajs from "kafkajs";
import { expect, inject } from "vitest";
import { clientOptions, type SecuredBroker } from "../../scripts/kafka-secured.ts";
import type { RunResult } from "./child.ts";
import { type KafkaTarget, withAdmin } from "./kafka.ts";

/** The secured listeners of this run; a run without them fails here, with the reason. */
export function securedBroker(): SecuredBroker {
  const secured = inject("kafkaSecured");
  if ("unavailable" in secured)
    throw new Error(`no broker demands TLS and SASL: ${secured.unavailable}`);
  return secured;
}

/** How a script connects, as a user of a managed cluster would set it. */
export type Way =
  | "SASL_SSL SCRAM-SHA-512" // Amazon MSK, Aiven (with a CA file)
  | "SASL_SSL SCRAM-SHA-256"
  | "SASL_SSL PLAIN" // Confluent Cloud
  | "mutual TLS, files" // a client certificate and an encrypted key, from files
  | "mutual TLS, PEM text"; // the same as PEM text in the settings

/** The settings for `way`, as environment for a script (KAFKA_BROKERS included). */
export function securedEnv(secured: SecuredBroker, way: Way): Record<string, string> {
  if (way.startsWith("mutual TLS")) {
    const ssl = { KAFKA_BROKERS: secured.addresses.SSL, KAFKA_SECURITY_PROTOCOL: "SSL" };
    if (way === "mutual TLS, files") {
      return {
        ...ssl,
        KAFKA_SSL_CA_LOCATION: secured.caFile,
        KAFKA_SSL_CERTIFICATE_LOCATION: secured.certificateFile,
        KAFKA_SSL_KEY_LOCATION: secured.encryptedKeyFile,
        KAFKA_SSL_KEY_PASSWORD: secured.keyPassword,
      };
    }
    return {
      ...ssl,
      KAFKA_SSL_CA_PEM: readFileSync(secured.caFile, "utf8"),
      KAFKA_SSL_CERTIFICATE_PEM: readFileSync(secured.certificateFile, "utf8"),
      KAFKA_SSL_KEY_PEM: readFileSync(secured.keyFile, "utf8"),
    };
  }
  return {
    KAFKA_BROKERS: secured.addresses.SASL_SSL,
    KAFKA_SECURITY_PROTOCOL: "SASL_SSL",
    KAFKA_SASL_MECHANISM: way.split(" ")[1] as string,
    KAFKA_SASL_USERNAME: secured.alice.username,
    KAFKA_SASL_PASSWORD: secured.alice.password,
    KAFKA_SSL_CA_LOCATION: secured.caFile,
  };
}

/** The tests' own clients: admin (a super user) over SASL_SSL, SCRAM-SHA-512. */
export function securedAdmin(secured: SecuredBroker): KafkaTarget {
  return clientOptions(secured, "SASL_SSL", secured.admin);
}

/**
 * Every output of every run a test file makes, and every password it handed out (right
 * or wrong, the key's passphrase too): at the end, no output may hold any of them.
 */
export class PasswordWatch {
  readonly runs: { what: string; run: RunResult }[] = [];
  private readonly secrets = new Set<string>();

  constructor(secured: SecuredBroker) {
    for (const secret of [secured.alice.password, secured.admin.password, secured.keyPassword]) {
      this.secret(secret);
    }
  }

  /** A password a run was given; also looked for in base64, as it goes over the wire. */
  secret(value: string): string {
    this.secrets.add(value);
    this.secrets.add(Buffer.from(value).toString("base64"));
    return value;
  }

  /** Keeps a run's output for the final check, and checks it now. */
  watch(what: string, run: RunResult): RunResult {
    this.runs.push({ what, run });
    this.expectClean(what, run);
    return run;
  }

  expectClean(what: string, run: Pick<RunResult, "stdout" | "stderr">): void {
    for (const secret of this.secrets) {
      expect(run.stdout.includes(secret), `${what}: a password in stdout`).toBe(false);
      expect(run.stderr.includes(secret), `${what}: a password in stderr`).toBe(false);
    }
  }

  /** The check over everything the file ran; `atLeast` runs, so it was not vacuous. */
  expectNoneLeaked(atLeast: number): void {
    expect(this.runs.length).toBeGreaterThanOrEqual(atLeast);
    for (const { what, run } of this.runs) this.expectClean(what, run);
  }
}

/** An ACL that refuses alice a topic or a group (named literally), made by admin. */
export async function denyAlice(
  secured: SecuredBroker,
  resource: { topic: string } | { group: string },
): Promise<void> {
  // Named imports of these do not reach Node's ESM loader from KafkaJS's CommonJS.
  const { AclOperationTypes, AclPermissionTypes, AclResourceTypes, ResourcePatternTypes } = kafkajs;
  const [resourceType, resourceName] =
    "topic" in resource
      ? [AclResourceTypes.TOPIC, resource.topic]
      : [AclResourceTypes.GROUP, resource.group];
  await withAdmin(securedAdmin(secured), async (admin) => {
    await admin.createAcls({
      acl: [
        {
          resourceType,
          resourceName,
          resourcePatternType: ResourcePatternTypes.LITERAL,
          principal: secured.principal,
          host: "*",
          operation: AclOperationTypes.ALL,
          permissionType: AclPermissionTypes.DENY,
        },
      ],
    });
  });
}
