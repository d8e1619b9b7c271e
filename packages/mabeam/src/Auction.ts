/**
 * Auctions among agents: sealed-bid (first or second price), English (ascending, in rounds) and
 * Dutch (descending), with a reserve price.
 *
 * The rules (the pure functions below are the whole of them; the runs only ask and loop):
 * - **What counts as a bid.** A `Bid` answer whose amount passes `validBid` (default: a finite,
 *   non-negative number) and is at least the reserve (and, English, the round's minimum bid; Dutch,
 *   the asking price). Anything else is recorded as `Rejected` with the rule it broke and a reason;
 *   an answer that is not a `Bid`/`Pass` of the protocol at all is `Rejected` by the `schema` rule
 *   with the parse error.
 *   An agent that does not answer within `timeout` (or whose node is unreachable) is recorded as
 *   `NoAnswer` and counts as no bid.
 * - **Ties** break by the order of `agents`: among equal best bids, the agent listed first wins.
 *   The order is the caller's, so a caller can rank agents (by priority, by id) before the run.
 * - **sealed-bid**: one round; the highest bid wins. `first-price`: the winner pays its bid.
 *   `second-price` (Vickrey, the default): the winner pays the highest other valid bid (equal to its
 *   own in a tie); with no other valid bid it pays the reserve if one is set, else its own bid.
 * - **english**: the minimum bid of round 1 is `max(startingPrice, reserve)`, then the standing bid
 *   plus `increment`. Each round asks every active agent but the leader. A valid bid keeps an agent
 *   in; a pass, a rejected bid or no answer takes it out for good. The highest bid of the round
 *   becomes the standing bid. The auction ends when a round brings no valid bid, when only the
 *   leader is left, or after `maxRounds`; the leader pays its standing bid.
 * - **dutch**: round r asks every agent at `startingPrice - (r - 1) * decrement`, never below the
 *   reserve (default 0). The first round with a taker (a bid of at least the price) ends it; the
 *   first taker in `agents` order wins and pays the price. An agent that does not answer a round is
 *   not asked again.
 * - No winner is a typed `NoWinner` (`reserve-not-met` when bids were refused for the reserve,
 *   else `no-bids`), carrying every bid record.
 *
 * Underneath, every round is one `AgentCalls.ask(agents, { _tag: "Bid", ... }, { timeout })`: a
 * round completes within its timeout whatever the agents do, so a sealed-bid run completes within
 * one timeout and an English run within `maxRounds` timeouts. Drop down to `AgentCalls.ask` (or to
 * `AgentEntity.client`) to run another auction format on the same protocol.
 */
import type * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Schema from "effect/Schema"
import type { AgentId, BidReply, BidRequest } from "./Agent.js"
import { AuctionType } from "./Agent.js"
import { type Answer, AgentCalls, defaultTimeout } from "./AgentCalls.js"
import { InvalidOptions, NoAnswerReason, type UnknownAgents } from "./MabeamError.js"

/** What the winner of a sealed-bid auction pays. */
export const PaymentRule = Schema.Literal("first-price", "second-price")
/** @see PaymentRule */
export type PaymentRule = typeof PaymentRule.Type

/** The rule a refused bid broke. */
export const RejectionRule = Schema.Literal("schema", "reserve", "minimum", "price")
/** @see RejectionRule */
export type RejectionRule = typeof RejectionRule.Type

/** What became of one agent's answer in one round. */
export const BidOutcome = Schema.Union(
  Schema.TaggedStruct("Valid", { amount: Schema.Number }),
  Schema.TaggedStruct("Rejected", {
    /** absent when the answer was not a bid of the protocol at all */
    amount: Schema.optional(Schema.Number),
    rule: RejectionRule,
    reason: Schema.String
  }),
  Schema.TaggedStruct("Passed", {}),
  Schema.TaggedStruct("NoAnswer", { reason: NoAnswerReason, detail: Schema.String })
)
/** @see BidOutcome */
export type BidOutcome = typeof BidOutcome.Type

/** One agent's answer in one round. */
export const BidRecord = Schema.Struct({ agent: Schema.String, round: Schema.Int, outcome: BidOutcome })
/** @see BidRecord */
export type BidRecord = typeof BidRecord.Type

/** The result of an auction that sold. */
export const AuctionResult = Schema.Struct({
  auctionId: Schema.String,
  auctionType: AuctionType,
  winner: Schema.String,
  payment: Schema.Number,
  allocation: Schema.Struct({ agent: Schema.String, resources: Schema.Unknown }),
  /** every answer of every round, in round order then in the order of `agents` */
  bids: Schema.Array(BidRecord),
  rounds: Schema.Int,
  /** sealed-bid only */
  paymentRule: Schema.optional(PaymentRule)
})
/** @see AuctionResult */
export type AuctionResult = typeof AuctionResult.Type

/** Why an auction did not sell. */
export const NoWinnerReason = Schema.Literal("no-bids", "reserve-not-met")
/** @see NoWinnerReason */
export type NoWinnerReason = typeof NoWinnerReason.Type

/** The auction ended without a winner. `bids` has every answer, with why each did not count. */
export class NoWinner extends Schema.TaggedError<NoWinner>()("NoWinner", {
  auctionId: Schema.String,
  auctionType: AuctionType,
  reason: NoWinnerReason,
  reserve: Schema.optional(Schema.Number),
  bids: Schema.Array(BidRecord)
}) {
  get message(): string {
    const counts = new Map<string, number>()
    for (const record of this.bids)
      counts.set(record.outcome._tag, (counts.get(record.outcome._tag) ?? 0) + 1)
    const summary = Array.from(counts, ([tag, count]) => `${count} ${tag}`).join(", ") || "no answers"
    return this.reason === "reserve-not-met"
      ? `Auction ${this.auctionId} (${this.auctionType}) did not reach its reserve of ${this.reserve} (${summary})`
      : `Auction ${this.auctionId} (${this.auctionType}) got no valid bid (${summary})`
  }
}

/** The default `validBid`: a finite, non-negative number. */
export const defaultValidBid: Schema.Schema<number> = Schema.Number.pipe(
  Schema.finite(),
  Schema.nonNegative()
)

// -----------------------------------------------------------------------------
// The rules, as pure functions
// -----------------------------------------------------------------------------

/** What a round requires of a bid. */
export interface RoundRules {
  readonly round: number
  readonly reserve?: number | undefined
  /** English: the least bid of the round */
  readonly minimum?: number | undefined
  /** Dutch: the asking price (a bid of at least this takes it) */
  readonly price?: number | undefined
  /** a bid's amount fits this Schema, or it is rejected with the parse error */
  readonly validBid: Schema.Schema<number>
}

const validators = new WeakMap<Schema.Schema<number>, (amount: number) => Either.Either<number, Error>>()

// one compiled validator per Schema: a run judges every answer of every round with the same one
const validatorOf = (schema: Schema.Schema<number>) => {
  let validate = validators.get(schema)
  if (!validate) {
    validate = Schema.validateEither(schema)
    validators.set(schema, validate)
  }
  return validate
}

/** Classifies one answer of a round. */
export const judge = (answer: Answer<BidReply>, rules: RoundRules): BidRecord => {
  const record = (outcome: BidOutcome): BidRecord => ({ agent: answer.agent, round: rules.round, outcome })
  if (answer._tag === "NoAnswer") {
    return answer.reason === "invalid-reply"
      ? record({ _tag: "Rejected", rule: "schema", reason: answer.detail })
      : record({ _tag: "NoAnswer", reason: answer.reason, detail: answer.detail })
  }
  if (answer.reply._tag === "Pass") return record({ _tag: "Passed" })
  const amount = answer.reply.amount
  const rejected = (rule: RejectionRule, reason: string) => record({ _tag: "Rejected", amount, rule, reason })
  const valid = validatorOf(rules.validBid)(amount)
  if (Either.isLeft(valid)) return rejected("schema", valid.left.message)
  if (rules.reserve !== undefined && amount < rules.reserve) {
    return rejected("reserve", `${amount} is below the reserve of ${rules.reserve}`)
  }
  if (rules.minimum !== undefined && amount < rules.minimum) {
    return rejected("minimum", `${amount} is below the minimum bid of ${rules.minimum}`)
  }
  if (rules.price !== undefined && amount < rules.price) {
    return rejected("price", `${amount} is below the asking price of ${rules.price}`)
  }
  return record({ _tag: "Valid", amount })
}

/** The valid bids of some records, in order. */
export const validBids = (records: ReadonlyArray<BidRecord>): Array<{ agent: AgentId; amount: number }> =>
  records.flatMap((record) =>
    record.outcome._tag === "Valid" ? [{ agent: record.agent, amount: record.outcome.amount }] : []
  )

/** The highest bid; among equal amounts, the first in order. */
export const best = <B extends { readonly amount: number }>(bids: ReadonlyArray<B>): B | undefined => {
  let winner: B | undefined
  for (const bid of bids) if (winner === undefined || bid.amount > winner.amount) winner = bid
  return winner
}

const noWinnerReason = (records: ReadonlyArray<BidRecord>): NoWinnerReason =>
  records.some((record) => record.outcome._tag === "Rejected" && record.outcome.rule === "reserve")
    ? "reserve-not-met"
    : "no-bids"

/** The outcome of an auction: a winner and its payment, or why there is none. */
export type Settlement =
  | { readonly _tag: "Sold"; readonly winner: AgentId; readonly payment: number }
  | { readonly _tag: "Unsold"; readonly reason: NoWinnerReason }

/** Settles a sealed-bid auction from its judged records (see the module's rules). */
export const settleSealed = (
  records: ReadonlyArray<BidRecord>,
  options: { readonly paymentRule: PaymentRule; readonly reserve?: number | undefined }
): Settlement => {
  const bids = validBids(records)
  const winner = best(bids)
  if (!winner) return { _tag: "Unsold", reason: noWinnerReason(records) }
  if (options.paymentRule === "first-price")
    return { _tag: "Sold", winner: winner.agent, payment: winner.amount }
  const second = best(bids.filter((bid) => bid !== winner))
  const payment = second ? second.amount : (options.reserve ?? winner.amount)
  return { _tag: "Sold", winner: winner.agent, payment }
}

/** The state of an English auction between rounds. */
export interface EnglishState {
  readonly round: number
  readonly standing: { readonly agent: AgentId; readonly amount: number } | undefined
  /** the agents still in, in `agents` order */
  readonly active: ReadonlyArray<AgentId>
  readonly records: ReadonlyArray<BidRecord>
}

/** The rules of an English auction. */
export interface EnglishRules {
  readonly startingPrice: number
  readonly increment: number
  readonly reserve?: number | undefined
  readonly maxRounds: number
}

/** Before round 1: everyone in, no standing bid. */
export const englishStart = (agents: ReadonlyArray<AgentId>): EnglishState => ({
  round: 1,
  standing: undefined,
  active: agents,
  records: []
})

/** The least bid that counts in the next round. */
export const englishMinimum = (state: EnglishState, rules: EnglishRules): number =>
  state.standing ? state.standing.amount + rules.increment : Math.max(rules.startingPrice, rules.reserve ?? 0)

/** Who is asked in the next round: every active agent but the leader. */
export const englishAsked = (state: EnglishState): ReadonlyArray<AgentId> =>
  state.active.filter((agent) => agent !== state.standing?.agent)

/** Applies one round's judged records: the next state, or the end of the auction. */
export const englishStep = (
  state: EnglishState,
  roundRecords: ReadonlyArray<BidRecord>,
  rules: EnglishRules
):
  | { readonly _tag: "Continue"; readonly state: EnglishState }
  | (Settlement & { readonly state: EnglishState }) => {
  const records = [...state.records, ...roundRecords]
  const bids = validBids(roundRecords)
  const leader = best(bids)
  if (!leader) {
    const done = { ...state, records }
    return state.standing
      ? { _tag: "Sold", winner: state.standing.agent, payment: state.standing.amount, state: done }
      : { _tag: "Unsold", reason: noWinnerReason(records), state: done }
  }
  const staying = new Set(bids.map((bid) => bid.agent))
  const next: EnglishState = {
    round: state.round + 1,
    standing: leader,
    active: state.active.filter((agent) => agent === state.standing?.agent || staying.has(agent)),
    records
  }
  if (state.round >= rules.maxRounds || next.active.length === 1) {
    return {
      _tag: "Sold",
      winner: leader.agent,
      payment: leader.amount,
      state: { ...next, round: state.round }
    }
  }
  return { _tag: "Continue", state: next }
}

/** The asking price of a Dutch round, or `undefined` once it would fall below the floor. */
export const dutchPrice = (
  round: number,
  rules: { readonly startingPrice: number; readonly decrement: number; readonly reserve?: number | undefined }
): number | undefined => {
  const price = rules.startingPrice - (round - 1) * rules.decrement
  const floor = rules.reserve ?? 0
  // a tolerance for fractional steps, so that a last step landing on the floor is not lost to rounding
  return price >= floor - 1e-9 ? Math.max(price, floor) : undefined
}

/** Settles one Dutch round: the first taker wins at the price. */
export const settleDutch = (
  roundRecords: ReadonlyArray<BidRecord>,
  price: number
): Settlement | undefined => {
  const taker = validBids(roundRecords)[0]
  return taker ? { _tag: "Sold", winner: taker.agent, payment: price } : undefined
}

// -----------------------------------------------------------------------------
// Runs
// -----------------------------------------------------------------------------

/** What every auction takes. */
export interface CommonOptions {
  /** the bidders; ties break by this order */
  readonly agents: ReadonlyArray<AgentId>
  /** what is sold; sent to the bidders and returned in `allocation` */
  readonly resources?: unknown
  readonly reserve?: number | undefined
  /** how long each bidder has to answer, per round (default 5 s) */
  readonly timeout?: Duration.DurationInput | undefined
  /** a bid's amount must fit it (default `defaultValidBid`) */
  readonly validBid?: Schema.Schema<number> | undefined
  readonly auctionId?: string | undefined
}

/** A sealed-bid auction. */
export interface SealedBidOptions extends CommonOptions {
  /** default `second-price` */
  readonly paymentRule?: PaymentRule | undefined
}

/** An English auction. */
export interface EnglishOptions extends CommonOptions {
  /** the least opening bid (default 0; the reserve if higher) */
  readonly startingPrice?: number | undefined
  /** how much each bid must beat the standing bid by (default 1) */
  readonly increment?: number | undefined
  /** default 100 */
  readonly maxRounds?: number | undefined
}

/** A Dutch auction. */
export interface DutchOptions extends CommonOptions {
  readonly startingPrice: number
  /** how much the price falls each round */
  readonly decrement: number
  /** default 100 */
  readonly maxRounds?: number | undefined
}

/** Any auction, by `type` (the seed's `run_auction(%{type: ...})`). */
export type AuctionSpec =
  | ({ readonly type: "sealed-bid" } & SealedBidOptions)
  | ({ readonly type: "english" } & EnglishOptions)
  | ({ readonly type: "dutch" } & DutchOptions)

/** The errors of a run: no winner, unknown agents, impossible options. */
export type AuctionError = NoWinner | UnknownAgents | InvalidOptions

const newId = (prefix: string) => Effect.sync(() => `${prefix}-${crypto.randomUUID()}`)

const check = (auctionType: AuctionType, problems: ReadonlyArray<string | false>) => {
  const problem = problems.find((p): p is string => typeof p === "string")
  return problem
    ? Effect.fail(new InvalidOptions({ protocol: `${auctionType} auction`, reason: problem }))
    : Effect.void
}

const finite = (name: string, value: number | undefined, min = 0) =>
  value !== undefined &&
  !(Number.isFinite(value) && value >= min) &&
  `${name} must be a finite number >= ${min}, got ${value}`

const roundLimit = (value: number | undefined) =>
  value !== undefined &&
  !(Number.isInteger(value) && value >= 1) &&
  `maxRounds must be an integer >= 1, got ${value}`

const prepare = (auctionType: AuctionType, options: CommonOptions, problems: ReadonlyArray<string | false>) =>
  Effect.gen(function* () {
    yield* check(auctionType, [
      options.agents.length === 0 && "no agents to ask",
      finite("reserve", options.reserve),
      ...problems
    ])
    const calls = yield* AgentCalls
    const agents = yield* calls.resolve(options.agents)
    const auctionId = options.auctionId ?? (yield* newId(auctionType))
    return {
      calls,
      agents,
      auctionId,
      timeout: options.timeout ?? defaultTimeout,
      validBid: options.validBid ?? defaultValidBid,
      resources: options.resources ?? null
    }
  })

const sold = (
  auctionType: AuctionType,
  auctionId: string,
  resources: unknown,
  settlement: { readonly winner: AgentId; readonly payment: number },
  bids: ReadonlyArray<BidRecord>,
  rounds: number,
  paymentRule?: PaymentRule
): AuctionResult => ({
  auctionId,
  auctionType,
  winner: settlement.winner,
  payment: settlement.payment,
  allocation: { agent: settlement.winner, resources },
  bids,
  rounds,
  ...(paymentRule ? { paymentRule } : {})
})

/**
 * A sealed-bid auction: one `Bid` request to every agent, at once; see the module's rules.
 * Underneath: `AgentCalls.ask(agents, { _tag: "Bid", auctionType: "sealed-bid", ... })`, then
 * `judge` and `settleSealed`.
 */
export const sealedBid = (
  options: SealedBidOptions
): Effect.Effect<AuctionResult, AuctionError, AgentCalls> =>
  Effect.gen(function* () {
    const run = yield* prepare("sealed-bid", options, [])
    const paymentRule = options.paymentRule ?? "second-price"
    const request: BidRequest = {
      auctionId: run.auctionId,
      auctionType: "sealed-bid",
      resources: run.resources,
      round: 1,
      paymentRule,
      ...(options.reserve === undefined ? {} : { reserve: options.reserve })
    }
    const answers = yield* run.calls.ask(run.agents, { _tag: "Bid", ...request }, { timeout: run.timeout })
    const records = answers.map((answer) =>
      judge(answer, { round: 1, reserve: options.reserve, validBid: run.validBid })
    )
    const settlement = settleSealed(records, { paymentRule, reserve: options.reserve })
    if (settlement._tag === "Unsold") {
      return yield* new NoWinner({
        auctionId: run.auctionId,
        auctionType: "sealed-bid",
        reason: settlement.reason,
        ...(options.reserve === undefined ? {} : { reserve: options.reserve }),
        bids: records
      })
    }
    return sold("sealed-bid", run.auctionId, run.resources, settlement, records, 1, paymentRule)
  })

/**
 * An English auction, in rounds; see the module's rules. Underneath: one `AgentCalls.ask` per
 * round to the active agents but the leader, with `price` (the standing bid), `minimumBid` and
 * `leader`; `judge` and `englishStep` decide.
 */
export const english = (options: EnglishOptions): Effect.Effect<AuctionResult, AuctionError, AgentCalls> =>
  Effect.gen(function* () {
    const rules: EnglishRules = {
      startingPrice: options.startingPrice ?? 0,
      increment: options.increment ?? 1,
      reserve: options.reserve,
      maxRounds: options.maxRounds ?? 100
    }
    const run = yield* prepare("english", options, [
      finite("startingPrice", options.startingPrice),
      !(Number.isFinite(rules.increment) && rules.increment > 0) &&
        `increment must be a finite number > 0, got ${rules.increment}`,
      roundLimit(options.maxRounds)
    ])
    let state = englishStart(run.agents)
    while (true) {
      const minimum = englishMinimum(state, rules)
      const request: BidRequest = {
        auctionId: run.auctionId,
        auctionType: "english",
        resources: run.resources,
        round: state.round,
        price: state.standing?.amount ?? minimum,
        minimumBid: minimum,
        ...(state.standing ? { leader: state.standing.agent } : {}),
        ...(options.reserve === undefined ? {} : { reserve: options.reserve })
      }
      const asked = englishAsked(state)
      const answers = yield* run.calls.ask(asked, { _tag: "Bid", ...request }, { timeout: run.timeout })
      const records = answers.map((answer) =>
        judge(answer, { round: state.round, reserve: options.reserve, minimum, validBid: run.validBid })
      )
      const step = englishStep(state, records, rules)
      if (step._tag === "Continue") {
        state = step.state
        continue
      }
      if (step._tag === "Unsold") {
        return yield* new NoWinner({
          auctionId: run.auctionId,
          auctionType: "english",
          reason: step.reason,
          ...(options.reserve === undefined ? {} : { reserve: options.reserve }),
          bids: step.state.records
        })
      }
      return sold("english", run.auctionId, run.resources, step, step.state.records, step.state.round)
    }
  })

/**
 * A Dutch auction: the price falls by `decrement` each round until an agent takes it; see the
 * module's rules. Underneath: one `AgentCalls.ask` per round with `price`, then `judge` and
 * `settleDutch`.
 */
export const dutch = (options: DutchOptions): Effect.Effect<AuctionResult, AuctionError, AgentCalls> =>
  Effect.gen(function* () {
    const maxRounds = options.maxRounds ?? 100
    const run = yield* prepare("dutch", options, [
      finite("startingPrice", options.startingPrice),
      !(Number.isFinite(options.decrement) && options.decrement > 0) &&
        `decrement must be a finite number > 0, got ${options.decrement}`,
      options.reserve !== undefined &&
        options.startingPrice < options.reserve &&
        `startingPrice ${options.startingPrice} is below the reserve ${options.reserve}`,
      roundLimit(options.maxRounds)
    ])
    const records: Array<BidRecord> = []
    let asked = run.agents
    for (let round = 1; round <= maxRounds && asked.length > 0; round++) {
      const price = dutchPrice(round, options)
      if (price === undefined) break
      const request: BidRequest = {
        auctionId: run.auctionId,
        auctionType: "dutch",
        resources: run.resources,
        round,
        price,
        ...(options.reserve === undefined ? {} : { reserve: options.reserve })
      }
      const answers = yield* run.calls.ask(asked, { _tag: "Bid", ...request }, { timeout: run.timeout })
      const roundRecords = answers.map((answer) =>
        judge(answer, { round, reserve: options.reserve, price, validBid: run.validBid })
      )
      records.push(...roundRecords)
      const settlement = settleDutch(roundRecords, price)
      if (settlement?._tag === "Sold") {
        return sold("dutch", run.auctionId, run.resources, settlement, records, round)
      }
      const silent = new Set(roundRecords.filter((r) => r.outcome._tag === "NoAnswer").map((r) => r.agent))
      asked = asked.filter((agent) => !silent.has(agent))
    }
    return yield* new NoWinner({
      auctionId: run.auctionId,
      auctionType: "dutch",
      reason: options.reserve === undefined ? "no-bids" : "reserve-not-met",
      ...(options.reserve === undefined ? {} : { reserve: options.reserve }),
      bids: records
    })
  })

/** Runs any auction by its `type`: `sealedBid`, `english` or `dutch`. */
export const run = (spec: AuctionSpec): Effect.Effect<AuctionResult, AuctionError, AgentCalls> => {
  switch (spec.type) {
    case "sealed-bid":
      return sealedBid(spec)
    case "english":
      return english(spec)
    case "dutch":
      return dutch(spec)
  }
}
