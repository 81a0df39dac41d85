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
// ---- Memory figures: every consumer of this project carries the same copy
// (tests/unit/drift.test.ts keeps the copies identical) ----

/**
 * Samples resident memory (RSS: what a container's limit counts) and the JS heap every
 * 100 ms, keeps the peaks, and calls `onExceeded` once when RSS passes `limitMb`
 * (0: never), as a pod is killed at its limit.
 */
function watchMemory(limitMb: number, onExceeded: (rssMb: number) => void) {
  const figures = { rssMb: 0, heapMb: 0, peakRssMb: 0, peakHeapMb: 0 };
  const sample = () => {
    const { rss, heapUsed } = process.memoryUsage();
    figures.rssMb = Math.round(rss / 2 ** 20);
    figures.heapMb = Math.round(heapUsed / 2 ** 20);
    figures.peakRssMb = Math.max(figures.peakRssMb, figures.rssMb);
    figures.peakHeapMb = Math.max(figures.peakHeapMb, figures.heapMb);
    if (limitMb > 0 && figures.rssMb > limitMb) {
      clearInterval(timer);
      onExceeded(figures.rssMb);
    }
  };
  const timer = setInterval(sample, 100);
  sample();
  return { figures, stop: () => clearInterval(timer) };
}

function runtimeName(): string {
  if ("Bun" in globalThis) return `bun ${process.versions.bun}`;
  if ("Deno" in globalThis) return `deno ${process.versions.deno}`;
  return `node ${process.versions.node}`;
}

const settings = readSettings(
  {
    KAFKA_BROKERS: text("localhost:9092", "comma-separated bootstrap servers"),
    DLQ: text("", "dead letters (empty: none)"),
    API_URL: text(
      "http://127.0.0.1:3000/users",
      "where",
      /^\s*https?:\/\/\S+\s*$/,
      "an http(s) URL",
    ),
    HIGH: number(10, "high", 1, 100),
    RATE: number(0, "rate", 0, 1, false),
    FLAG: flag(true, "a flag"),
  },
  "0 done, 2 bad setting",
);
const h: number = settings.HIGH;
const f: boolean = settings.FLAG;
const t: string = settings.DLQ;
console.log(JSON.stringify(settings), h, f, t, runtimeName());
const m = watchMemory(0, () => {});
m.stop();
