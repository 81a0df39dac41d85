// The foundation: a real broker answers, and KafkaJS works against it in-process and
// as a child process on each runtime.
import { describe, expect, inject, it } from "vitest";
import { runtimes } from "../../scripts/runtimes.ts";
import { runScript } from "../support/child.ts";
import { committedOffsets, endOffsets, uniqueName } from "../support/kafka.ts";
import { roundTrip } from "../support/roundtrip.ts";

const brokers = inject("kafkaBrokers");

describe("a real Kafka broker", () => {
  it("takes a produce, a group consume and manual commits, and reports them back", async () => {
    const topic = uniqueName("roundtrip");
    const result = await roundTrip(brokers, topic, 20, 2);
    expect(result.consumed).toBe(20);
    const ends = await endOffsets(brokers, topic);
    expect(Object.values(ends).reduce((sum, end) => sum + Number(end), 0)).toBe(20);
    // Every partition's committed offset is its end offset: all 20 were committed.
    expect(await committedOffsets(brokers, result.groupId, topic)).toEqual(ends);
  });

  it.each(runtimes)("works with KafkaJS as a child process on %s", async (runtime) => {
    const topic = uniqueName(`roundtrip-${runtime}`);
    const run = await runScript(runtime, "tests/support/roundtrip.ts", {
      env: { KAFKA_BROKERS: brokers, ROUNDTRIP_TOPIC: topic },
    });
    expect(run.code, run.stderr).toBe(0);
    expect(run.summary).toMatchObject({ topic, consumed: 20, runtime });
    expect(await committedOffsets(brokers, `${topic}-group`, topic)).toEqual(
      await endOffsets(brokers, topic),
    );
  });
});
