// Leave-one-out split of ILREC.md §1: per user, test target = last item, validation target =
// second to last, and every earlier position from the 2nd item on is a training target.

/** One example: the model sees `history` (oldest first) and must produce `target`. */
export interface Sample {
  user: number;
  /** At most maxHistory most recent items before the target, oldest first. */
  history: number[];
  target: number;
  /** Index of the target in the user's full sequence (for bookkeeping / CF lookups). */
  position: number;
}

export interface SplitOptions {
  /** Keep this many most recent history items (ILREC.md: 20). */
  maxHistory?: number;
}

export const SPLIT_DEFAULTS: Required<SplitOptions> = { maxHistory: 20 };

export interface SplitReport {
  users: number;
  /** Users with fewer than 4 items get no training samples (see leaveOneOut). */
  usersWithoutTrain: number;
  /** Users with fewer than 3 items get no validation sample. */
  usersWithoutValid: number;
  /** Users with fewer than 2 items get no test sample (nothing to condition on). */
  usersWithoutTest: number;
}

export interface Split {
  train: Sample[];
  valid: Sample[];
  test: Sample[];
  report: SplitReport;
}

/**
 * Sequence s of length n (0-based positions):
 *   test:  target s[n-1], history s[..n-2]   (includes the validation item)
 *   valid: target s[n-2], history s[..n-3]
 *   train: target s[t] for t = 1 .. n-3, history s[..t-1]
 * each history truncated to its last maxHistory items. Users with n = 3 get no training
 * sample, n = 2 a test sample only, n = 1 nothing (all counted in the report). Deterministic: users in index order,
 * training samples in position order; shuffling is the trainer's job.
 */
export function leaveOneOut(sequences: readonly (readonly number[])[], options: SplitOptions = {}): Split {
  const { maxHistory } = { ...SPLIT_DEFAULTS, ...options };
  if (!Number.isInteger(maxHistory) || maxHistory < 1) throw new Error(`leaveOneOut: maxHistory must be a positive integer, got ${maxHistory}`);
  const train: Sample[] = [];
  const valid: Sample[] = [];
  const test: Sample[] = [];
  const report: SplitReport = { users: sequences.length, usersWithoutTrain: 0, usersWithoutValid: 0, usersWithoutTest: 0 };
  const sample = (user: number, s: readonly number[], t: number): Sample => ({
    user,
    history: s.slice(Math.max(0, t - maxHistory), t),
    target: s[t]!,
    position: t,
  });
  sequences.forEach((s, user) => {
    const n = s.length;
    for (let t = 1; t <= n - 3; t++) train.push(sample(user, s, t));
    if (n < 4) report.usersWithoutTrain++;
    if (n >= 3) valid.push(sample(user, s, n - 2));
    else report.usersWithoutValid++;
    if (n >= 2) test.push(sample(user, s, n - 1));
    else report.usersWithoutTest++;
  });
  return { train, valid, test, report };
}
