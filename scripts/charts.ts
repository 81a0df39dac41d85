/**
 * scripts/charts.ts: SVG charts of what the runs measured, drawn with Vega-Lite and
 * rendered by Vega without a browser or a canvas, so they work in CI and on every
 * runtime.
 *
 *   memoryChart(series, { ceilingMb, title })   resident memory over time, one line per run
 *   throughputChart(series, { title })          messages per second over time, per strategy
 *   sizeChart(points, { ceilingMb, title })     peak memory by message size, per series
 *   writeChart(path, svg)
 */

import { mkdir, writeFile } from "node:fs/promises";
import { dirname } from "node:path";
import * as vega from "vega";
import { compile, type TopLevelSpec } from "vega-lite";

export interface MemorySeries {
  label: string;
  /** atMs: since the run started */
  samples: { atMs: number; rssMb: number }[];
}

export interface ThroughputSeries {
  label: string;
  /** atS: since the run started */
  points: { atS: number; perSec: number }[];
}

const WIDTH = 720;
const HEIGHT = 360;
// Tableau 10 without its red, which is kept for the memory ceiling.
const SERIES_COLORS = ["#4c78a8", "#f58518", "#54a24b", "#b279a2", "#72b7b2", "#9d755d", "#eeca3b"];
const CEILING_COLOR = "#d62728";
const LIMIT_COLOR = "#555555";
const FONT = "Helvetica, Arial, 'DejaVu Sans', sans-serif";

/** Resident memory (MB) over time (s) for several runs, with the memory ceiling drawn. */
export async function memoryChart(
  series: MemorySeries[],
  options: { ceilingMb: number; title: string },
): Promise<string> {
  const rows = series.flatMap(({ label, samples }) =>
    samples.map(({ atMs, rssMb }) => ({ series: label, seconds: atMs / 1_000, value: rssMb })),
  );
  return await render({
    ...frame(options.title),
    layer: [
      seriesLines(rows, series, "resident memory, RSS (MB)"),
      ...horizontalRule(options.ceilingMb, `memory ceiling ${fmt(options.ceilingMb)} MB`, {
        color: CEILING_COLOR,
        dash: [6, 4],
      }),
    ],
  });
}

/** Messages per second over time for each strategy, with an optional theoretical limit. */
export async function throughputChart(
  series: ThroughputSeries[],
  options: { title: string; theoreticalPerSec?: number },
): Promise<string> {
  const rows = series.flatMap(({ label, points }) =>
    points.map(({ atS, perSec }) => ({ series: label, seconds: atS, value: perSec })),
  );
  const limit = options.theoreticalPerSec;
  return await render({
    ...frame(options.title),
    layer: [
      seriesLines(rows, series, "throughput (messages/s)"),
      ...(limit === undefined
        ? []
        : horizontalRule(limit, `theoretical limit ${fmt(limit)} msg/s`, {
            color: LIMIT_COLOR,
            dash: [4, 4],
          })),
    ],
  });
}

/** One point per category (message size, in the order given) and series, with the ceiling drawn. */
export async function sizeChart(
  points: { series: string; size: string; value: number }[],
  options: { ceilingMb: number; title: string },
): Promise<string> {
  const series = [...new Set(points.map((p) => p.series))].map((label) => ({ label }));
  const sizes = [...new Set(points.map((p) => p.size))];
  return await render({
    ...frame(options.title),
    layer: [
      {
        data: { values: points },
        mark: { type: "line", strokeWidth: 2, point: true },
        encoding: {
          x: { field: "size", type: "ordinal", title: "message size", sort: sizes },
          y: {
            field: "value",
            type: "quantitative",
            title: "peak memory (MB)",
            scale: { zero: true, nice: true },
          },
          color: {
            field: "series",
            type: "nominal",
            scale: { domain: series.map((s) => s.label), range: SERIES_COLORS },
            legend: { title: null, orient: "top", direction: "horizontal", columns: 3 },
          },
        },
      },
      ...horizontalRule(options.ceilingMb, `pod limit ${fmt(options.ceilingMb)} MB`, {
        color: CEILING_COLOR,
        dash: [6, 4],
      }),
    ],
  });
}

export async function writeChart(path: string, svg: string): Promise<void> {
  await mkdir(dirname(path), { recursive: true });
  await writeFile(path, svg);
}

// ---- Spec pieces ----

type Layer = Extract<TopLevelSpec, { layer: unknown }>["layer"][number];

interface Row {
  series: string;
  seconds: number;
  value: number;
}

/** Size, fonts and title shared by every chart: 720×360 in all, axes and legend included. */
function frame(title: string) {
  return {
    $schema: "https://vega.github.io/schema/vega-lite/v6.json",
    width: WIDTH,
    height: HEIGHT,
    autosize: { type: "fit", contains: "padding" },
    padding: 12,
    background: "white",
    title: { text: title, anchor: "start", fontSize: 16, fontWeight: 600, offset: 12 },
    config: {
      font: FONT,
      view: { stroke: null },
      axis: {
        labelFontSize: 12,
        titleFontSize: 13,
        titleFontWeight: 500,
        gridColor: "#e6e6e6",
        domainColor: "#888888",
        tickColor: "#888888",
      },
      legend: { labelFontSize: 12, titleFontSize: 12, symbolStrokeWidth: 3, labelLimit: 0 },
    },
  } as const;
}

/** One line per series, in the order given, each its own color, with a legend above. */
function seriesLines(rows: Row[], series: { label: string }[], yTitle: string): Layer {
  return {
    data: { values: rows },
    mark: { type: "line", strokeWidth: 2, interpolate: "linear", clip: true },
    encoding: {
      x: {
        field: "seconds",
        type: "quantitative",
        title: "time (s)",
        scale: { zero: true, nice: true },
      },
      y: {
        field: "value",
        type: "quantitative",
        title: yTitle,
        scale: { zero: true, nice: true },
      },
      color: {
        field: "series",
        type: "nominal",
        // The legend lists the runs in the caller's order, not alphabetically.
        scale: { domain: series.map((s) => s.label), range: SERIES_COLORS },
        legend: { title: null, orient: "top", direction: "horizontal", symbolType: "stroke" },
      },
    },
  };
}

/** A labelled horizontal rule at `value` on the y scale, so the scale reaches it. */
function horizontalRule(
  value: number,
  label: string,
  style: { color: string; dash: number[] },
): Layer[] {
  const data = { values: [{ value, label }] };
  return [
    {
      data,
      mark: { type: "rule", color: style.color, strokeWidth: 1.5, strokeDash: style.dash },
      encoding: { y: { field: "value", type: "quantitative" } },
    },
    {
      data,
      mark: {
        type: "text",
        color: style.color,
        align: "right",
        baseline: "bottom",
        dx: -4,
        dy: -4,
        fontSize: 12,
        fontWeight: 600,
      },
      encoding: {
        x: { value: "width" },
        y: { field: "value", type: "quantitative" },
        text: { field: "label" },
      },
    },
  ];
}

async function render(spec: TopLevelSpec): Promise<string> {
  const view = new vega.View(vega.parse(compile(spec).spec), { renderer: "none" });
  try {
    return await view.toSVG();
  } finally {
    view.finalize();
  }
}

interface TextItem {
  fontSize?: number;
  fontWeight?: string | number;
  limit?: number;
}

/**
 * Without a canvas Vega guesses every character at 0.8 em, which cuts legend labels
 * short and spreads legend entries apart. Guess per kind of character instead, sized
 * for DejaVu Sans, the widest of the fonts the charts name, so text still fits.
 */
function estimateTextWidth(item: TextItem, text: unknown): number {
  const value = text == null ? "" : String(text).trim();
  const size = item.fontSize != null ? Number(item.fontSize) || 0 : 11;
  let ems = 0;
  for (const char of value) {
    if (/[iljtf.,:;'|!()[\]{} ]/.test(char)) ems += 0.34;
    else if (/[mwMW]/.test(char)) ems += 0.9;
    else if (/[A-Z]/.test(char)) ems += 0.7;
    else ems += 0.6;
  }
  const bold = item.fontWeight === "bold" || Number(item.fontWeight) >= 600;
  const width = ems * size * (bold ? 1.1 : 1);
  return item.limit !== undefined && item.limit > 0 ? Math.min(width, item.limit) : width;
}

// vega exports textMetrics (from vega-scenegraph) but its types do not declare it.
const textMetrics = (
  vega as unknown as { textMetrics?: { width: unknown; estimateWidth: unknown } }
).textMetrics;
// Replace only Vega's own guess: a canvas or another tool's measure stays in place.
if (textMetrics && textMetrics.width === textMetrics.estimateWidth) {
  textMetrics.width = estimateTextWidth;
}

function fmt(n: number): string {
  return n.toLocaleString("en-US");
}
