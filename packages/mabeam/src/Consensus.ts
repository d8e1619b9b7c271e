/**
 * Votes among agents: majority, supermajority, unanimity and weighted thresholds, with a quorum and
 * a timeout.
 *
 * The rules (`count` and `tally` below are the whole of them):
 * - **Eligible voters** are the agents asked. Each answers a `Ballot` for one of the proposal's
 *   `options` (default `["yes", "no"]`) with a confidence in [0, 1] (default 1), or `Abstain`. An agent
 *   that abstains, does not answer within `timeout`, is unreachable, or casts an invalid ballot (a
 *   choice outside the options, a confidence outside [0, 1]) is listed in `abstained` with its
 *   reason: it never counts as a vote, for or against.
 * - **Quorum**: at least `ceil(quorum × eligible)` ballots must be cast (`quorum` is a fraction of
 *   the eligible voters, default 1/2). Otherwise the vote fails with `QuorumNotMet`.
 * - **Shares** are taken over the ballots cast: by count, or by weight for `weighted`.
 *   - `majority`: the choice with more than half of the ballots;
 *   - `supermajority(threshold)` (default 2/3, in (1/2, 1]): the choice with at least `threshold`;
 *   - `unanimous`: every ballot cast is for the same choice (abstaining does not block it);
 *   - `weighted(weights, threshold)` (default 1/2, in (0, 1]): the choice with at least `threshold`
 *     of the weight cast; an agent missing from `weights` weighs 1.
 * - A vote that no choice wins fails with `NoDecision`: `tie` (the best choices are level, or
 *   several reach the threshold), `below-threshold`, `dissent` (unanimity broken) or `no-votes`.
 * - **Confidence** of a decision: the confidence-weighted support of the decision over the whole
 *   electorate, `Σ weight × confidence of the ballots for it / Σ weight of every eligible voter`.
 *   Abstentions and dissent lower it; 1 means every eligible voter backed it with full confidence.
 *
 * Underneath: one `AgentCalls.ask(agents, { _tag: "Vote", voteId, proposal, options }, { timeout })`,
 * then `count` and `tally`; the run completes within its timeout. Drop down to `AgentCalls.ask` and
 * `tally` for another counting rule.
 */
import * as Effect from "effect/Effect"
import * as Schema from "effect/Schema"
import type { AgentId, VoteReply } from "./Agent.js"
import { type Answer, AgentCalls, defaultTimeout } from "./AgentCalls.js"
import { InvalidOptions, NoAnswerReason, type UnknownAgents } from "./MabeamError.js"
import type * as Duration from "effect/Duration"

/** A counting rule. */
export const Rule = Schema.Union(
  Schema.TaggedStruct("Majority", {}),
  Schema.TaggedStruct("Supermajority", { threshold: Schema.Number }),
  Schema.TaggedStruct("Unanimous", {}),
  Schema.TaggedStruct("Weighted", {
    threshold: Schema.Number,
    weights: Schema.Record({ key: Schema.String, value: Schema.Number })
  })
)
/** @see Rule */
export type Rule = typeof Rule.Type

/** More than half of the ballots cast. */
export const majority: Rule = { _tag: "Majority" }
/** At least `threshold` (default 2/3) of the ballots cast. */
export const supermajority = (threshold: number = 2 / 3): Rule => ({ _tag: "Supermajority", threshold })
/** Every ballot cast for the same choice. */
export const unanimous: Rule = { _tag: "Unanimous" }
/** At least `threshold` (default 1/2) of the weight cast; agents missing from `weights` weigh 1. */
export const weighted = (weights: Readonly<Record<AgentId, number>>, threshold: number = 1 / 2): Rule => ({
  _tag: "Weighted",
  threshold,
  weights
})

/** A counted ballot. */
export const Vote = Schema.Struct({
  agent: Schema.String,
  choice: Schema.String,
  confidence: Schema.Number,
  weight: Schema.Number
})
/** @see Vote */
export type Vote = typeof Vote.Type

/** An eligible voter whose ballot does not count, and why. */
export const Abstention = Schema.Struct({
  agent: Schema.String,
  reason: Schema.Union(Schema.Literal("abstained", "invalid-ballot"), NoAnswerReason),
  detail: Schema.String
})
/** @see Abstention */
export type Abstention = typeof Abstention.Type

/** Ballots and weight per choice (every option appears, with zeros). */
export const Tally = Schema.Record({
  key: Schema.String,
  value: Schema.Struct({ votes: Schema.Int, weight: Schema.Number })
})
/** @see Tally */
export type Tally = typeof Tally.Type

/** Why a vote reached no decision. */
export const NoDecisionReason = Schema.Literal("tie", "below-threshold", "dissent", "no-votes")
/** @see NoDecisionReason */
export type NoDecisionReason = typeof NoDecisionReason.Type

/** The result of a vote that reached its rule. */
export const ConsensusResult = Schema.Struct({
  voteId: Schema.String,
  rule: Rule,
  decision: Schema.String,
  /** always true here: a vote that cannot reach its rule fails with `QuorumNotMet` or `NoDecision` */
  reached: Schema.Literal(true),
  votes: Schema.Array(Vote),
  confidence: Schema.Number,
  abstained: Schema.Array(Abstention),
  tally: Tally
})
/** @see ConsensusResult */
export type ConsensusResult = typeof ConsensusResult.Type

/** Fewer ballots were cast than the quorum requires. */
export class QuorumNotMet extends Schema.TaggedError<QuorumNotMet>()("QuorumNotMet", {
  voteId: Schema.String,
  required: Schema.Int,
  cast: Schema.Int,
  eligible: Schema.Int,
  votes: Schema.Array(Vote),
  abstained: Schema.Array(Abstention)
}) {
  get message(): string {
    return `Vote ${this.voteId}: ${this.cast} of ${this.eligible} ballots cast, the quorum needs ${this.required} (${this.abstained.length} abstained or did not answer)`
  }
}

/** The ballots cast do not satisfy the rule. */
export class NoDecision extends Schema.TaggedError<NoDecision>()("NoDecision", {
  voteId: Schema.String,
  rule: Rule,
  reason: NoDecisionReason,
  tally: Tally,
  votes: Schema.Array(Vote),
  abstained: Schema.Array(Abstention)
}) {
  get message(): string {
    const counts = Object.entries(this.tally)
      .map(([choice, { votes }]) => `${choice}: ${votes}`)
      .join(", ")
    return `Vote ${this.voteId} reached no decision under ${this.rule._tag} (${this.reason}; ${counts})`
  }
}

// -----------------------------------------------------------------------------
// The rules, as pure functions
// -----------------------------------------------------------------------------

const epsilon = 1e-9

/** The weight of an agent under a rule (1 unless `weighted` says otherwise). */
export const weightOf = (rule: Rule, agent: AgentId): number =>
  rule._tag === "Weighted" ? (rule.weights[agent] ?? 1) : 1

/** Sorts the answers into counted ballots and abstentions (see the module's rules). */
export const count = (
  answers: ReadonlyArray<Answer<VoteReply>>,
  options: { readonly options: ReadonlyArray<string>; readonly rule: Rule }
): { readonly votes: ReadonlyArray<Vote>; readonly abstained: ReadonlyArray<Abstention> } => {
  const votes: Array<Vote> = []
  const abstained: Array<Abstention> = []
  for (const answer of answers) {
    if (answer._tag === "NoAnswer") {
      abstained.push({ agent: answer.agent, reason: answer.reason, detail: answer.detail })
    } else if (answer.reply._tag === "Abstain") {
      abstained.push({ agent: answer.agent, reason: "abstained", detail: answer.reply.reason ?? "" })
    } else {
      const { choice, confidence = 1 } = answer.reply
      if (!options.options.includes(choice)) {
        abstained.push({
          agent: answer.agent,
          reason: "invalid-ballot",
          detail: `"${choice}" is not one of [${options.options.join(", ")}]`
        })
      } else if (!(confidence >= 0 && confidence <= 1)) {
        abstained.push({
          agent: answer.agent,
          reason: "invalid-ballot",
          detail: `confidence ${confidence} is outside [0, 1]`
        })
      } else {
        votes.push({ agent: answer.agent, choice, confidence, weight: weightOf(options.rule, answer.agent) })
      }
    }
  }
  return { votes, abstained }
}

/** What `tally` concludes. */
export type Outcome =
  | {
      readonly reached: true
      readonly decision: string
      readonly confidence: number
      readonly tally: Tally
    }
  | {
      readonly reached: false
      readonly reason: NoDecisionReason | "quorum-not-met"
      readonly required: number
      readonly tally: Tally
    }

/** Applies the quorum and the rule to the counted ballots (see the module's rules). */
export const tally = (
  votes: ReadonlyArray<Vote>,
  abstained: ReadonlyArray<Abstention>,
  options: { readonly options: ReadonlyArray<string>; readonly rule: Rule; readonly quorum: number }
): Outcome => {
  const { rule } = options
  const table: Record<string, { votes: number; weight: number }> = {}
  for (const option of options.options) table[option] = { votes: 0, weight: 0 }
  for (const vote of votes) {
    table[vote.choice].votes++
    table[vote.choice].weight += vote.weight
  }
  const eligible = votes.length + abstained.length
  const required = Math.ceil(options.quorum * eligible - epsilon)
  if (votes.length < required) return { reached: false, reason: "quorum-not-met", required, tally: table }
  const fail = (reason: NoDecisionReason): Outcome => ({ reached: false, reason, required, tally: table })

  const byWeight = rule._tag === "Weighted"
  const total = byWeight ? votes.reduce((sum, vote) => sum + vote.weight, 0) : votes.length
  if (votes.length === 0 || total <= 0) return fail("no-votes")
  const share = (choice: string) => (byWeight ? table[choice].weight : table[choice].votes) / total
  const ranked = options.options
    .filter((choice) => table[choice].votes > 0)
    .sort((a, b) => share(b) - share(a))
  const level = ranked.length > 1 && Math.abs(share(ranked[0]) - share(ranked[1])) < epsilon

  let winners: ReadonlyArray<string>
  switch (rule._tag) {
    case "Majority":
      winners = ranked.filter((choice) => share(choice) > 0.5 + epsilon)
      break
    case "Supermajority":
    case "Weighted":
      winners = ranked.filter((choice) => share(choice) >= rule.threshold - epsilon)
      break
    case "Unanimous":
      if (ranked.length !== 1) return fail("dissent")
      winners = ranked
      break
  }
  if (winners.length > 1) return fail("tie")
  if (winners.length === 0) return fail(level ? "tie" : "below-threshold")
  const decision = winners[0]
  const electorate =
    votes.reduce((sum, vote) => sum + vote.weight, 0) +
    abstained.reduce((sum, abstention) => sum + weightOf(rule, abstention.agent), 0)
  const support = votes
    .filter((vote) => vote.choice === decision)
    .reduce((sum, vote) => sum + vote.weight * vote.confidence, 0)
  return { reached: true, decision, confidence: electorate > 0 ? support / electorate : 0, tally: table }
}

// -----------------------------------------------------------------------------
// Runs
// -----------------------------------------------------------------------------

/** A vote. */
export interface Options {
  readonly agents: ReadonlyArray<AgentId>
  /** what is voted on; sent to every voter */
  readonly proposal: unknown
  /** the choices (default `["yes", "no"]`) */
  readonly options?: ReadonlyArray<string> | undefined
  /** default `majority` */
  readonly rule?: Rule | undefined
  /** the fraction of eligible voters that must cast a ballot (default 1/2) */
  readonly quorum?: number | undefined
  /** how long each voter has to answer (default 5 s) */
  readonly timeout?: Duration.DurationInput | undefined
  readonly voteId?: string | undefined
}

/** The errors of a vote. */
export type ConsensusError = QuorumNotMet | NoDecision | UnknownAgents | InvalidOptions

const problemsOf = (options: Options, choices: ReadonlyArray<string>, quorum: number, rule: Rule) => {
  if (options.agents.length === 0) return "no agents to ask"
  if (choices.length === 0) return "no options to vote for"
  if (new Set(choices).size !== choices.length) return `options repeat a choice: [${choices.join(", ")}]`
  if (!(quorum >= 0 && quorum <= 1)) return `quorum must be a fraction in [0, 1], got ${quorum}`
  if (rule._tag === "Supermajority" && !(rule.threshold > 0.5 && rule.threshold <= 1)) {
    return `a supermajority threshold must be in (1/2, 1], got ${rule.threshold}`
  }
  if (rule._tag === "Weighted") {
    if (!(rule.threshold > 0 && rule.threshold <= 1)) {
      return `a weighted threshold must be in (0, 1], got ${rule.threshold}`
    }
    const bad = Object.entries(rule.weights).find(([, weight]) => !(Number.isFinite(weight) && weight >= 0))
    if (bad) return `weight of ${bad[0]} must be a finite number >= 0, got ${bad[1]}`
  }
  return undefined
}

/**
 * Asks every agent to vote on `proposal` and applies the rule; see the module's rules.
 * Underneath: `AgentCalls.ask(agents, { _tag: "Vote", ... })`, `count`, `tally`.
 */
export const run = (options: Options): Effect.Effect<ConsensusResult, ConsensusError, AgentCalls> =>
  Effect.gen(function* () {
    const choices = options.options ?? ["yes", "no"]
    const rule = options.rule ?? majority
    const quorum = options.quorum ?? 0.5
    const problem = problemsOf(options, choices, quorum, rule)
    if (problem) return yield* new InvalidOptions({ protocol: "consensus", reason: problem })
    const calls = yield* AgentCalls
    const agents = yield* calls.resolve(options.agents)
    const voteId = options.voteId ?? `vote-${crypto.randomUUID()}`
    const answers = yield* calls.ask(
      agents,
      { _tag: "Vote", voteId, proposal: options.proposal ?? null, options: choices },
      { timeout: options.timeout ?? defaultTimeout }
    )
    const { abstained, votes } = count(answers, { options: choices, rule })
    const outcome = tally(votes, abstained, { options: choices, rule, quorum })
    if (outcome.reached) {
      return {
        voteId,
        rule,
        decision: outcome.decision,
        reached: true as const,
        votes,
        confidence: outcome.confidence,
        abstained,
        tally: outcome.tally
      }
    }
    if (outcome.reason === "quorum-not-met") {
      return yield* new QuorumNotMet({
        voteId,
        required: outcome.required,
        cast: votes.length,
        eligible: agents.length,
        votes,
        abstained
      })
    }
    return yield* new NoDecision({
      voteId,
      rule,
      reason: outcome.reason,
      tally: outcome.tally,
      votes,
      abstained
    })
  })
