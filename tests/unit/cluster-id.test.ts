// The JVM launcher's cluster ids must be what Kafka's storage tool accepts.
import { expect, it } from "vitest";
import { kraftClusterId } from "../../scripts/kafka-jvm.ts";

it("makes 16-byte URL-safe ids that never start with '-' (the storage tool would read an option)", () => {
  // Without the rule, about 1 id in 64 starts with "-": 10,000 would hold ~156.
  for (let i = 0; i < 10_000; i++) {
    const id = kraftClusterId();
    expect(id).toMatch(/^[A-Za-z0-9_][A-Za-z0-9_-]{21}$/);
    expect(Buffer.from(id, "base64url")).toHaveLength(16);
  }
});
