import { describe, expect, it } from "@effect/vitest"
import * as Agent from "@foundation/mabeam/Agent"
import * as AgentCalls from "@foundation/mabeam/AgentCalls"
import * as Auction from "@foundation/mabeam/Auction"
import * as OrchestrationVariable from "@foundation/mabeam/OrchestrationVariable"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"

const agents = {
  a: { bid: () => Effect.succeed(Agent.bid(30)) },
  b: { bid: () => Effect.succeed(Agent.bid(50)) },
  c: { bid: () => Effect.succeed(Agent.bid(40)) }
} satisfies Record<string, Agent.AgentHandlers>

const TestLayer = OrchestrationVariable.layer({ historyLimit: 3 }).pipe(
  Layer.provideMerge(AgentCalls.layerLocal(agents))
)

interface Allocation {
  readonly winner: string
  readonly payment: number
  readonly run: number
  readonly previousRun: number | undefined
}

const allocation = OrchestrationVariable.make<Allocation, Auction.AuctionError, AgentCalls.AgentCalls>({
  id: "gpu",
  type: "auction",
  agents: ["a", "b", "c"],
  coordinate: (bidders, context) =>
    Effect.map(
      Auction.sealedBid({ agents: bidders, resources: { gpus: context.run }, paymentRule: "second-price" }),
      (result) => ({
        winner: result.winner,
        payment: result.payment,
        run: context.run,
        previousRun: Option.getOrUndefined(context.previous)?.run
      })
    ),
  constraints: { rules: [{ name: "affordable", holds: (value) => value.payment <= 45 }] }
})

describe("orchestration variables", () => {
  it.effect(
    "a run decides the value, keeps it, and records the run; the next run sees the previous value",
    () =>
      Effect.gen(function* () {
        const variables = yield* OrchestrationVariable.OrchestrationVariables
        yield* variables.register(allocation)
        const first = yield* variables.run(allocation)
        expect(first).toEqual({ winner: "b", payment: 40, run: 1, previousRun: undefined })
        const second = yield* variables.run(allocation)
        expect(second).toEqual({ winner: "b", payment: 40, run: 2, previousRun: 1 })
        expect(yield* variables.value("gpu")).toEqual(Option.some(second))
        const history = yield* variables.history("gpu")
        expect(history.map((entry) => [entry.run, entry.outcome])).toEqual([
          [1, "decided"],
          [2, "decided"]
        ])
        expect(yield* variables.list).toEqual([{ id: "gpu", type: "auction", agents: ["a", "b", "c"] }])
      }).pipe(Effect.provide(TestLayer))
  )

  it.effect("a value breaking a rule is ConstraintViolated, recorded, and does not replace the value", () =>
    Effect.gen(function* () {
      const variables = yield* OrchestrationVariable.OrchestrationVariables
      const strict = OrchestrationVariable.make({
        ...allocation,
        constraints: { rules: [{ name: "cheap", holds: (value) => value.payment <= 10 }] }
      })
      yield* variables.register(strict)
      const error = yield* Effect.flip(variables.run(strict))
      expect(error).toMatchObject({ _tag: "ConstraintViolated", variable: "gpu", constraint: "cheap" })
      expect(yield* variables.value("gpu")).toEqual(Option.none())
      const [entry] = yield* variables.history("gpu")
      expect(entry).toMatchObject({ run: 1, outcome: "violated", detail: "cheap" })
    }).pipe(Effect.provide(TestLayer))
  )

  it.live("a run longer than maxDuration is interrupted and fails the maxDuration constraint", () =>
    Effect.gen(function* () {
      const variables = yield* OrchestrationVariable.OrchestrationVariables
      const slow = OrchestrationVariable.make({
        id: "slow",
        type: "custom",
        agents: ["a"],
        coordinate: () => Effect.as(Effect.sleep("10 seconds"), 1),
        constraints: { maxDuration: "100 millis" }
      })
      yield* variables.register(slow)
      const error = yield* Effect.flip(variables.run(slow))
      expect(error).toMatchObject({ _tag: "ConstraintViolated", constraint: "maxDuration" })
      const [entry] = yield* variables.history("slow")
      expect(entry.outcome).toBe("violated")
      expect(entry.durationMs).toBeGreaterThanOrEqual(90)
    }).pipe(Effect.provide(TestLayer))
  )

  it.effect("failed runs are recorded too, and the history keeps only the last runs", () =>
    Effect.gen(function* () {
      const variables = yield* OrchestrationVariable.OrchestrationVariables
      let runs = 0
      const flaky = OrchestrationVariable.make({
        id: "flaky",
        type: "custom",
        agents: ["a"],
        coordinate: () =>
          ++runs % 2 === 0 ? Effect.fail(new Error(`run ${runs} failed`)) : Effect.succeed(runs)
      })
      yield* variables.register(flaky)
      for (let i = 0; i < 5; i++) yield* Effect.either(variables.run(flaky))
      const history = yield* variables.history("flaky")
      expect(history.map((entry) => [entry.run, entry.outcome, entry.detail ?? entry.value])).toEqual([
        [3, "decided", 3],
        [4, "failed", "run 4 failed"],
        [5, "decided", 5]
      ])
    }).pipe(Effect.provide(TestLayer))
  )

  it.effect("registering with an unknown agent, or running an unregistered variable, is a typed error", () =>
    Effect.gen(function* () {
      const variables = yield* OrchestrationVariable.OrchestrationVariables
      const ghost = OrchestrationVariable.make({ ...allocation, id: "ghost", agents: ["a", "ghost"] })
      expect(yield* Effect.flip(variables.register(ghost))).toMatchObject({
        _tag: "UnknownAgents",
        agents: ["ghost"]
      })
      expect(yield* Effect.flip(variables.run(ghost))).toMatchObject({
        _tag: "UnknownVariable",
        variable: "ghost"
      })
    }).pipe(Effect.provide(TestLayer))
  )
})
