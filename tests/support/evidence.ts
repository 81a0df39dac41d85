// Evidence from outside the consumer, for every end-to-end promise: what the API
// answered 201 (GET /succeeded), what the dead-letter topic holds (each letter matched
// back to the message it came from), and what the broker has committed. A script's own
// summary may be printed beside these, never used in their place.
import { expect } from "vitest";
import {
  committedOffsets,
  endOffsets,
  type KafkaTarget,
  type OffsetsByPartition,
  readTopic,
  type StoredMessage,
} from "./kafka.ts";
import type { MockApi } from "./services.ts";

/** The event id in a message's JSON value (malformed ones included, where it shows). */
export function idOf(message: Pick<StoredMessage, "value">): string | undefined {
  return message.value?.toString().match(/"id":"([^"]+)"/)?.[1];
}

/** How many times the API answered 201 for each id. */
export async function answeredCounts(
  api: Pick<MockApi, "succeeded">,
): Promise<Map<string, number>> {
  const counts = new Map<string, number>();
  for (const id of await api.succeeded()) counts.set(id, (counts.get(id) ?? 0) + 1);
  return counts;
}

/** Ids answered 201 more than once. */
export function answeredTwice(counts: Map<string, number>): string[] {
  return [...counts].filter(([, n]) => n > 1).map(([id]) => id);
}

/** Exactly once: the API answered 201 for each of `ids` once, and for nothing else. */
export async function expectAnsweredOnce(
  api: Pick<MockApi, "succeeded">,
  ids: string[],
): Promise<void> {
  const answered = await api.succeeded();
  expect(answered.length, "201 answers").toBe(ids.length);
  expect([...answered].sort()).toEqual([...ids].sort());
}

/**
 * At least once: the API answered 201 for each of `ids` (and for nothing else); returns
 * how many times each was answered, for a bound on the duplicates.
 */
export async function expectAnsweredAtLeastOnce(
  api: Pick<MockApi, "succeeded">,
  ids: string[],
): Promise<Map<string, number>> {
  const counts = await answeredCounts(api);
  expect([...counts.keys()].sort()).toEqual([...ids].sort());
  return counts;
}

/** A dead letter and the message it came from. */
export interface DeadLetter {
  letter: StoredMessage;
  origin: StoredMessage;
}

/**
 * The dead-letter topic, each letter matched back to its original through
 * dlq.source.topic/partition/offset: same key, same value, and no original twice.
 */
export async function readDeadLetters(
  brokers: KafkaTarget,
  topic: string,
  source: StoredMessage[],
  dlqTopic = `${topic}.dlq`,
): Promise<DeadLetter[]> {
  const byPosition = new Map(source.map((m) => [`${m.partition}@${m.offset}`, m]));
  const matched: DeadLetter[] = [];
  const seen = new Set<string>();
  for (const letter of await readTopic(brokers, dlqTopic)) {
    const { headers } = letter;
    expect(headers["dlq.source.topic"], JSON.stringify(headers)).toBe(topic);
    const position = `${headers["dlq.source.partition"]}@${headers["dlq.source.offset"]}`;
    const origin = byPosition.get(position);
    if (!origin) throw new Error(`a dead letter from ${position}, which ${topic} does not hold`);
    expect(letter.key).toBe(origin.key);
    expect(letter.value === null ? null : letter.value.toString("base64")).toBe(
      origin.value === null ? null : origin.value.toString("base64"),
    );
    expect(seen.has(position), `${position} dead-lettered twice`).toBe(false);
    seen.add(position);
    matched.push({ letter, origin });
  }
  return matched;
}

/** The group has committed every partition of `topic` to its end offset. */
export async function expectCommittedToEnd(
  brokers: KafkaTarget,
  groupId: string,
  topic: string,
): Promise<void> {
  expect(await committedOffsets(brokers, groupId, topic)).toEqual(await endOffsets(brokers, topic));
}

/** Messages at offsets below the committed ones: the broker says they are done. */
export function belowCommitted(messages: StoredMessage[], committed: OffsetsByPartition) {
  return messages.filter((m) => m.offset < Number(committed[m.partition] ?? -1));
}

/**
 * A clean run owes exactly once: every message either answered 201 once or
 * dead-lettered (matched back to it), never both, none left out; and every partition
 * committed to its end. Returns the dead letters for further checks.
 */
export async function expectExactlyOnce(
  brokers: KafkaTarget,
  api: Pick<MockApi, "succeeded">,
  groupId: string,
  topic: string,
): Promise<{ source: StoredMessage[]; letters: DeadLetter[] }> {
  const source = await readTopic(brokers, topic);
  const letters = await readDeadLetters(brokers, topic, source);
  const dead = new Set(letters.map(({ origin }) => `${origin.partition}@${origin.offset}`));
  const delivered = source.filter((m) => !dead.has(`${m.partition}@${m.offset}`));
  const ids = delivered.map((m) => idOf(m));
  expect(ids.every((id) => id !== undefined)).toBe(true);
  await expectAnsweredOnce(api, ids as string[]);
  const answered = new Set(await api.succeeded());
  for (const { origin } of letters) {
    const id = idOf(origin);
    if (id !== undefined)
      expect(answered.has(id), `${id} answered 201 and dead-lettered`).toBe(false);
  }
  await expectCommittedToEnd(brokers, groupId, topic);
  return { source, letters };
}
