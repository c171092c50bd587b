// A job's data file, parsed line by line and encoded example by example in slices
// (eachInSlices): a file of any size is prepared in the serving process while requests
// keep being answered. Every bad line is reported at once, as the file readers do.
import { eachInSlices, eachJsonlObjectInSlices, type LineError } from "../../../engine/train/data/jsonl.js";

export interface JobDataSpec<P, E> {
  /** one line's object → one example (throws: a bad line) */
  parse: (o: Record<string, unknown>, line: number) => P;
  /** one example → what the loop trains on; a line the encoder refuses is an error */
  encode: (p: P) => { encoded: E[]; errors: LineError[] };
  /** the error the method reports for bad lines */
  fail: (errors: LineError[]) => Error;
  /** what the file lacks when it holds none, or none is left after encoding */
  noneParsed: string;
  noneEncoded: string;
}

export async function prepareJobData<P, E>(text: string, spec: JobDataSpec<P, E>): Promise<E[]> {
  const parsed: P[] = [];
  const errors = await eachJsonlObjectInSlices(text, (o, line) => parsed.push(spec.parse(o, line)));
  if (parsed.length === 0 && errors.length === 0) errors.push({ line: 0, reason: spec.noneParsed });
  if (errors.length > 0) throw spec.fail(errors);
  const encoded: E[] = [];
  await eachInSlices(parsed, (p) => {
    const r = spec.encode(p);
    encoded.push(...r.encoded);
    errors.push(...r.errors);
  });
  if (errors.length > 0) throw spec.fail(errors);
  if (encoded.length === 0) throw spec.fail([{ line: 0, reason: spec.noneEncoded }]);
  return encoded;
}
