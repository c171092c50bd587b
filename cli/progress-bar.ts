// The CLI's progress bars (train, pipeline, init): one bar with ETA per run on stderr, report
// lines above it, and a bar for each big file written (checkpoints, init's weights) — shown
// only when the file is big enough for the wait to be noticed.
import { MultiBar, Presets, type SingleBar } from "cli-progress";
import type { WriteProgress } from "../engine/safetensors-writer.js";

/** Below this a write takes well under a second and a bar would only flicker. */
export const WRITE_BAR_MIN_BYTES = 32 * 2 ** 20;

export interface ProgressOptions {
  /** where bars go (default stderr) */
  stream?: NodeJS.WriteStream;
  /** smallest file that gets a bar (default WRITE_BAR_MIN_BYTES) */
  writeBarMinBytes?: number;
}

const MIB = 2 ** 20;
/** without a terminal, a line about a file being written at most this often */
const LINE_EVERY_MS = 5000;

/**
 * A progress bar with ETA on stderr, and `say` for report lines (stdout; above the bar on
 * a terminal). Without a terminal the bar is redrawn as a plain line every few seconds.
 */
export class Progress {
  private readonly bars: MultiBar;
  private readonly stream: NodeJS.WriteStream;
  private readonly writeBarMinBytes: number;
  private bar: SingleBar | null = null;
  /** a bar was shown: stop() has something to end */
  private used = false;

  constructor(format: string, o: ProgressOptions = {}) {
    this.stream = o.stream ?? process.stderr;
    this.writeBarMinBytes = o.writeBarMinBytes ?? WRITE_BAR_MIN_BYTES;
    this.bars = new MultiBar(
      { format: `${format} | eta {eta_formatted}`, hideCursor: true, stream: this.stream, etaBuffer: 20, noTTYOutput: true, notTTYSchedule: 5000 },
      Presets.shades_classic,
    );
  }

  start(total: number, start: number, fields: Record<string, string | number>): void {
    this.bar = this.create(total, start, fields);
  }

  update(value: number, fields: Record<string, string | number>): void {
    this.bar?.update(value, fields);
  }

  /**
   * A callback for a writer's progress: on a terminal each big file gets its own bar (MiB
   * written, ETA) under the run's, removed when the file is complete; elsewhere (logs, CI) a
   * line when it starts, one every few seconds with its ETA, and one when it is written.
   */
  writing(): WriteProgress {
    let current: { file: string; bar: SingleBar | null; t0: number; lastLine: number } | null = null;
    const mib = (bytes: number): string => (bytes / MIB).toFixed(1);
    const line = (text: string): void => void this.stream.write(text + "\n");
    return (written, total, file) => {
      if (total < this.writeBarMinBytes) return;
      const now = Date.now();
      if (current?.file !== file) {
        if (current?.bar) this.bars.remove(current.bar);
        const bar = this.stream.isTTY
          ? this.create(Math.ceil(total / MIB), 0, { file }, "writing {file} [{bar}] {percentage}% | {value}/{total} MiB | eta {eta_formatted}")
          : null;
        if (!bar) line(`writing ${file} (${mib(total)} MiB)`);
        current = { file, bar, t0: now, lastLine: now };
      }
      if (current.bar) current.bar.update(Math.floor(written / MIB));
      else if (now - current.lastLine >= LINE_EVERY_MS && written > 0 && written < total) {
        const eta = ((now - current.t0) / written) * (total - written);
        line(`writing ${file}: ${Math.floor((100 * written) / total)}% (${mib(written)}/${mib(total)} MiB), eta ${Math.ceil(eta / 1000)}s`);
        current.lastLine = now;
      }
      if (written >= total) {
        if (current.bar) this.bars.remove(current.bar);
        else line(`wrote ${file} (${mib(total)} MiB) in ${((now - current.t0) / 1000).toFixed(1)} s`);
        current = null;
      }
    };
  }

  private create(total: number, start: number, fields: Record<string, string | number>, format?: string): SingleBar {
    this.used = true;
    return this.bars.create(total, start, fields, format ? { format } : {});
  }

  say(line: string): void {
    if (this.bar && this.stream.isTTY) this.bars.log(line + "\n");
    else process.stdout.write(line + "\n");
  }

  stop(): void {
    if (this.used) this.bars.stop();
    this.used = false;
    this.bar = null;
  }
}
