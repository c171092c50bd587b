// A progress bar on stderr for the long steps of a benchmark run.
import cliProgress from "cli-progress";

export interface Progress {
  update: (done: number, total: number) => void;
  stop: () => void;
}

export function progressBar(label: string): Progress {
  const bar = new cliProgress.SingleBar(
    { format: `${label} [{bar}] {percentage}% | ETA {eta}s`, stream: process.stderr, hideCursor: true },
    cliProgress.Presets.shades_classic,
  );
  let started = false;
  return {
    update(done, total) {
      if (!started) {
        bar.start(total, 0);
        started = true;
      }
      bar.update(done);
    },
    stop() {
      if (started) bar.stop();
    },
  };
}
