/**
 * bench/medians.ts: the median of several bench/strategies.ts runs. Reads the JSON files
 * given (one per run, each from its own OUT_DIR), and prints, per strategy, each run's
 * steady msg/s and their median, then the median of each run's solved ÷ bare fetch loop
 * and @platformatic/kafka ÷ solved (ratios taken within a run, then the median). Medians
 * are by nearest rank, as everywhere in bench/ (of two runs, the lower).
 *
 *   for i in 1 2 3; do REGIME=fast RUNTIME=node BACKLOGS=60000 OUT_DIR=/tmp/fast-node-$i node bench/strategies.ts; done
 *   node bench/medians.ts /tmp/fast-node-*\/strategies-*.json
 */
import { readFile } from "node:fs/promises";
import { fmt, markdownTable, median } from "./harness.ts";

interface StrategyRun {
  strategy: string;
  label: string;
  /** null when the run ended before its middle (it died) */
  steadyPerSec: number | null;
  peakRssMb: number;
}
interface StrategiesFile {
  date: string;
  backlogs: { messages: number; runs: StrategyRun[] }[];
}

async function main() {
  const files = process.argv.slice(2);
  if (files.length === 0) {
    console.error("usage: node bench/medians.ts <strategies-*.json>...");
    process.exit(2);
  }
  const runs = await Promise.all(
    files.map(async (file) => JSON.parse(await readFile(file, "utf8")) as StrategiesFile),
  );
  const byStrategy = new Map<string, { label: string; steady: (number | null)[]; rss: number[] }>();
  const ratios = { solvedOverLoop: [] as number[], platformaticOverSolved: [] as number[] };
  for (const run of runs) {
    for (const backlog of run.backlogs) {
      const steady = (id: string) => backlog.runs.find((r) => r.strategy === id)?.steadyPerSec;
      for (const r of backlog.runs) {
        const entry = byStrategy.get(r.strategy) ?? { label: r.label, steady: [], rss: [] };
        entry.steady.push(r.steadyPerSec);
        entry.rss.push(r.peakRssMb);
        byStrategy.set(r.strategy, entry);
      }
      const [loop, solved, platformatic] = ["fetch-loop", "solved", "platformatic"].map(steady);
      if (loop && solved) ratios.solvedOverLoop.push(solved / loop);
      if (solved && platformatic) ratios.platformaticOverSolved.push(platformatic / solved);
    }
  }
  const rows = [...byStrategy.values()].map(({ label, steady, rss }) => [
    label,
    steady.map((n) => fmt(n)).join(" / "),
    fmt(median(steady.filter((n) => n !== null))),
    fmt(median(rss)),
  ]);
  console.log(
    markdownTable(["strategy", "steady msg/s, each run", "median", "peak RSS MB, median"], rows, [
      "l",
      "r",
      "r",
      "r",
    ]),
  );
  const show = (values: number[]) =>
    values.length ? `${fmt(median(values), 2)} (${values.map((v) => fmt(v, 2)).join(", ")})` : "-";
  console.log(`\nsolved ÷ bare fetch loop, median of the runs: ${show(ratios.solvedOverLoop)}`);
  console.log(
    `@platformatic/kafka ÷ solved, median of the runs: ${show(ratios.platformaticOverSolved)}`,
  );
}

if (import.meta.main) await main();
