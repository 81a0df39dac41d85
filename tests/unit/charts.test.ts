// The SVG charts: rendered from small fixed data, and checked for what a reader needs
// to see (title, a line per series with its legend label, the labelled limits), so an
// empty or half-drawn chart fails.
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { memoryChart, throughputChart, writeChart } from "../../scripts/charts.ts";

const memorySeries = [
  {
    label: "unbounded",
    samples: [0, 500, 1_000, 1_500, 2_000].map((atMs, i) => ({ atMs, rssMb: 60 + i * 50 })),
  },
  {
    label: "solved",
    samples: [0, 500, 1_000, 1_500, 2_000, 2_500].map((atMs, i) => ({ atMs, rssMb: 70 + (i % 2) })),
  },
];

const throughputSeries = [
  { label: "sequential", points: [0, 1, 2, 3].map((atS) => ({ atS, perSec: 1 })) },
  { label: "solved", points: [0, 1, 2, 3].map((atS) => ({ atS, perSec: atS === 0 ? 0 : 195 })) },
];

/** The `d` and stroke of each drawn line (one per series). */
function lines(svg: string) {
  return [...svg.matchAll(/<path [^>]*aria-roledescription="line mark"[^>]*>/g)].map(([tag]) => ({
    d: tag.match(/ d="([^"]*)"/)?.[1] ?? "",
    stroke: tag.match(/ stroke="([^"]*)"/)?.[1],
  }));
}

/** The dashed rules: the ceiling or the theoretical limit, not the axes or grid. */
function dashedRules(svg: string) {
  return [...svg.matchAll(/<line [^>]*aria-roledescription="rule mark"[^>]*>/g)]
    .map(([tag]) => tag)
    .filter((tag) => tag.includes("stroke-dasharray"));
}

const textElement = (text: string) => new RegExp(`<text [^>]*>${escapeRegExp(text)}</text>`);

function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
}

describe("memoryChart", () => {
  it("draws RSS over time for each run, with the labelled ceiling and a legend", async () => {
    const svg = await memoryChart(memorySeries, { ceilingMb: 256, title: "Memory per run" });
    expect(svg.startsWith("<svg")).toBe(true);
    expect(svg).toMatch(/width="720" height="360"/);
    expect(svg).toMatch(textElement("Memory per run"));
    expect(svg).toMatch(textElement("memory ceiling 256 MB"));
    for (const { label } of memorySeries) expect(svg).toMatch(textElement(label)); // legend
    expect(svg).toMatch(textElement("time (s)"));
    expect(svg).toMatch(textElement("resident memory, RSS (MB)"));

    const drawn = lines(svg);
    expect(drawn).toHaveLength(memorySeries.length);
    memorySeries.forEach(({ samples }, i) => {
      // one segment between each pair of samples
      expect(drawn[i]?.d.match(/L/g)?.length).toBe(samples.length - 1);
    });
    expect(new Set(drawn.map((line) => line.stroke)).size).toBe(memorySeries.length);
    expect(dashedRules(svg)).toHaveLength(1);
  });

  it("keeps the ceiling on the chart when every run stays far below it", async () => {
    const svg = await memoryChart(memorySeries, { ceilingMb: 1_024, title: "t" });
    expect(svg).toMatch(textElement("memory ceiling 1,024 MB"));
    const axis = svg.match(/Y-axis [^"]* values from 0 to ([\d,]+)/)?.[1];
    expect(Number(axis?.replaceAll(",", ""))).toBeGreaterThanOrEqual(1_024);
  });
});

describe("throughputChart", () => {
  it("draws messages per second per strategy, with the theoretical limit dashed", async () => {
    const svg = await throughputChart(throughputSeries, {
      title: "Throughput per strategy",
      theoreticalPerSec: 200,
    });
    expect(svg.startsWith("<svg")).toBe(true);
    expect(svg).toMatch(textElement("Throughput per strategy"));
    expect(svg).toMatch(textElement("theoretical limit 200 msg/s"));
    for (const { label } of throughputSeries) expect(svg).toMatch(textElement(label));
    expect(svg).toMatch(textElement("throughput (messages/s)"));

    const drawn = lines(svg);
    expect(drawn).toHaveLength(throughputSeries.length);
    for (const line of drawn) expect(line.d.match(/L/g)?.length).toBe(3);
    expect(new Set(drawn.map((line) => line.stroke)).size).toBe(throughputSeries.length);
    expect(dashedRules(svg)).toHaveLength(1);
  });

  it("leaves the limit out when there is none", async () => {
    const svg = await throughputChart(throughputSeries, { title: "No limit" });
    expect(svg).not.toContain("theoretical limit");
    expect(dashedRules(svg)).toHaveLength(0);
    expect(lines(svg)).toHaveLength(throughputSeries.length);
  });
});

describe("writeChart", () => {
  it("writes the SVG, creating the folder", async () => {
    const dir = await mkdtemp(join(tmpdir(), "charts-"));
    try {
      const path = join(dir, "nested", "throughput.svg");
      const svg = await throughputChart(throughputSeries, { title: "Written" });
      await writeChart(path, svg);
      expect(await readFile(path, "utf8")).toBe(svg);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
