/**
 * Negotiation among two or more agents by alternating offers, with a deadline and a maximum number
 * of rounds.
 *
 * The protocol:
 * - The parties take turns in the order given: in round r the proposer is `parties[(r - 1) % n]`.
 * - The proposer gets `Offer` (the topic, the round, the deadline and the whole history) and answers
 *   a `Proposal` (terms, and their utility to it) or `Withdraw`. How it concedes from round to round
 *   is its own strategy: its handler sees the history and the deadline.
 * - Every other party gets `Respond` with the terms, at once, and answers `Accept` (with the terms'
 *   utility to it) or `Reject`. No answer within `timeout` counts as a rejection.
 * - All accept: agreement, on those terms, with each party's utility. Otherwise the round goes into
 *   the history and the next party proposes.
 * - A proposer that does not answer, or whose terms do not fit `terms` (a Schema, default any
 *   value), loses its turn (the round is recorded with a note). A `Withdraw` ends the negotiation.
 * - No round starts after `maxRounds` (default 10) or past the deadline (default 30 s from the
 *   start); the negotiation then fails with `NoAgreement`, carrying each party's last offer and the
 *   history. Every call is cut at the deadline, so the run ends by it.
 *
 * Underneath, per round: `AgentCalls.ask([proposer], { _tag: "Offer", ... })`, then
 * `AgentCalls.ask(others, { _tag: "Respond", ... })`. Drop down to those calls for another protocol
 * (several simultaneous offers, a mediator).
 */
import * as Clock from "effect/Clock"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Schema from "effect/Schema"
import type { AgentId, NegotiationRound } from "./Agent.js"
import { NegotiationRound as NegotiationRoundSchema } from "./Agent.js"
import { AgentCalls, defaultTimeout } from "./AgentCalls.js"
import { InvalidOptions, type UnknownAgents } from "./MabeamError.js"

/** An agreement. */
export const Agreement = Schema.Struct({
  negotiationId: Schema.String,
  terms: Schema.Unknown,
  proposer: Schema.String,
  round: Schema.Int,
  /** each party's utility for the terms, as it reported it */
  utilities: Schema.Record({ key: Schema.String, value: Schema.Number }),
  history: Schema.Array(NegotiationRoundSchema)
})
/** @see Agreement */
export type Agreement = typeof Agreement.Type

/** Why a negotiation ended without agreement. */
export const NoAgreementReason = Schema.Literal("max-rounds", "deadline", "withdrawn")
/** @see NoAgreementReason */
export type NoAgreementReason = typeof NoAgreementReason.Type

/** The negotiation ended without agreement. `lastOffers` holds each party's last valid terms. */
export class NoAgreement extends Schema.TaggedError<NoAgreement>()("NoAgreement", {
  negotiationId: Schema.String,
  reason: NoAgreementReason,
  rounds: Schema.Int,
  lastOffers: Schema.Record({ key: Schema.String, value: Schema.Unknown }),
  history: Schema.Array(NegotiationRoundSchema),
  detail: Schema.optional(Schema.String)
}) {
  get message(): string {
    const why =
      this.reason === "withdrawn"
        ? `a party withdrew${this.detail ? ` (${this.detail})` : ""}`
        : this.reason === "deadline"
          ? "the deadline passed"
          : "the maximum number of rounds was reached"
    return `Negotiation ${this.negotiationId} ended without agreement after ${this.rounds} rounds: ${why}. Last offers: ${JSON.stringify(this.lastOffers)}`
  }
}

/** A negotiation. */
export interface Options {
  /** two or more parties; they propose in this order */
  readonly parties: ReadonlyArray<AgentId>
  /** what is negotiated; sent to every party */
  readonly topic?: unknown
  /** the terms of a valid offer (default: any value) */
  readonly terms?: Schema.Schema<any> | undefined
  /** default 10 */
  readonly maxRounds?: number | undefined
  /** from the start (default 30 s) */
  readonly deadline?: Duration.DurationInput | undefined
  /** how long each party has to answer one request (default 5 s, cut at the deadline) */
  readonly timeout?: Duration.DurationInput | undefined
  readonly negotiationId?: string | undefined
}

/** The errors of a negotiation. */
export type NegotiationError = NoAgreement | UnknownAgents | InvalidOptions

/**
 * Runs the alternating-offers protocol; see the module's description.
 */
export const run = (options: Options): Effect.Effect<Agreement, NegotiationError, AgentCalls> =>
  Effect.gen(function* () {
    const maxRounds = options.maxRounds ?? 10
    const problem =
      new Set(options.parties).size < 2
        ? "a negotiation needs at least two distinct parties"
        : !(Number.isInteger(maxRounds) && maxRounds >= 1)
          ? `maxRounds must be an integer >= 1, got ${maxRounds}`
          : undefined
    if (problem) return yield* new InvalidOptions({ protocol: "negotiation", reason: problem })
    const calls = yield* AgentCalls
    const parties = yield* calls.resolve(options.parties)
    const negotiationId = options.negotiationId ?? `negotiation-${crypto.randomUUID()}`
    const startedAt = yield* Clock.currentTimeMillis
    const deadline = startedAt + Duration.toMillis(options.deadline ?? Duration.seconds(30))
    const callTimeout = Duration.toMillis(options.timeout ?? defaultTimeout)
    const validTerms = options.terms ? Schema.validateEither(options.terms) : undefined
    const topic = options.topic ?? null
    const history: Array<NegotiationRound> = []
    const lastOffers: Record<string, unknown> = {}

    const noAgreement = (reason: NoAgreementReason, rounds: number, detail?: string) =>
      new NoAgreement({
        negotiationId,
        reason,
        rounds,
        lastOffers: { ...lastOffers },
        history: [...history],
        ...(detail === undefined ? {} : { detail })
      })

    for (let round = 1; round <= maxRounds; round++) {
      const now = yield* Clock.currentTimeMillis
      if (now >= deadline) return yield* noAgreement("deadline", round - 1)
      const timeout = Math.min(callTimeout, deadline - now)
      const proposer = parties[(round - 1) % parties.length]
      const responders = parties.filter((party) => party !== proposer)
      const common = { negotiationId, topic, round, maxRounds, deadline, parties, history: [...history] }
      const skipped = (note: string) =>
        history.push({ round, proposer, note, accepted: [], rejected: [], silent: [] })

      const [offer] = yield* calls.ask([proposer], { _tag: "Offer", ...common }, { timeout })
      if (offer._tag === "NoAnswer") {
        skipped(`${offer.reason}: ${offer.detail}`)
        continue
      }
      if (offer.reply._tag === "Withdraw") {
        skipped(`withdrew: ${offer.reply.reason}`)
        return yield* noAgreement("withdrawn", round, `${proposer}: ${offer.reply.reason}`)
      }
      const { terms, utility } = offer.reply
      const checked = validTerms?.(terms)
      if (checked && Either.isLeft(checked)) {
        skipped(`invalid terms: ${checked.left.message}`)
        continue
      }
      lastOffers[proposer] = terms

      const remaining = deadline - (yield* Clock.currentTimeMillis)
      const answers =
        remaining > 0
          ? yield* calls.ask(
              responders,
              { _tag: "Respond", ...common, proposer, terms },
              { timeout: Math.min(callTimeout, remaining) }
            )
          : []
      const accepted: Array<string> = []
      const rejected: Array<string> = []
      const silent: Array<string> = []
      const utilities: Record<string, number> = { [proposer]: utility }
      for (const answer of answers) {
        if (answer._tag === "NoAnswer") silent.push(answer.agent)
        else if (answer.reply._tag === "Accept") {
          accepted.push(answer.agent)
          utilities[answer.agent] = answer.reply.utility
        } else rejected.push(answer.agent)
      }
      history.push({ round, proposer, terms, accepted, rejected, silent })
      if (accepted.length === responders.length) {
        return { negotiationId, terms, proposer, round, utilities, history: [...history] }
      }
      if (remaining <= 0) return yield* noAgreement("deadline", round)
    }
    return yield* noAgreement("max-rounds", maxRounds)
  })
