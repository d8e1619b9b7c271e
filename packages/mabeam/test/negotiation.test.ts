import { describe, expect, it } from "@effect/vitest"
import * as Agent from "@foundation/mabeam/Agent"
import * as AgentCalls from "@foundation/mabeam/AgentCalls"
import * as Negotiation from "@foundation/mabeam/Negotiation"
import * as Effect from "effect/Effect"
import * as Schema from "effect/Schema"

const Terms = Schema.Struct({ price: Schema.Number })
const priceOf = (terms: unknown) => Schema.decodeUnknownSync(Terms)(terms).price

/**
 * A seller conceding 5 per round from 100 down to its floor: it asks its current aspiration and
 * accepts any price at least that. Its utility is the price above its floor.
 */
const seller = (floor: number): Agent.AgentHandlers => {
  const aspiration = (round: number) => Math.max(floor, 100 - 5 * (round - 1))
  return {
    offer: ({ round }) =>
      Effect.succeed(Agent.proposal({ price: aspiration(round) }, aspiration(round) - floor)),
    respond: ({ round, terms }) =>
      Effect.succeed(
        priceOf(terms) >= aspiration(round) ? Agent.accept(priceOf(terms) - floor) : Agent.reject("too low")
      )
  }
}

/** A buyer conceding 5 per round from 40 up to its ceiling. */
const buyer = (ceiling: number): Agent.AgentHandlers => {
  const aspiration = (round: number) => Math.min(ceiling, 40 + 5 * (round - 1))
  return {
    offer: ({ round }) =>
      Effect.succeed(Agent.proposal({ price: aspiration(round) }, ceiling - aspiration(round))),
    respond: ({ round, terms }) =>
      Effect.succeed(
        priceOf(terms) <= aspiration(round)
          ? Agent.accept(ceiling - priceOf(terms))
          : Agent.reject("too high")
      )
  }
}

const failure = <A, E, R>(run: Effect.Effect<A, E, R>) =>
  run.pipe(
    Effect.flatMap(() => Effect.dieMessage("expected the negotiation to fail")),
    Effect.catchAll((error) => Effect.succeed(error))
  )

describe("negotiation by alternating offers", () => {
  it.effect(
    "a seller and a buyer conceding towards each other agree at the round their aspirations cross",
    () =>
      // r1 seller asks 100 (buyer accepts <= 40); r2 buyer offers 45 (seller accepts >= 95); r3 90 / 50;
      // r4 55 / 85; r5 80 / 60; r6 65 / 75; r7 seller asks 70 and the buyer now accepts <= 70
      Effect.gen(function* () {
        const agreement = yield* Negotiation.run({
          parties: ["seller", "buyer"],
          topic: "gpu-hours",
          terms: Terms
        })
        expect(agreement).toMatchObject({
          terms: { price: 70 },
          proposer: "seller",
          round: 7,
          utilities: { seller: 10, buyer: 10 }
        })
        expect(agreement.history.map((round) => [round.proposer, priceOf(round.terms)])).toEqual([
          ["seller", 100],
          ["buyer", 45],
          ["seller", 90],
          ["buyer", 55],
          ["seller", 80],
          ["buyer", 65],
          ["seller", 70]
        ])
        expect(agreement.history[5]).toMatchObject({ accepted: [], rejected: ["seller"], silent: [] })
      }).pipe(Effect.provide(AgentCalls.layerLocal({ seller: seller(60), buyer: buyer(80) })))
  )

  it.effect("parties whose ranges never overlap end with NoAgreement carrying each one's last offer", () =>
    Effect.gen(function* () {
      const error = yield* failure(Negotiation.run({ parties: ["seller", "buyer"], maxRounds: 6 }))
      // seller: 100, 90, 90 (its floor); buyer: 45, 55, 65
      expect(error).toMatchObject({
        _tag: "NoAgreement",
        reason: "max-rounds",
        rounds: 6,
        lastOffers: { seller: { price: 90 }, buyer: { price: 65 } }
      })
      if (error._tag === "NoAgreement") expect(error.history).toHaveLength(6)
    }).pipe(Effect.provide(AgentCalls.layerLocal({ seller: seller(90), buyer: buyer(70) })))
  )

  it.effect("with three parties an offer needs both others to accept", () =>
    Effect.gen(function* () {
      // cheap never pays more than 50 and the seller never takes less than 60: no offer can satisfy
      // all three (the buyer's 75 at round 8 suits the seller, not cheap)
      const error = yield* failure(
        Negotiation.run({ parties: ["seller", "buyer", "cheap"], maxRounds: 12, terms: Terms })
      )
      expect(error).toMatchObject({ _tag: "NoAgreement", reason: "max-rounds", rounds: 12 })
      const agreement = yield* Negotiation.run({ parties: ["seller", "buyer", "rich"], terms: Terms })
      // r1 seller 100 rejected; r2 buyer 45: seller wants 95; r3 rich 50: seller wants 90; r4 seller 85:
      // buyer accepts <= 55, no; ... r7 seller 70: buyer accepts <= 70, rich accepts <= 70
      expect(agreement).toMatchObject({ proposer: "seller", round: 7, terms: { price: 70 } })
      expect(Object.keys(agreement.utilities).sort()).toEqual(["buyer", "rich", "seller"])
    }).pipe(
      Effect.provide(
        AgentCalls.layerLocal({ seller: seller(60), buyer: buyer(80), cheap: buyer(50), rich: buyer(90) })
      )
    )
  )

  it.effect("a withdrawal ends the negotiation; an offer outside the terms Schema loses its turn", () =>
    Effect.gen(function* () {
      const withdrawn = yield* failure(Negotiation.run({ parties: ["seller", "quitter"], terms: Terms }))
      expect(withdrawn).toMatchObject({ _tag: "NoAgreement", reason: "withdrawn", rounds: 2 })
      expect(withdrawn.message).toContain("quitter: found a better deal")
      const invalid = yield* failure(
        Negotiation.run({ parties: ["vague", "seller"], terms: Terms, maxRounds: 2 })
      )
      if (invalid._tag !== "NoAgreement") return yield* Effect.dieMessage(`unexpected ${invalid._tag}`)
      expect(invalid.history[0].note).toContain("invalid terms")
      expect(invalid.lastOffers).toEqual({ seller: { price: 95 } })
    }).pipe(
      Effect.provide(
        AgentCalls.layerLocal({
          seller: seller(60),
          quitter: {
            offer: () => Effect.succeed(Agent.withdraw("found a better deal")),
            respond: () => Effect.succeed(Agent.reject())
          },
          vague: {
            offer: () => Effect.succeed(Agent.proposal("cheap, please", 1)),
            respond: () => Effect.succeed(Agent.reject())
          }
        })
      )
    )
  )

  it.live("a silent party: its turns are lost, its silence rejects, and the deadline ends the run", () =>
    Effect.gen(function* () {
      const startedAt = Date.now()
      const error = yield* failure(
        Negotiation.run({
          parties: ["seller", "mute"],
          deadline: "400 millis",
          timeout: "100 millis",
          maxRounds: 100
        })
      )
      expect(Date.now() - startedAt).toBeLessThan(3000)
      if (error._tag !== "NoAgreement") return yield* Effect.dieMessage(`unexpected ${error._tag}`)
      expect(error.reason).toBe("deadline")
      expect(error.history[0]).toMatchObject({ proposer: "seller", silent: ["mute"] })
      expect(error.history[1]).toMatchObject({ proposer: "mute", note: expect.stringContaining("timeout") })
    }).pipe(
      Effect.provide(
        AgentCalls.layerLocal({
          seller: seller(60),
          mute: { offer: () => Effect.never, respond: () => Effect.never }
        })
      )
    )
  )

  it.effect("fewer than two parties is InvalidOptions", () =>
    Effect.gen(function* () {
      const error = yield* failure(Negotiation.run({ parties: ["seller", "seller"] }))
      expect(error).toMatchObject({ _tag: "InvalidOptions", protocol: "negotiation" })
    }).pipe(Effect.provide(AgentCalls.layerLocal({ seller: seller(60) })))
  )
})
