import { describe, expect, it } from "@effect/vitest"
import * as Agent from "@foundation/mabeam/Agent"
import * as AgentCalls from "@foundation/mabeam/AgentCalls"
import * as Consensus from "@foundation/mabeam/Consensus"
import * as Effect from "effect/Effect"

const votes = (choice: string, confidence?: number): Agent.AgentHandlers => ({
  vote: () => Effect.succeed(Agent.ballot(choice, confidence))
})
const abstains: Agent.AgentHandlers = { vote: () => Effect.succeed(Agent.abstain("conflict of interest")) }
const silent: Agent.AgentHandlers = { vote: () => Effect.never }

/** Runs a vote among in-process agents. */
const vote = (agents: Record<string, Agent.AgentHandlers>, options?: Partial<Consensus.Options>) =>
  Consensus.run({
    agents: Object.keys(agents),
    proposal: { upgrade: "v2" },
    timeout: "100 millis",
    ...options
  }).pipe(Effect.provide(AgentCalls.layerLocal(agents)))

/** The error a vote must fail with. */
const failure = <A, E, R>(run: Effect.Effect<A, E, R>) =>
  run.pipe(
    Effect.flatMap(() => Effect.dieMessage("expected the vote to fail")),
    Effect.catchAll((error) => Effect.succeed(error))
  )

describe("consensus", () => {
  it.effect("majority: 3 yes of 5 decide yes; confidence is the support over the whole electorate", () =>
    Effect.gen(function* () {
      const result = yield* vote({
        a: votes("yes"),
        b: votes("yes"),
        c: votes("no"),
        d: votes("yes"),
        e: votes("no")
      })
      expect(result).toMatchObject({ decision: "yes", reached: true, confidence: 3 / 5, abstained: [] })
      expect(result.tally).toEqual({ yes: { votes: 3, weight: 3 }, no: { votes: 2, weight: 2 } })
      expect(result.votes.map((v) => v.agent)).toEqual(["a", "b", "c", "d", "e"])
    })
  )

  it.effect("confidence weighs each ballot by the voter's own confidence", () =>
    Effect.gen(function* () {
      const result = yield* vote({ a: votes("yes", 0.8), b: votes("yes", 0.6), c: votes("no") })
      // (0.8 + 0.6) / 3 eligible voters
      expect(result.decision).toBe("yes")
      expect(result.confidence).toBeCloseTo(1.4 / 3, 10)
    })
  )

  it.effect("majority: a 2-2 tie is a typed NoDecision, not a silent success", () =>
    Effect.gen(function* () {
      const error = yield* failure(vote({ a: votes("yes"), b: votes("no"), c: votes("yes"), d: votes("no") }))
      expect(error).toMatchObject({ _tag: "NoDecision", reason: "tie", rule: { _tag: "Majority" } })
    })
  )

  it.effect("majority among three options: a plurality of exactly half is below the threshold", () =>
    Effect.gen(function* () {
      const error = yield* failure(
        vote(
          { a: votes("red"), b: votes("red"), c: votes("green"), d: votes("blue") },
          {
            options: ["red", "green", "blue"]
          }
        )
      )
      expect(error).toMatchObject({ _tag: "NoDecision", reason: "below-threshold" })
    })
  )

  it.effect("supermajority (default 2/3): 4 of 6 reach it, 3 of 5 do not", () =>
    Effect.gen(function* () {
      const four = yield* vote(
        {
          a: votes("yes"),
          b: votes("yes"),
          c: votes("yes"),
          d: votes("yes"),
          e: votes("no"),
          f: votes("no")
        },
        { rule: Consensus.supermajority() }
      )
      expect(four.decision).toBe("yes")
      const three = yield* failure(
        vote(
          { a: votes("yes"), b: votes("yes"), c: votes("yes"), d: votes("no"), e: votes("no") },
          { rule: Consensus.supermajority() }
        )
      )
      expect(three).toMatchObject({ _tag: "NoDecision", reason: "below-threshold" })
      const threeQuarters = yield* vote(
        { a: votes("no"), b: votes("no"), c: votes("no"), d: votes("yes") },
        { rule: Consensus.supermajority(0.75) }
      )
      expect(threeQuarters.decision).toBe("no")
    })
  )

  it.effect("unanimous: abstaining does not block it, one dissent does", () =>
    Effect.gen(function* () {
      const result = yield* vote(
        { a: votes("yes"), b: votes("yes"), c: abstains },
        { rule: Consensus.unanimous }
      )
      expect(result).toMatchObject({ decision: "yes", confidence: 2 / 3 })
      expect(result.abstained).toEqual([{ agent: "c", reason: "abstained", detail: "conflict of interest" }])
      const error = yield* failure(
        vote({ a: votes("yes"), b: votes("yes"), c: votes("no") }, { rule: Consensus.unanimous })
      )
      expect(error).toMatchObject({ _tag: "NoDecision", reason: "dissent" })
    })
  )

  it.effect("weighted: a heavy voter outweighs three light ones; a higher threshold is not reached", () =>
    Effect.gen(function* () {
      const agents = { a: votes("yes"), b: votes("no"), c: votes("no"), d: votes("no") }
      const weights = { a: 5, b: 1, c: 1 } // d weighs 1 by default
      const result = yield* vote(agents, { rule: Consensus.weighted(weights) })
      // yes: 5 of 8
      expect(result).toMatchObject({ decision: "yes", confidence: 5 / 8 })
      expect(result.tally).toEqual({ yes: { votes: 1, weight: 5 }, no: { votes: 3, weight: 3 } })
      const error = yield* failure(vote(agents, { rule: Consensus.weighted(weights, 0.7) }))
      expect(error).toMatchObject({ _tag: "NoDecision", reason: "below-threshold" })
      const split = yield* failure(
        vote({ a: votes("yes"), b: votes("no") }, { rule: Consensus.weighted({ a: 2, b: 2 }) })
      )
      expect(split).toMatchObject({ _tag: "NoDecision", reason: "tie" })
    })
  )

  it.effect("all abstaining: the quorum is not met; with no quorum, there are no votes", () =>
    Effect.gen(function* () {
      const error = yield* failure(vote({ a: abstains, b: abstains, c: abstains }))
      expect(error).toMatchObject({ _tag: "QuorumNotMet", required: 2, cast: 0, eligible: 3 })
      const none = yield* failure(vote({ a: abstains, b: abstains }, { quorum: 0 }))
      expect(none).toMatchObject({ _tag: "NoDecision", reason: "no-votes" })
    })
  )

  it.live("quorum not met: abstentions and non-answers are listed visibly with their reasons", () =>
    Effect.gen(function* () {
      const error = yield* failure(
        vote({ a: votes("yes"), b: votes("yes"), c: votes("no"), d: abstains, e: silent }, { quorum: 0.8 })
      )
      expect(error).toMatchObject({ _tag: "QuorumNotMet", required: 4, cast: 3, eligible: 5 })
      if (error._tag !== "QuorumNotMet") return
      expect(error.abstained.map((a) => [a.agent, a.reason])).toEqual([
        ["d", "abstained"],
        ["e", "timeout"]
      ])
      // the same vote under the default quorum (1/2: 3 of 5) decides
      const result = yield* vote({ a: votes("yes"), b: votes("yes"), c: votes("no"), d: abstains, e: silent })
      expect(result).toMatchObject({ decision: "yes", confidence: 2 / 5 })
    })
  )

  it.effect("an invalid ballot counts as abstaining, with the reason", () =>
    Effect.gen(function* () {
      const result = yield* vote({
        a: votes("yes"),
        b: votes("maybe"),
        c: votes("yes", 1.5),
        d: votes("yes")
      })
      expect(result.decision).toBe("yes")
      expect(result.abstained).toEqual([
        { agent: "b", reason: "invalid-ballot", detail: '"maybe" is not one of [yes, no]' },
        { agent: "c", reason: "invalid-ballot", detail: "confidence 1.5 is outside [0, 1]" }
      ])
    })
  )

  it.effect("impossible options are InvalidOptions", () =>
    Effect.gen(function* () {
      const half = yield* failure(vote({ a: votes("yes") }, { rule: Consensus.supermajority(0.5) }))
      expect(half).toMatchObject({ _tag: "InvalidOptions", protocol: "consensus" })
      const quorum = yield* failure(vote({ a: votes("yes") }, { quorum: 2 }))
      expect(quorum._tag).toBe("InvalidOptions")
      const repeated = yield* failure(vote({ a: votes("yes") }, { options: ["yes", "yes"] }))
      expect(repeated._tag).toBe("InvalidOptions")
    })
  )
})
