// Margins sized from the noise: the few statistics the by-effect tests use to say a change is
// beyond what sampling alone gives.

export const mean = (xs: readonly number[]): number => xs.reduce((a, x) => a + x, 0) / xs.length;

/** sample variance (n − 1) */
export function variance(xs: readonly number[]): number {
  const m = mean(xs);
  return xs.reduce((a, x) => a + (x - m) ** 2, 0) / (xs.length - 1);
}

/** (mean(b) − mean(a)) / its standard error, each sample's own variance (Welch): how many standard errors b lies above a */
export function welch(a: readonly number[], b: readonly number[]): number {
  return (mean(b) - mean(a)) / Math.sqrt(variance(a) / a.length + variance(b) / b.length);
}

/** the least-squares slope of ys over 0, 1, 2, … divided by its standard error (n − 2 degrees of freedom) */
export function trendT(ys: readonly number[]): { slope: number; t: number } {
  const n = ys.length;
  const xm = (n - 1) / 2;
  const ym = mean(ys);
  let sxx = 0;
  let sxy = 0;
  for (let i = 0; i < n; i++) {
    sxx += (i - xm) ** 2;
    sxy += (i - xm) * (ys[i] - ym);
  }
  const slope = sxy / sxx;
  let sse = 0;
  for (let i = 0; i < n; i++) sse += (ys[i] - ym - slope * (i - xm)) ** 2;
  return { slope, t: slope / Math.sqrt(sse / (n - 2) / sxx) };
}
