// Markdown comparison table of models × metrics for run reports: best value per metric in bold and
// an optional relative change against a baseline model.

export interface TableRow {
  model: string;
  metrics: Record<string, number>;
  /** Free-form columns after the metrics (e.g. training seconds), in first-seen key order. */
  extra?: Record<string, string>;
}

export interface TableOptions {
  /** Bold the best (highest) value of each metric; ties at the printed precision are all bold. Default true. */
  bestBold?: boolean;
  /**
   * Model to compare against: adds a "<metric> vs <baseline>" relative-change column for each of the
   * first BASELINE_METRICS metrics (the first HR/NDCG pair of metricColumns). Omitted when no row
   * has that name, so a run without the baseline stage still gets its report.
   */
  baseline?: string;
}

/** Decimals of the metric cells (the papers print 4). */
const METRIC_DECIMALS = 4;
/** Decimals of the relative-change cells, in percent. */
const CHANGE_DECIMALS = 1;
/** Metrics that get a "vs baseline" column: the first pair. */
const BASELINE_METRICS = 2;
/** Cell for a metric a model does not have. */
const MISSING = '-';

/** `| model | HR@5 | ... | extra... | HR@5 vs sft | NDCG@5 vs sft |` with one line per row, in row order. */
export function comparisonTable(rows: TableRow[], metricNames: string[], opts: TableOptions = {}): string {
  const bestBold = opts.bestBold ?? true;
  const cell = (v: number | undefined) => (v === undefined ? MISSING : Number.isFinite(v) ? v.toFixed(METRIC_DECIMALS) : String(v));
  // Best per metric compared as printed, so two values that print the same are both bold.
  const best = metricNames.map((m) => {
    const finite = rows.map((r) => r.metrics[m]).filter((v): v is number => v !== undefined && Number.isFinite(v));
    return finite.length ? cell(Math.max(...finite)) : null;
  });
  const extraKeys = [...new Set(rows.flatMap((r) => Object.keys(r.extra ?? {})))];
  const base = opts.baseline === undefined ? undefined : rows.find((r) => r.model === opts.baseline);
  const changeMetrics = base ? metricNames.slice(0, BASELINE_METRICS) : [];

  const header = ['model', ...metricNames, ...extraKeys, ...changeMetrics.map((m) => `${m} vs ${base!.model}`)];
  const align = ['---', ...metricNames.map(() => '---:'), ...extraKeys.map(() => '---'), ...changeMetrics.map(() => '---:')];
  const lines = [row(header), row(align)];
  for (const r of rows) {
    const metricCells = metricNames.map((m, i) => {
      const text = cell(r.metrics[m]);
      return bestBold && best[i] !== null && text === best[i] ? `**${text}**` : text;
    });
    const extraCells = extraKeys.map((k) => r.extra?.[k] ?? '');
    const changeCells = changeMetrics.map((m) => (r === base ? MISSING : relativeChange(r.metrics[m], base!.metrics[m])));
    lines.push(row([r.model, ...metricCells, ...extraCells, ...changeCells]));
  }
  return lines.join('\n');
}

/** "+12.3%" / "-4.0%"; "n/a" when either side is missing or the baseline is 0. */
function relativeChange(v: number | undefined, ref: number | undefined): string {
  if (v === undefined || ref === undefined || !Number.isFinite(v) || !Number.isFinite(ref) || ref === 0) return 'n/a';
  const pct = (100 * (v - ref)) / Math.abs(ref);
  const text = pct.toFixed(CHANGE_DECIMALS);
  // A change that rounds to zero prints as +0.0%, never -0.0%.
  return text.startsWith('-') && Number(text) !== 0 ? `${text}%` : `+${text.replace('-', '')}%`;
}

/** One markdown row; a `|` inside a cell would split it, so it is escaped. */
function row(cells: string[]): string {
  return `| ${cells.map((c) => c.replace(/\|/g, '\\|')).join(' | ')} |`;
}
