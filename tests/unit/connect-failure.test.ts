// What each failure to connect says, without a broker: the errors as KafkaJS 2.2.4 and
// the runtimes' TLS gave them against the secured test broker (tests/e2e/secured-*), in
// every script that talks to Kafka (their copies are one, tests/unit/drift.test.ts). Each
// message says what to change and names the broker, mechanism, user, topic or group;
// none holds the password it was given.
import kafkajs from "kafkajs";
import { describe, expect, it } from "vitest";
import * as backpressure from "../../consumer-backpressure.ts";
import * as fast from "../../consumer-fast.ts";
import * as solved from "../../consumer-solved.ts";
import * as producer from "../../producer.ts";

const { KafkaJSConnectionError, KafkaJSNumberOfRetriesExceeded, KafkaJSProtocolError } = kafkajs;
const password = "s3cret-Pa55word";
const sasl = {
  KAFKA_BROKERS: "kafka.example.com:9096",
  KAFKA_TOPIC: "ORDERS",
  KAFKA_GROUP_ID: "billing",
  KAFKA_SECURITY_PROTOCOL: "sasl_ssl",
  KAFKA_SASL_MECHANISM: "scram-sha-512",
  KAFKA_SASL_USERNAME: "alice",
  KAFKA_SASL_PASSWORD: password,
};
const at = "10.0.0.7:9096"; // the broker an error names, rather than the bootstrap list
const protocolError = (type: string, code: number, message: string) =>
  new KafkaJSProtocolError(Object.assign(new Error(message), { type, code, retriable: false }));
const connectionError = (message: string, code: string) =>
  new KafkaJSNumberOfRetriesExceeded(
    new KafkaJSConnectionError(`Connection error: ${message}`, { broker: at, code }),
    { retryCount: 5, retryTime: 5_000 },
  );
/** What watchedSockets hands over: an error seen before any broker answered. */
const unanswered = (message: string) =>
  Object.assign(new Error(message), { broker: at, unanswered: true });

describe.each([
  ["producer.ts", producer],
  ["consumer-fast.ts", fast],
  ["consumer-backpressure.ts", backpressure],
  ["consumer-solved.ts", solved],
])("%s", (_file, script) => {
  const says = (error: unknown, settings: Record<string, string> = sasl) => {
    const message = script.connectFailure(error, { ...sasl, ...settings });
    expect(message).not.toContain(password);
    return message;
  };

  it("a wrong password: authentication failed, naming the mechanism and the user", () => {
    const error = Object.assign(
      new Error(
        "SASL SCRAM SHA512 authentication failed: Authentication failed during authentication due to invalid credentials with SASL mechanism SCRAM-SHA-512",
      ),
      { name: "KafkaJSSASLAuthenticationError" },
    );
    expect(says(error)).toMatch(
      /^Kafka at kafka\.example\.com:9096: authentication failed for user alice with SCRAM-SHA-512 \(check KAFKA_SASL_USERNAME, KAFKA_SASL_PASSWORD, KAFKA_SASL_MECHANISM\): SASL SCRAM/,
    );
  });

  it("an untrusted broker certificate: certificate verification, naming the broker", () => {
    const error = connectionError(
      "self-signed certificate in certificate chain",
      "SELF_SIGNED_CERT_IN_CHAIN",
    );
    expect(says(error)).toMatch(
      /^Certificate verification failed for Kafka at 10\.0\.0\.7:9096: .*KAFKA_SSL_CA_LOCATION/,
    );
  });

  it("a client certificate the broker refuses, or none where it wants one", () => {
    const alert = connectionError(
      "ssl/tls alert bad certificate\n",
      "ERR_SSL_SSL/TLS_ALERT_BAD_CERTIFICATE",
    );
    expect(says(alert, { KAFKA_SECURITY_PROTOCOL: "SSL" })).toMatch(
      /^Kafka at 10\.0\.0\.7:9096 wants a client certificate \(mutual TLS/,
    );
    expect(says(alert, { KAFKA_SSL_CERTIFICATE_LOCATION: "me.pem" })).toMatch(
      /^Kafka at 10\.0\.0\.7:9096 refused our client certificate: .*certificate$/,
    );
  });

  it("a protocol that does not match the listener, either way", () => {
    expect(
      says(unanswered("it answered in TLS"), { KAFKA_SECURITY_PROTOCOL: "PLAINTEXT" }),
    ).toMatch(
      /^KAFKA_SECURITY_PROTOCOL=PLAINTEXT does not match the listener at 10\.0\.0\.7:9096: .*TLS/,
    );
    const reset = unanswered(
      "the connection was closed unanswered: Client network socket disconnected before secure TLS connection was established",
    );
    expect(says(reset, { KAFKA_SECURITY_PROTOCOL: "ssl" })).toMatch(
      /^KAFKA_SECURITY_PROTOCOL=SSL does not match the listener at 10\.0\.0\.7:9096: it does not answer TLS/,
    );
    const noSasl = protocolError(
      "ILLEGAL_SASL_STATE",
      34,
      "Request is not valid given the current SASL state",
    );
    expect(says(noSasl)).toMatch(
      /^KAFKA_SECURITY_PROTOCOL=SASL_SSL does not match .*takes no SASL/,
    );
  });

  it("a mechanism the listener does not enable, named", () => {
    const error = protocolError(
      "UNSUPPORTED_SASL_MECHANISM",
      33,
      "The broker does not support the requested SASL mechanism",
    );
    expect(says(error, { KAFKA_SASL_MECHANISM: "PLAIN" })).toMatch(
      /^Kafka at kafka\.example\.com:9096 does not enable SASL mechanism PLAIN on this listener/,
    );
  });

  it("an ACL on the topic (also among the errors createTopics gathers) or on the group", () => {
    const topic = protocolError(
      "TOPIC_AUTHORIZATION_FAILED",
      29,
      "Not authorized to access topics: [Topic authorization failed]",
    );
    expect(says(topic)).toMatch(
      /refused user alice access to topic ORDERS \(an ACL\): Not authorized/,
    );
    const gathered = Object.assign(new Error("Topic creation errors"), { errors: [topic] });
    expect(says(gathered)).toMatch(
      /refused user alice access to topic ORDERS \(an ACL\): Not authorized/,
    );
    const group = protocolError(
      "GROUP_AUTHORIZATION_FAILED",
      30,
      "Not authorized to access group: Group authorization failed",
    );
    expect(says(group)).toMatch(/refused user alice access to consumer group billing \(an ACL\)/);
    const noCoordinator = Object.assign(new Error("Failed to find group coordinator"), {
      name: "KafkaJSGroupCoordinatorNotFound",
    });
    expect(says(noCoordinator)).toMatch(
      /refused user alice access to consumer group billing \(an ACL, most likely/,
    );
  });
});
