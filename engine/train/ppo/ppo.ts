// The PPO loop of DeepSpeed-Chat step 3 on the hybrid engine: one native model holds the
// base, the actor, critic and reward adapters; each step samples with the serving Engine
// (generation), scores on the same weights (experience), then trains actor and critic
// (training). Nothing is reloaded between phases: the weights the engine reads are the
// ones the optimizer just stepped. The only cost of switching roles is setTrainable plus
// swapping each role's AdamW moments (`switch`), logged per step with the other phases.
// The model is a PpoModel (ppo-model.ts): the same loop runs `train ppo` on a model it owns
// and a fine-tuning job on the serving one, where each call is an exclusive engine task.
import type { OptimizerState, OptimizerStep } from "../../../native/index.js";
import type { SamplingParams } from "../../types.js";
import { Rng } from "../../rng.js";
import { epochOrder, lossTokens, microBatches, optimizerBatches, trainBatch } from "../loop/batches.js";
import { learningRate, type Schedule } from "../loop/lr-schedule.js";
import type { EncodedExample } from "../data/sft-encode.js";
import { TrainingInterrupted } from "../loop/loop.js";
import { gae, klRewards, whiten } from "./gae.js";
import { policyLoss, valueLoss } from "./ppo-losses.js";
import type { PpoModel, RolloutEngine } from "./ppo-model.js";
import { answerLength, answerSlices, generateRollouts, makeExperience, rolloutBatch, type Experience, type Roles, type Rollout } from "./experience.js";

/** DeepSpeed-Chat step 3's defaults where it has one (see ppoDefaults). */
export interface PpoSettings {
  roles: Roles;
  /** passes over the prompts */
  epochs: number;
  /** prompts sampled per PPO step (DS-Chat per_device_generation_batch_size) */
  generationBatchSize: number;
  /** sequences per optimizer step of actor and critic (DS-Chat per_device_training_batch_size) */
  trainBatchSize: number;
  ppoEpochs: number;
  maxBatchTokens: number;
  /** sampling of answers; maxTokens is the longest answer */
  sampling: Pick<SamplingParams, "temperature" | "topP" | "topK" | "maxTokens">;
  klCtl: number;
  clipRewardValue: number;
  gamma: number;
  lambda: number;
  clipRange: number;
  clipRangeValue: number;
  whitenAdvantages: boolean;
  actorSchedule: Schedule;
  criticSchedule: Schedule;
  optimizer: Omit<OptimizerStep, "lr">;
  /** EMA decay of the actor's weights (DS-Chat --enable_ema: 0.992), null = off */
  ema: number | null;
  /** pretraining-loss mix: ptx_coef · (−mean logp) over these examples, added to each actor step */
  ptx: { examples: readonly EncodedExample[]; coef: number } | null;
  seed: number;
}

export const PPO_DEFAULTS = {
  epochs: 1,
  generationBatchSize: 16,
  trainBatchSize: 16,
  ppoEpochs: 1,
  maxPromptTokens: 256,
  maxAnswerTokens: 256,
  klCtl: 0.1,
  clipRewardValue: 5,
  gamma: 1,
  lambda: 0.95,
  clipRange: 0.2,
  clipRangeValue: 0.2,
  // DS-Chat's --actor_lora_learning_rate / --critic_lora_learning_rate
  actorLr: 5e-4,
  criticLr: 5e-4,
  ema: 0.992,
  ptxCoef: 27.8,
  maxGradNorm: 1,
} as const;

/** AdamW as DeepSpeed-Chat's step 3 sets it for actor and critic (betas 0.9 / 0.95). */
export function ppoOptimizer(weightDecay = 0, maxGradNorm: number = PPO_DEFAULTS.maxGradNorm): PpoSettings["optimizer"] {
  return { beta1: 0.9, beta2: 0.95, eps: 1e-8, weightDecay, maxGradNorm };
}

export interface PpoStepEvent {
  step: number;
  epoch: number;
  /** mean reward-model score of the step's answers (unclipped) */
  reward: number;
  /** mean over answers of Σ_t (logp_old − logp_ref): the sequence-level KL estimate */
  kl: number;
  policy_loss: number;
  value_loss: number;
  /** −mean logp of the sampled tokens under the sampling actor (an entropy estimate) */
  entropy: number;
  response_length: number;
  /** fraction of action tokens whose policy term was clipped */
  clipfrac: number;
  ptx_loss: number | null;
  actor_lr: number;
  critic_lr: number;
  /** seconds: sampling with the engine, the grad-off scoring forwards, actor+critic updates, role switches */
  generation_s: number;
  experience_s: number;
  training_s: number;
  switch_s: number;
  elapsed_s: number;
}

export interface PpoCallbacks {
  onStep?: (e: PpoStepEvent) => void | Promise<void>;
  /** after a step (the steps' onStep first), with what resuming from there needs; awaited */
  onCheckpoint?: (state: PpoResumeState) => Promise<void>;
  signal?: AbortSignal;
}

/**
 * Where a run stands after `step` steps, besides the actor's and critic's weights: every
 * other input of the next step is a function of (seed, step), so these make a resumed run
 * continue bit for bit.
 */
export interface PpoResumeState {
  step: number;
  /** the next pretraining example (ptx) */
  ptxCursor: number;
  /** each role adapter's AdamW moments and step count */
  optimizer: ReadonlyMap<string, OptimizerState>;
  ema: ReadonlyMap<string, Float32Array> | null;
}

/** Steps of a whole run. */
export function ppoTotalSteps(prompts: number, s: Pick<PpoSettings, "epochs" | "generationBatchSize">): number {
  return s.epochs * Math.ceil(prompts / s.generationBatchSize);
}

/**
 * Which adapter receives gradients, with each role's AdamW moments kept across the
 * switch (setTrainable drops them): for LoRA roles the copies are a few small arrays.
 */
export class RoleSwitch {
  private readonly states = new Map<string, OptimizerState>();
  private current: string | null = null;
  /** milliseconds spent switching so far */
  ms = 0;

  constructor(private readonly model: PpoModel) {}

  /** one call (one exclusive task on a serving model): save the current role's moments, switch, load the new one's */
  async use(adapter: string): Promise<void> {
    if (this.current === adapter) return;
    const from = this.current;
    this.ms += await this.model.roles((m) => {
      const t0 = performance.now();
      if (from !== null) this.states.set(from, m.optimizerState());
      m.setTrainable({ adapter });
      const saved = this.states.get(adapter);
      if (saved) m.loadOptimizerState(saved);
      return performance.now() - t0;
    });
    this.current = adapter;
  }

  /** every role's AdamW moments as of now (a checkpoint); the current role keeps training */
  async snapshot(): Promise<Map<string, OptimizerState>> {
    const cur = this.current;
    if (cur !== null) this.states.set(cur, await this.model.roles((m) => m.optimizerState()));
    return new Map(this.states);
  }

  /** moments restored from a checkpoint: each role loads its own when it next trains */
  async restore(states: ReadonlyMap<string, OptimizerState>): Promise<void> {
    await this.release();
    for (const [role, st] of states) this.states.set(role, st);
  }

  /** nothing trainable (e.g. before the engine merges or a save) */
  async release(): Promise<void> {
    const cur = this.current;
    if (cur === null) return;
    this.ms += await this.model.roles((m) => {
      const t0 = performance.now();
      this.states.set(cur, m.optimizerState());
      m.setTrainable(null);
      return performance.now() - t0;
    });
    this.current = null;
  }
}

/** An exponential moving average of an adapter's parameters, kept in JS. */
export class AdapterEma {
  private constructor(
    private readonly model: PpoModel,
    private readonly adapter: string,
    private readonly decay: number,
    readonly params: Map<string, Float32Array>,
  ) {}

  static async create(model: PpoModel, adapter: string, decay: number): Promise<AdapterEma> {
    const params = await model.roles((m) => new Map(m.parameters(adapter).map((p) => [p.name, m.readParameter(adapter, p.name)] as const)));
    return new AdapterEma(model, adapter, decay, params);
  }

  async update(): Promise<void> {
    const d = this.decay;
    const names = [...this.params.keys()];
    const cur = await this.model.roles((m) => names.map((n) => m.readParameter(this.adapter, n)));
    names.forEach((name, k) => {
      const ema = this.params.get(name)!;
      const c = cur[k];
      for (let i = 0; i < ema.length; i++) ema[i] = d * ema[i] + (1 - d) * c[i];
    });
  }
}

/** Per-token advantages and returns of a batch of experience (rewards with the KL penalty, then GAE). */
export function advantages(exps: readonly Experience[], s: Pick<PpoSettings, "klCtl" | "clipRewardValue" | "gamma" | "lambda" | "whitenAdvantages">): { adv: Float64Array[]; ret: Float64Array[] } {
  const adv: Float64Array[] = [];
  const ret: Float64Array[] = [];
  for (const e of exps) {
    const r = klRewards(e.logpOld, e.logpRef, e.score, s.klCtl, s.clipRewardValue);
    const g = gae(r, e.values, s.gamma, s.lambda);
    adv.push(g.advantages);
    ret.push(g.returns);
  }
  if (s.whitenAdvantages) whiten(adv);
  return { adv, ret };
}

interface Losses {
  policy: number;
  value: number;
  clipped: number;
  tokens: number;
  ptx: number | null;
}

/** The flat per-position gradient of one packed micro-batch from per-answer gradients. */
function scatter(rollouts: readonly Rollout[], mb: readonly number[], total: number, perAnswer: (k: number) => Float32Array): Float32Array {
  const g = new Float32Array(total);
  let off = 0;
  mb.forEach((i, k) => {
    const r = rollouts[i];
    g.set(perAnswer(k), off + r.promptLength - 1);
    off += r.tokens.length;
  });
  return g;
}

class PpoTrainer {
  private ptxCursor = 0;
  /** PPO steps so far: the learning-rate schedules count these */
  private ppoSteps = 0;

  private constructor(
    private readonly model: PpoModel,
    private readonly s: PpoSettings,
    private readonly roles: RoleSwitch,
    private readonly ema: AdapterEma | null,
  ) {}

  static async create(model: PpoModel, s: PpoSettings, resume: PpoResumeState | null): Promise<PpoTrainer> {
    const ema = s.ema === null ? null : await AdapterEma.create(model, s.roles.actor, s.ema);
    const t = new PpoTrainer(model, s, new RoleSwitch(model), ema);
    if (resume) {
      t.ppoSteps = resume.step;
      t.ptxCursor = resume.ptxCursor;
      await t.roles.restore(resume.optimizer);
      if (ema && resume.ema) for (const [name, data] of resume.ema) ema.params.set(name, Float32Array.from(data));
    }
    return t;
  }

  /** what a checkpoint after `step` steps holds besides the adapters' weights */
  async state(step: number): Promise<PpoResumeState> {
    return { step, ptxCursor: this.ptxCursor, optimizer: await this.roles.snapshot(), ema: this.ema?.params ?? null };
  }

  get emaParams(): Map<string, Float32Array> | null {
    return this.ema?.params ?? null;
  }

  get switchMs(): number {
    return this.roles.ms;
  }

  release(): Promise<void> {
    return this.roles.release();
  }

  /** ppo_epochs passes of actor then critic updates over the experience, one optimizer step each per mini-batch. */
  async train(exps: readonly Experience[], adv: readonly Float64Array[], ret: readonly Float64Array[]): Promise<Losses & { actorLr: number; criticLr: number }> {
    const s = this.s;
    const rollouts = exps.map((e) => e.rollout);
    const acc: Losses = { policy: 0, value: 0, clipped: 0, tokens: 0, ptx: null };
    let ptxSum = 0;
    let ptxSteps = 0;
    const actorLr = learningRate(s.actorSchedule, this.ppoSteps);
    const criticLr = learningRate(s.criticSchedule, this.ppoSteps);
    for (let ep = 0; ep < s.ppoEpochs; ep++) {
      for (const mini of optimizerBatches(rollouts.map((_, i) => i), s.trainBatchSize)) {
        const count = lossTokens(rollouts, mini);
        // a mini-batch of empty answers trains nothing
        if (count === 0) continue;
        // actor: the clipped policy loss (and ptx)
        await this.roles.use(s.roles.actor);
        for (const mb of microBatches(rollouts, mini, s.maxBatchTokens)) {
          const out = await this.model.trainForward(rolloutBatch(rollouts, mb, s.roles.actor, true, false));
          const logp = answerSlices(rollouts, mb, out.logp);
          const grads = mb.map((i, k) => {
            const l = policyLoss(logp[k], exps[i].logpOld, adv[i], s.clipRange, count);
            acc.policy += l.loss;
            acc.clipped += l.clipped;
            return l.grad;
          });
          await this.model.trainBackward(scatter(rollouts, mb, out.logp.length, (k) => grads[k]), null);
        }
        if (s.ptx) (ptxSum += await this.ptxBackward(s.ptx.examples, s.ptx.coef)), ptxSteps++;
        await this.model.step({ ...s.optimizer, lr: actorLr });
        await this.ema?.update();
        // critic: the clipped value loss
        await this.roles.use(s.roles.critic);
        for (const mb of microBatches(rollouts, mini, s.maxBatchTokens)) {
          const out = await this.model.trainForward(rolloutBatch(rollouts, mb, s.roles.critic, true, true));
          const values = answerSlices(rollouts, mb, out.values!);
          const grads = mb.map((i, k) => {
            const l = valueLoss(values[k], exps[i].values, ret[i], s.clipRangeValue, count);
            acc.value += l.loss;
            return l.grad;
          });
          await this.model.trainBackward(new Float32Array(out.logp.length), scatter(rollouts, mb, out.logp.length, (k) => grads[k]));
        }
        await this.model.step({ ...s.optimizer, lr: criticLr });
        acc.tokens += count;
      }
    }
    this.ppoSteps++;
    const batches = s.ppoEpochs * Math.ceil(rollouts.length / s.trainBatchSize);
    return {
      policy: acc.policy / batches,
      value: acc.value / batches,
      clipped: acc.clipped,
      tokens: acc.tokens,
      ptx: ptxSteps > 0 ? ptxSum / ptxSteps : null,
      actorLr,
      criticLr,
    };
  }

  /** Adds coef · (−mean logp) over the next trainBatchSize pretraining examples to the actor's gradients; returns that mean. */
  private async ptxBackward(examples: readonly EncodedExample[], coef: number): Promise<number> {
    const idx = Array.from({ length: Math.min(this.s.trainBatchSize, examples.length) }, () => this.ptxCursor++ % examples.length);
    const N = lossTokens(examples, idx);
    let sum = 0;
    for (const mb of microBatches(examples, idx, this.s.maxBatchTokens)) {
      const batch = trainBatch(examples, mb, this.s.roles.actor, true);
      const { logp } = await this.model.trainForward(batch);
      const d = new Float32Array(logp.length);
      for (let t = 0; t < logp.length; t++) if (batch.targets[t] >= 0) (sum -= logp[t]), (d[t] = -coef / N);
      await this.model.trainBackward(d, null);
    }
    return N > 0 ? sum / N : 0;
  }
}

export interface PpoResult {
  steps: number;
  /** the actor's EMA parameters, when asked for */
  ema: Map<string, Float32Array> | null;
}

/**
 * Runs PPO over tokenized prompts. The engine must run on `model` (the same weights);
 * the roles' adapters must exist. Returns after the last step with nothing trainable.
 */
export async function runPpo(
  model: PpoModel,
  engine: RolloutEngine,
  prompts: readonly (readonly number[])[],
  s: PpoSettings,
  cb: PpoCallbacks = {},
  resume: PpoResumeState | null = null,
): Promise<PpoResult> {
  const trainer = await PpoTrainer.create(model, s, resume);
  const started = performance.now();
  let step = 0;
  try {
    for (let epoch = 0; epoch < s.epochs; epoch++) {
      for (const batch of optimizerBatches(epochOrder(prompts.length, s.seed, epoch), s.generationBatchSize)) {
        // the steps a resumed run already took: their prompts, skipped in the same order
        if (resume && step < resume.step) {
          step++;
          continue;
        }
        if (cb.signal?.aborted) throw new TrainingInterrupted(step);
        const switch0 = trainer.switchMs;
        const t0 = performance.now();
        // the engine reads the actor's adapter as the last step left it: no copy, no reload
        const rng = Rng.stream(s.seed, `ppo-generate-${step}`);
        const rollouts = await generateRollouts(engine, batch.map((i) => prompts[i]), () => samplingParams(s, rng.nextU32()), s.roles.actor);
        const t1 = performance.now();
        const exps = await makeExperience(model, rollouts, s.roles, s.maxBatchTokens);
        const { adv, ret } = advantages(exps, s);
        const t2 = performance.now();
        const losses = await trainer.train(exps, adv, ret);
        const t3 = performance.now();
        step++;
        const switchS = (trainer.switchMs - switch0) / 1000;
        const tokens = exps.reduce((n, e) => n + e.logpOld.length, 0);
        await cb.onStep?.({
          step,
          epoch: epoch + 1,
          reward: mean(exps.map((e) => e.score)),
          kl: mean(exps.map((e) => sum(e.logpOld) - sum(e.logpRef))),
          policy_loss: losses.policy,
          value_loss: losses.value,
          entropy: tokens > 0 ? -sum(exps.map((e) => sum(e.logpOld))) / tokens : 0,
          response_length: mean(rollouts.map(answerLength)),
          clipfrac: losses.tokens > 0 ? losses.clipped / losses.tokens : 0,
          ptx_loss: losses.ptx,
          actor_lr: losses.actorLr,
          critic_lr: losses.criticLr,
          generation_s: (t1 - t0) / 1000,
          experience_s: (t2 - t1) / 1000,
          training_s: (t3 - t2) / 1000 - switchS,
          switch_s: switchS,
          elapsed_s: (performance.now() - started) / 1000,
        });
        if (cb.onCheckpoint) await cb.onCheckpoint(await trainer.state(step));
      }
    }
  } finally {
    await trainer.release();
  }
  return { steps: step, ema: trainer.emaParams };
}

function samplingParams(s: PpoSettings, seed: number): SamplingParams {
  return {
    ...s.sampling,
    minP: 0,
    seed,
    presencePenalty: 0,
    frequencyPenalty: 0,
    logitBias: {},
    stop: [],
    logprobs: false,
    topLogprobs: 0,
    ignoreEos: false,
  };
}

function sum(xs: ArrayLike<number>): number {
  let t = 0;
  for (let i = 0; i < xs.length; i++) t += xs[i];
  return t;
}

function mean(xs: readonly number[]): number {
  return xs.length > 0 ? sum(xs) / xs.length : 0;
}
