// Learning-rate schedules (linear warm-up, then cosine, linear or constant) as a pure function of the
// optimizer step, so a resumed run recomputes exactly the rates the uninterrupted run used.

/**
 * Warm-up is given as steps or as a fraction of the run (`ceil(ratio · totalSteps)`, as HF's
 * TrainingArguments.get_warmup_steps); `warmupSteps` wins when both are set, as in HF, because a
 * config override of the steps is merged on top of the default ratio. Neither set = no warm-up.
 */
export interface LrSchedule {
  kind: 'cosine' | 'constant' | 'linear';
  warmupSteps?: number;
  warmupRatio?: number;
  /** Floor of the decay as a fraction of the peak rate (0 = decay to 0); unused by 'constant'. */
  minLrRatio: number;
}

const KINDS: readonly LrSchedule['kind'][] = ['cosine', 'constant', 'linear'];

/** Warm-up steps the schedule asks for, before `lrAt` shortens it to fit the run. */
export function warmupStepsOf(totalSteps: number, s: LrSchedule): number {
  if (s.warmupSteps !== undefined) {
    if (!Number.isInteger(s.warmupSteps) || s.warmupSteps < 0) throw new Error(`lr schedule: warmupSteps must be an integer ≥ 0, got ${s.warmupSteps}`);
    return s.warmupSteps;
  }
  if (s.warmupRatio !== undefined) {
    if (!(s.warmupRatio >= 0 && s.warmupRatio <= 1)) throw new Error(`lr schedule: warmupRatio must be in [0, 1], got ${s.warmupRatio}`);
    return Math.ceil(s.warmupRatio * totalSteps);
  }
  return 0;
}

/**
 * Learning rate for the 0-based optimizer step `step` of a `totalSteps`-step run, following HF's
 * get_{cosine,linear,constant}_schedule_with_warmup (the min-lr form of the cosine one):
 *   warm-up (step < W):  lr · step / W            (so step 0 runs at 0, as in HF)
 *   then p = (step − W) / (totalSteps − W) ∈ [0, 1) and
 *     cosine:   lr · (m + (1 − m) · ½(1 + cos πp))
 *     linear:   lr · (m + (1 − m) · (1 − p))
 *     constant: lr
 * with m = minLrRatio. As in HF, p reaches 1 only at step = totalSteps, which never runs, so the last
 * step sits slightly above the floor.
 * One deliberate difference from HF: W is capped at totalSteps − 1, so a warm-up as long as the run
 * (e.g. a ratio of 0.05 of a 1-step smoke run rounds up to 1) still leaves the last step at the peak
 * rate instead of training the whole run at lr 0 or never reaching the peak.
 */
export function lrAt(step: number, totalSteps: number, baseLr: number, s: LrSchedule): number {
  if (!Number.isInteger(totalSteps) || totalSteps < 1) throw new Error(`lrAt: totalSteps must be a positive integer, got ${totalSteps}`);
  if (!Number.isInteger(step) || step < 0 || step >= totalSteps) throw new Error(`lrAt: step must be an integer in [0, ${totalSteps}), got ${step}`);
  if (!(Number.isFinite(baseLr) && baseLr >= 0)) throw new Error(`lrAt: baseLr must be a finite number ≥ 0, got ${baseLr}`);
  if (!KINDS.includes(s.kind)) throw new Error(`lr schedule: kind must be one of ${KINDS.join(', ')}, got ${String(s.kind)}`);
  if (!(s.minLrRatio >= 0 && s.minLrRatio <= 1)) throw new Error(`lr schedule: minLrRatio must be in [0, 1], got ${s.minLrRatio}`);

  const warmup = Math.min(warmupStepsOf(totalSteps, s), totalSteps - 1);
  if (step < warmup) return (baseLr * step) / warmup;
  if (s.kind === 'constant') return baseLr;
  const progress = (step - warmup) / (totalSteps - warmup);
  const decay = s.kind === 'cosine' ? 0.5 * (1 + Math.cos(Math.PI * progress)) : 1 - progress;
  return baseLr * (s.minLrRatio + (1 - s.minLrRatio) * decay);
}
