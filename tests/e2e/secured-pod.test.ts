// @module-tag full
// The memory promise over TLS: TLS buffers are memory too. consumer-solved.ts on its
// defaults in a 256 MB memory cgroup (a pod), 64 KB messages, a backlog larger than the
// pod, an API of 100 ms, on Bun and Node, once over SASL_SSL (SCRAM-SHA-512) and once in
// plain text against the same broker, the same backlog, one after the other: no OOM
// kill, the kernel's peak charge at least 25% under the limit, every id answered 201
// once, every partition committed, exit 0 on SIGTERM. The charged peak and the rate of
// both print at the end of the run (support/figures.ts), to compare.
import { afterAll, beforeAll, describe, expect, inject, it, vi } from "vitest";
import { createCgroup } from "../../scripts/cgroup.ts";
import type { Runtime } from "../../scripts/runtimes.ts";
import { requireCgroupSupport } from "../support/cgroups.ts";
import { startScript } from "../support/child.ts";
import { expectAnsweredOnce, expectCommittedToEnd } from "../support/evidence.ts";
import { recordFigure, runFigures } from "../support/figures.ts";
import { uniqueName } from "../support/kafka.ts";
import { PasswordWatch, securedAdmin, securedBroker, securedEnv } from "../support/secured.ts";
import {
  answered,
  type Backlog,
  type MockApi,
  produce,
  startMockApi,
} from "../support/services.ts";

const secured = securedBroker();
const plaintext = inject("kafkaSecuredPlaintext");
const admin = securedAdmin(secured);
const passwords = new PasswordWatch(secured);
const limitMb = 256;
const size = 64 * 1_024;
/** 20 times the solved consumer's 16 MB byte cap, as in pod.test.ts: 320 MB, past the pod */
const messages = Math.ceil((20 * 16 * 2 ** 20) / size);
vi.setConfig({ testTimeout: 240_000 });

const support = await requireCgroupSupport("secured-pod.test");

describe.skipIf(!support.ok)(`in a ${limitMb} MB pod, 64 KB messages, over TLS and not`, () => {
  let api: MockApi;
  let work: Backlog;
  beforeAll(async () => {
    api = await startMockApi({ LATENCY_MS: "100", JITTER_MS: "10" });
    // Written in plain text (faster); read both ways.
    work = await produce(plaintext, uniqueName("tls-pod-64k"), { messages, payloadBytes: size });
  }, 180_000);
  afterAll(async () => {
    await api?.stop();
  });

  const ways = [
    ["SASL_SSL, SCRAM-SHA-512", () => securedEnv(secured, "SASL_SSL SCRAM-SHA-512")],
    ["plain text", () => ({ KAFKA_BROKERS: plaintext })],
  ] as const;

  describe.each(["bun", "node"] as Runtime[])("on %s", (runtime) => {
    it.each(ways)("%s: the solved consumer finishes well under the limit", async (way, env) => {
      await api.reset();
      const groupId = `${work.topic}-${runtime}-${way.split(",")[0]}`;
      const cgroup = await createCgroup({ memoryLimitMb: limitMb, name: `tls-${runtime}` });
      try {
        const run = await startScript(runtime, "consumer-solved.ts", {
          env: {
            ...env(),
            KAFKA_TOPIC: work.topic,
            KAFKA_GROUP_ID: groupId,
            API_URL: api.usersUrl,
          },
          wrap: cgroup.wrap,
          stopWhen: answered(api, work.messages),
        }).done;
        passwords.watch(`consumer-solved.ts over ${way} on ${runtime}`, run);
        const stats = await cgroup.stats();
        const perSecond = work.messages / (Number(run.summary?.durationMs) / 1_000);
        const megabytes = (perSecond * size) / 2 ** 20;
        recordFigure({
          case: `pod, API 100 ms, 64 KB, ${way}`,
          runtime,
          consumer: "solved",
          messages: work.messages,
          ...runFigures(run),
          ceilingMb: limitMb,
          note: `charged peak ${stats.peakMb.toFixed(0)} MB, OOM kills ${stats.oomKills}, ${perSecond.toFixed(0)} msg/s, ${megabytes.toFixed(1)} MB/s`,
        });
        // The kernel's word first, then the API's and the broker's.
        expect(stats.oomKills, `exit ${run.code}/${run.signal}`).toBe(0);
        expect(stats.peakMb).toBeLessThanOrEqual(0.75 * limitMb);
        expect(run.stoppedWhenMet, run.stderr.slice(-2_000)).toBe(true);
        expect(run.code, run.stderr.slice(-2_000)).toBe(0);
        expect(run.summary).toMatchObject({ memoryLimitMb: limitMb, memoryLimitExceeded: false });
        await expectAnsweredOnce(api, work.ids);
        await expectCommittedToEnd(admin, groupId, work.topic);
      } finally {
        await cgroup.remove();
      }
    });
  });

  afterAll(() => {
    passwords.expectNoneLeaked(4);
  });
});
