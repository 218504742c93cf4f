// SVG charts for run reports (loss curves, validation-metric curves, model comparison bars): vega-lite
// specs compiled by vega and rendered headless in Node, with no DOM, canvas or network.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { View, parse } from 'vega';
import { compile, type TopLevelSpec } from 'vega-lite';

/** One named line: values against the optimizer step (or epoch, for metric curves). */
export interface CurveSeries {
  name: string;
  points: { step: number; value: number }[];
}

export interface CurveOptions {
  title: string;
  /** x-axis title; defaults to 'step' for losses and 'epoch' for metrics. */
  xLabel?: string;
  yLabel?: string;
  /** Log-scale y axis (every value must then be > 0). */
  logY?: boolean;
}

/** Plot area in pixels (the legend and axes come on top); wide enough for a few thousand steps. */
const CHART_WIDTH = 640;
const CHART_HEIGHT = 360;
/** Point markers are drawn only on short series: on long ones they hide the line. */
const MAX_POINTS_WITH_MARKERS = 40;

/** Several loss terms against the optimizer step on one chart, a line per series with a legend. */
export function lossCurvesSvg(series: CurveSeries[], opts: CurveOptions): Promise<string> {
  return curvesSvg('lossCurvesSvg', series, { xLabel: 'step', ...opts });
}

/** Validation metrics (e.g. HR@10, NDCG@10) against the epoch (or step: set xLabel), one line each. */
export function metricCurvesSvg(series: CurveSeries[], opts: CurveOptions): Promise<string> {
  return curvesSvg('metricCurvesSvg', series, { xLabel: 'epoch', ...opts });
}

/** Grouped bars: one group per metric, one bar per model, so models compare side by side. */
export async function metricsBarSvg(rows: { model: string; metrics: Record<string, number> }[], metricNames: string[], title: string): Promise<string> {
  const fn = 'metricsBarSvg';
  if (rows.length === 0) throw new Error(`${fn}: no models to plot`);
  if (metricNames.length === 0) throw new Error(`${fn}: no metrics to plot`);
  assertUnique(fn, 'model', rows.map((r) => r.model));
  assertUnique(fn, 'metric', metricNames);
  const values = metricNames.flatMap((metric) =>
    rows.map(({ model, metrics }) => {
      const value = metrics[metric];
      if (value === undefined) throw new Error(`${fn}: model "${model}" has no value for metric "${metric}"`);
      if (!Number.isFinite(value)) throw new Error(`${fn}: model "${model}" has a non-finite ${metric} (${value})`);
      return { metric, model, value };
    }),
  );
  const models = rows.map((r) => r.model);
  return render({
    title,
    width: CHART_WIDTH,
    height: CHART_HEIGHT,
    data: { values },
    mark: { type: 'bar', tooltip: false },
    encoding: {
      x: { field: 'metric', type: 'nominal', sort: metricNames, title: null, axis: { labelAngle: 0 } },
      xOffset: { field: 'model', type: 'nominal', sort: models },
      y: { field: 'value', type: 'quantitative', title: 'value' },
      color: { field: 'model', type: 'nominal', sort: models, scale: { domain: models }, title: 'model' },
    },
  });
}

/** Writes `svg` to `file` atomically (temp file + rename), creating the directories. */
export function writeSvg(file: string, svg: string): void {
  fs.mkdirSync(path.dirname(file), { recursive: true });
  const tmp = `${file}.tmp`;
  fs.writeFileSync(tmp, svg);
  fs.renameSync(tmp, file); // a reader (or a crash mid-write) never sees half a chart
}

async function curvesSvg(fn: string, series: CurveSeries[], opts: CurveOptions & { xLabel: string }): Promise<string> {
  if (series.length === 0) throw new Error(`${fn}: no series to plot`);
  assertUnique(fn, 'series', series.map((s) => s.name));
  const values: { series: string; step: number; value: number }[] = [];
  for (const s of series) {
    for (const p of s.points) {
      if (!Number.isFinite(p.step)) throw new Error(`${fn}: series "${s.name}" has a non-finite step (${p.step})`);
      if (!Number.isFinite(p.value)) throw new Error(`${fn}: series "${s.name}" has a non-finite value (${p.value}) at step ${p.step}`);
      if (opts.logY && !(p.value > 0)) throw new Error(`${fn}: series "${s.name}" has value ${p.value} at step ${p.step}, which a log y axis cannot show`);
      values.push({ series: s.name, step: p.step, value: p.value });
    }
  }
  if (values.length === 0) throw new Error(`${fn}: every series is empty`);
  const names = series.map((s) => s.name);
  const longest = Math.max(...series.map((s) => s.points.length));
  const integerSteps = values.every((v) => Number.isInteger(v.step));
  return render({
    title: opts.title,
    width: CHART_WIDTH,
    height: CHART_HEIGHT,
    data: { values },
    mark: { type: 'line', point: longest <= MAX_POINTS_WITH_MARKERS, tooltip: false },
    encoding: {
      // Integer steps/epochs get integer ticks only (no "epoch 1.5").
      x: { field: 'step', type: 'quantitative', title: opts.xLabel, ...(integerSteps ? { axis: { tickMinStep: 1 } } : {}) },
      y: {
        field: 'value', type: 'quantitative', title: opts.yLabel ?? 'value',
        // Losses rarely approach 0: a zero-based axis would flatten the curves.
        scale: opts.logY ? { type: 'log' } : { zero: false },
      },
      color: { field: 'series', type: 'nominal', sort: names, scale: { domain: names }, title: null },
      order: { field: 'step', type: 'quantitative' },
    },
  });
}

function assertUnique(fn: string, what: string, names: string[]): void {
  const seen = new Set<string>();
  for (const n of names) {
    if (seen.has(n)) throw new Error(`${fn}: ${what} name "${n}" appears twice`);
    seen.add(n);
  }
}

async function render(spec: TopLevelSpec): Promise<string> {
  // renderer 'none': no scenegraph rendering to a DOM; toSVG renders the scene to a string itself.
  const view = new View(parse(compile({ background: 'white', ...spec } as TopLevelSpec).spec), { renderer: 'none' });
  try {
    return await view.toSVG();
  } finally {
    view.finalize(); // drop timers/listeners so the process can exit
  }
}
