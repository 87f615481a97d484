// Learning-rate and residual-scale schedules: plain functions of the step number
// (the count of optimiser updates done so far), evaluated in TypeScript and passed
// to the native step.

export type Schedule = (step: number) => number;

/** Linear warm-up from 0 to `peak` over `warmupSteps`, then linear decay to `final` at `totalSteps`. */
export function linearWarmupDecay(options: { peak: number; warmupSteps: number; totalSteps: number; final?: number }): Schedule {
  const { peak, warmupSteps, totalSteps, final = 0 } = options;
  if (!(totalSteps > 0) || warmupSteps < 0 || warmupSteps > totalSteps) {
    throw new RangeError('linearWarmupDecay: need 0 <= warmupSteps <= totalSteps and totalSteps > 0');
  }
  return (step) => {
    if (step < warmupSteps) return (peak * (step + 1)) / (warmupSteps + 1);
    if (totalSteps === warmupSteps) return peak;
    const progress = Math.min(1, (step - warmupSteps) / (totalSteps - warmupSteps));
    return peak + (final - peak) * progress;
  };
}

/** Linear warm-up from 0 to `peak` over `warmupSteps`, then `peak` for good (the fine-tuning recipes). */
export function warmupThenConstant(options: { peak: number; warmupSteps: number }): Schedule {
  const { peak, warmupSteps } = options;
  if (!(warmupSteps >= 0)) throw new RangeError('warmupThenConstant: warmupSteps must be >= 0');
  return (step) => (step < warmupSteps ? (peak * (step + 1)) / (warmupSteps + 1) : peak);
}

/**
 * Piecewise-linear multiplier of `peak` through (step, factor) points, as the
 * RoFormerV2 authors' pre-training schedule: e.g. [[0, 0], [4000, 1], [100000, 0.5],
 * [400000, 0.1], [1000000, 0.01]]. Constant after the last point.
 */
export function piecewiseLinear(peak: number, points: Array<[step: number, factor: number]>): Schedule {
  if (points.length === 0) throw new RangeError('piecewiseLinear: at least one point is needed');
  for (let i = 1; i < points.length; i++) {
    if (points[i]![0] <= points[i - 1]![0]) throw new RangeError('piecewiseLinear: steps must increase');
  }
  return (step) => {
    if (step <= points[0]![0]) return peak * points[0]![1];
    for (let i = 1; i < points.length; i++) {
      const [s1, f1] = points[i]!;
      if (step <= s1) {
        const [s0, f0] = points[i - 1]!;
        return peak * (f0 + ((f1 - f0) * (step - s0)) / (s1 - s0));
      }
    }
    return peak * points[points.length - 1]![1];
  };
}

export function constant(value: number): Schedule {
  return () => value;
}

/** RoFormerV2's residual scale α: 0 → 1 linearly over `warmupSteps` (0: always 1). */
export function residualWarmup(warmupSteps: number): Schedule {
  if (warmupSteps < 0) throw new RangeError('residualWarmup: warmupSteps must be >= 0');
  return (step) => (warmupSteps === 0 ? 1 : Math.min(1, step / warmupSteps));
}
