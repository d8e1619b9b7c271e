/**
 * One node process of the mabeam benchmark: a Foundation node on Postgres (`FoundationNode.layer`)
 * with `Mabeam.layer({ modules: [BenchAgent] })`. It prints `FOUNDATION_BENCH_READY` when it serves,
 * then takes one JSON command per stdin line (see `protocol.ts`) and answers each with one stdout
 * line `BENCH_REPLY {"id", "ok", "result" | "error"}`. It exits when stdin closes.
 */
import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import * as Node from "@foundation/core/Node"
import * as AgentCalls from "@foundation/mabeam/AgentCalls"
import * as AgentRegistry from "@foundation/mabeam/AgentRegistry"
import * as Auction from "@foundation/mabeam/Auction"
import * as Consensus from "@foundation/mabeam/Consensus"
import * as Mabeam from "@foundation/mabeam/Mabeam"
import * as Cause from "effect/Cause"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Logger from "effect/Logger"
import * as LogLevel from "effect/LogLevel"
import { performance } from "node:perf_hooks"
import { BenchAgent, type Command, english, Request, valuationOf } from "./protocol.js"
import * as Commands from "../shared/commands.js"

const log = (line: string) => Effect.sync(() => console.error(line))

/** Runs `run` `runs` times, one after the other; each run's wall time and what `check` says of it. */
const timed = <A, E, R>(
  runs: number,
  run: Effect.Effect<A, E, R>,
  check: (result: A) => string | undefined
) =>
  Effect.gen(function* () {
    const latencies: Array<number> = []
    const problems: Array<string> = []
    for (let i = 0; i < runs; i++) {
      const startedAt = performance.now()
      const exit = yield* Effect.exit(run)
      latencies.push(performance.now() - startedAt)
      if (exit._tag === "Failure") problems.push(Cause.pretty(exit.cause).split("\n")[0]!)
      else {
        const problem = check(exit.value)
        if (problem) problems.push(problem)
      }
    }
    return { latencies, problems: problems.slice(0, 5), failed: problems.length }
  })

const program = Effect.gen(function* () {
  const config = yield* Commands.clusterNodeConfig
  const scope = yield* Effect.scope
  const context = yield* Layer.buildWithScope(
    Layer.provideMerge(Mabeam.layer({ modules: [BenchAgent] }), Commands.clusterNodeLayer(config)),
    scope
  )
  const node = yield* Effect.provide(Node.Node, context)
  const registry = yield* Effect.provide(AgentRegistry.AgentRegistry, context)
  const calls = yield* Effect.provide(AgentCalls.AgentCalls, context)
  let agents: Array<string> = []

  const handle = (command: Command): Effect.Effect<unknown, unknown> => {
    switch (command._tag) {
      case "AwaitMembers":
        return Effect.gen(function* () {
          for (let attempt = 0; attempt < 1200; attempt++) {
            const up = (yield* node.members).filter((m) => m.status === "up").map((m) => m.info.id as string)
            if (command.nodes.every((id) => up.includes(id))) return { up }
            yield* Effect.sleep(50)
          }
          return yield* Effect.fail(new Error(`not every one of ${command.nodes} came up`))
        })
      case "Register":
        return Effect.gen(function* () {
          agents = Array.from({ length: command.count }, (_, i) => `bench-${i}`)
          const startedAt = performance.now()
          yield* Effect.forEach(
            agents,
            (id, index) =>
              registry.register({
                id,
                module: BenchAgent,
                args: { valuation: valuationOf(index) },
                capabilities: ["bidding", "voting"]
              }),
            { concurrency: 100, discard: true }
          )
          const registeredMs = performance.now() - startedAt
          yield* Effect.forEach(agents, (id) => calls.start(id, { timeout: "60 seconds" }), {
            concurrency: 100,
            discard: true
          })
          const startedMs = performance.now() - startedAt - registeredMs
          const perNode: Record<string, number> = {}
          for (const info of yield* registry.list)
            perNode[info.node ?? "none"] = (perNode[info.node ?? "none"] ?? 0) + 1
          return { registeredMs, startedMs, perNode }
        })
      case "Sealed": {
        const valuations = agents.map((_, index) => valuationOf(index)).sort((a, b) => b - a)
        return timed(
          command.runs,
          Auction.sealedBid({ agents, resources: { gpus: 1 }, paymentRule: "second-price" }).pipe(
            Effect.provide(context)
          ),
          (result) => {
            const silent = result.bids.filter((record) => record.outcome._tag !== "Valid").length
            if (silent > 0) return `${silent} bids did not count`
            if (
              valuationOf(agents.indexOf(result.winner)) !== valuations[0] ||
              result.payment !== valuations[1]
            )
              return `unexpected winner ${result.winner} paying ${result.payment}`
            return undefined
          }
        )
      }
      case "English": {
        const valuations = agents.map((_, index) => valuationOf(index)).sort((a, b) => b - a)
        return timed(
          command.runs,
          Auction.english({ agents, ...english, maxRounds: 1000 }).pipe(Effect.provide(context)),
          (result) =>
            result.payment < valuations[1] - english.increment || result.payment > valuations[0]
              ? `unexpected payment ${result.payment} (valuations ${valuations[0]}, ${valuations[1]})`
              : undefined
        )
      }
      case "Consensus": {
        const yes = agents.filter((_, index) => valuationOf(index) >= 500).length
        return timed(
          command.runs,
          Consensus.run({ agents, proposal: { scale: "up" } }).pipe(Effect.provide(context)),
          (result) =>
            result.decision !== (yes * 2 > agents.length ? "yes" : "no") ||
            result.votes.length !== agents.length
              ? `unexpected decision ${result.decision} with ${result.votes.length} votes`
              : undefined
        )
      }
    }
  }

  yield* log(`[${config.id}] serving`)
  yield* Commands.serve(Request, handle)
})

NodeRuntime.runMain(Effect.scoped(program).pipe(Logger.withMinimumLogLevel(LogLevel.Warning)))
