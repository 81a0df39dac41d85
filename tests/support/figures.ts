// Figures the e2e tests measure (peak RSS, messages, seconds), collected in a file
// during the run and printed as one table at the end, so a reader of the CI log sees
// them without digging through test output.
import { appendFileSync, mkdirSync, readFileSync, rmSync } from "node:fs";
import { dirname, join } from "node:path";
import { inject } from "vitest";
import { kafkaHome } from "../../scripts/kafka-jvm.ts";
import type { RunResult } from "./child.ts";

export interface Figure {
  case: string;
  runtime: string;
  consumer: string;
  messages: number;
  /** peak RSS observed from outside, MB */
  observedPeakRssMb: number;
  /** what the script said in its summary, MB */
  reportedPeakRssMb?: number;
  ceilingMb?: number;
  seconds: number;
  exit: string;
  note?: string;
}

/** A file of its own per test run, so runs side by side do not mix their figures. */
export function figuresFile(): string {
  return join(kafkaHome, `test-figures-${process.pid}.jsonl`);
}

export function removeFigures(file: string) {
  rmSync(file, { force: true });
}

/** Called from tests: appends to the file the global setup chose for this run. */
export function recordFigure(figure: Figure) {
  const file = inject("figuresFile");
  mkdirSync(dirname(file), { recursive: true });
  appendFileSync(file, `${JSON.stringify(figure)}\n`);
}

/** What every run gives a figure: peak RSS seen and self-reported, its length, how it ended. */
export function runFigures(
  run: RunResult,
): Pick<Figure, "observedPeakRssMb" | "reportedPeakRssMb" | "seconds" | "exit"> {
  return {
    observedPeakRssMb: run.observedPeakRssMb,
    reportedPeakRssMb: Number(run.summary?.peakRssMb) || undefined,
    seconds: run.durationMs / 1_000,
    exit: run.signal ?? String(run.code),
  };
}

export function readFigures(file: string): Figure[] {
  try {
    return readFileSync(file, "utf8")
      .trim()
      .split("\n")
      .filter(Boolean)
      .map((line) => JSON.parse(line) as Figure);
  } catch {
    return [];
  }
}

/** A Markdown table of the figures, in the order they were measured. */
export function figuresTable(figures: Figure[]): string {
  const header =
    "| case | runtime | consumer | messages | peak RSS seen (MB) | reported (MB) | ceiling (MB) | seconds | exit |";
  const rule = "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | --- |";
  const rows = figures.map(
    (f) =>
      `| ${f.case} | ${f.runtime} | ${f.consumer} | ${f.messages} | ${f.observedPeakRssMb.toFixed(0)} | ${f.reportedPeakRssMb ?? "-"} | ${f.ceilingMb ?? "-"} | ${f.seconds.toFixed(1)} | ${f.exit}${f.note ? ` (${f.note})` : ""} |`,
  );
  return [header, rule, ...rows].join("\n");
}
