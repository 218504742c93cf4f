// Training progress on stderr: a cli-progress bar on a terminal, and plain periodic lines when the
// output is a file or CI log (a redrawn bar there turns into thousands of unreadable lines).
import cliProgress from 'cli-progress';

/** Where progress goes; only a real terminal stream (isTTY) can carry the bar. */
export interface ProgressStream {
  write(chunk: string): unknown;
  isTTY?: boolean;
}

export interface TrainProgressOptions {
  /** Optimizer steps in the whole run (a resumed run still counts from 0). */
  total: number;
  /** Stage name printed in front of every line. */
  label: string;
  /** Draw the bar (needs a TTY stream; default: stream.isTTY). Otherwise plain lines are printed. */
  enabled?: boolean;
  /** Plain mode: print every this many steps (default: about LINES_PER_RUN lines per run). */
  logEvery?: number;
  /** Output (default: process.stderr); injectable so tests can capture it. */
  stream?: ProgressStream;
  /** Milliseconds clock (default: performance.now); injectable for deterministic ETAs in tests. */
  now?: () => number;
}

export interface ProgressFields {
  /** Loss terms at this step (printed with LOSS_DIGITS significant digits). */
  losses: Record<string, number>;
  tokensPerSec: number;
  lr?: number;
}

/** Plain lines printed over a run when logEvery is not given: enough to follow it, few enough to read. */
const LINES_PER_RUN = 20;
/** Significant digits of the loss terms: enough to see a 0.1% change at any scale. */
const LOSS_DIGITS = 4;
/** Significant digits of the throughput. */
const RATE_DIGITS = 3;
/** Characters of the bar itself. */
const BAR_SIZE = 30;
/** Bar redraws per second (cli-progress redraws on a timer, not on every update). */
const BAR_FPS = 5;

const SECONDS_PER_MINUTE = 60;
const SECONDS_PER_HOUR = 3600;
const SECONDS_PER_DAY = 86400;
/** Below this many seconds a duration keeps one decimal ("2.4s"); above, whole seconds. */
const FRACTIONAL_SECONDS_BELOW = 10;

/** Progress of one training stage; call update after each optimizer step and stop at the end. */
export class TrainProgress {
  private readonly total: number;
  private readonly label: string;
  private readonly logEvery: number;
  private readonly stream: ProgressStream;
  private readonly now: () => number;
  private readonly bar: cliProgress.SingleBar | null;
  private readonly startTime: number;
  /** Step count when timing started (a resumed run's first update is start + 1). */
  private baseStep: number | null = null;
  private last: { step: number; fields: ProgressFields; printed: boolean } | null = null;
  private stopped = false;

  constructor(opts: TrainProgressOptions) {
    if (!Number.isInteger(opts.total) || opts.total < 1) throw new Error(`TrainProgress: total must be a positive integer, got ${opts.total}`);
    const logEvery = opts.logEvery ?? Math.max(1, Math.ceil(opts.total / LINES_PER_RUN));
    if (!Number.isInteger(logEvery) || logEvery < 1) throw new Error(`TrainProgress: logEvery must be a positive integer, got ${logEvery}`);
    this.total = opts.total;
    this.label = opts.label;
    this.logEvery = logEvery;
    this.stream = opts.stream ?? process.stderr;
    this.now = opts.now ?? (() => performance.now());
    this.startTime = this.now();
    const tty = this.stream.isTTY === true;
    this.bar = (opts.enabled ?? tty) && tty
      ? new cliProgress.SingleBar({
          format: `${this.label} |{bar}| {value}/{total} {percentage}% | {terms} | {rate} tok/s{lrText} | ETA {etaText}`,
          // The bar only writes and moves the cursor; a TTY stream is a real tty.WriteStream.
          stream: this.stream as NodeJS.WritableStream,
          barsize: BAR_SIZE,
          fps: BAR_FPS,
          hideCursor: true,
          clearOnComplete: false,
        }, cliProgress.Presets.shades_classic)
      : null;
  }

  /** `step` = optimizer steps completed so far (1..total). */
  update(step: number, fields: ProgressFields): void {
    if (this.stopped) return;
    // Time from construction is charged to the steps since the one before the first update, so a
    // resumed run's ETA does not count the steps it skipped.
    if (this.baseStep === null) this.baseStep = step - 1;
    // Plain mode prints the first update (throughput after warm-up shows early), every logEvery, and the end.
    const print = !this.bar && (step === this.baseStep + 1 || step % this.logEvery === 0 || step >= this.total);
    this.last = { step, fields, printed: print };
    const payload = { terms: formatLosses(fields.losses), rate: formatRate(fields.tokensPerSec), lrText: fields.lr === undefined ? '' : ` | lr ${formatLr(fields.lr)}`, etaText: formatDuration(this.etaSeconds(step)) };
    if (this.bar) {
      // Started lazily so a resumed run's bar begins at its first step, not at 0.
      if (this.bar.isActive) this.bar.update(step, payload);
      else this.bar.start(this.total, step, payload);
    } else if (print) {
      this.stream.write(`${this.line(step, fields)}\n`);
    }
  }

  /** Ends the bar; in plain mode prints the last step if it was not printed (e.g. the run failed). */
  stop(): void {
    if (this.stopped) return;
    this.stopped = true;
    if (this.bar) {
      if (this.bar.isActive) this.bar.stop();
    } else if (this.last && !this.last.printed) {
      this.stream.write(`${this.line(this.last.step, this.last.fields)}\n`);
    }
  }

  /** The plain-mode line for `step`; public so callers can log the same format elsewhere. */
  line(step: number, fields: ProgressFields): string {
    const pct = ((100 * step) / this.total).toFixed(1);
    const parts = [
      `[${this.label}] step ${step}/${this.total} (${pct}%)`,
      formatLosses(fields.losses),
      `${formatRate(fields.tokensPerSec)} tok/s`,
      ...(fields.lr === undefined ? [] : [`lr ${formatLr(fields.lr)}`]),
      `elapsed ${formatDuration((this.now() - this.startTime) / 1000)}`,
      `ETA ${formatDuration(this.etaSeconds(step))}`,
    ];
    return parts.filter((p) => p.length > 0).join(' | ');
  }

  private etaSeconds(step: number): number {
    const done = step - (this.baseStep ?? 0);
    if (done <= 0) return NaN;
    const secondsPerStep = (this.now() - this.startTime) / 1000 / done;
    return Math.max(0, this.total - step) * secondsPerStep;
  }
}

/** "0.4s", "42s", "3m 05s", "2h 03m", "1d 04h"; "--" when unknown (non-finite or negative). */
export function formatDuration(seconds: number): string {
  if (!Number.isFinite(seconds) || seconds < 0) return '--';
  if (seconds < FRACTIONAL_SECONDS_BELOW) return `${seconds.toFixed(1)}s`;
  const s = Math.round(seconds);
  const pad = (n: number) => String(n).padStart(2, '0');
  if (s < SECONDS_PER_MINUTE) return `${s}s`;
  if (s < SECONDS_PER_HOUR) return `${Math.floor(s / SECONDS_PER_MINUTE)}m ${pad(s % SECONDS_PER_MINUTE)}s`;
  if (s < SECONDS_PER_DAY) return `${Math.floor(s / SECONDS_PER_HOUR)}h ${pad(Math.floor((s % SECONDS_PER_HOUR) / SECONDS_PER_MINUTE))}m`;
  return `${Math.floor(s / SECONDS_PER_DAY)}d ${pad(Math.floor((s % SECONDS_PER_DAY) / SECONDS_PER_HOUR))}h`;
}

/** "loss=1.234 ilrec=0.05678" in the caller's term order. */
function formatLosses(losses: Record<string, number>): string {
  return Object.entries(losses).map(([k, v]) => `${k}=${formatSig(v, LOSS_DIGITS)}`).join(' ');
}

/** `digits` significant digits; NaN/Infinity spelled out rather than thrown on, since this only displays. */
function formatSig(v: number, digits: number): string {
  return Number.isFinite(v) ? v.toPrecision(digits) : String(v);
}

/** "950", "12.3k", "1.05M" tokens per second. */
function formatRate(v: number): string {
  if (!Number.isFinite(v)) return String(v);
  if (Math.abs(v) >= 1e6) return `${formatSig(v / 1e6, RATE_DIGITS)}M`;
  if (Math.abs(v) >= 1e3) return `${formatSig(v / 1e3, RATE_DIGITS)}k`;
  return v.toFixed(0);
}

function formatLr(lr: number): string {
  return lr.toExponential(2);
}
