import { Entity } from "@effect/cluster"
import { Rpc } from "@effect/rpc"
import { NodeRuntime } from "@effect/platform-node"
import { FoundationNode } from "@foundation/node"
import { Effect, Layer, Schema } from "effect"

const Counter = Entity.make("Counter", [Rpc.make("Increment", { success: Schema.Number })])

const CounterLive = Counter.toLayer(
  Effect.gen(function* () {
    let count = 0
    return { Increment: () => Effect.sync(() => ++count) }
  })
)

const Main = Layer.effectDiscard(
  Effect.gen(function* () {
    const counter = yield* Counter.client
    yield* Effect.log("count", yield* counter("visits").Increment())
  })
)

const Node = FoundationNode.layer({ id: "node-1", port: 7001, runnerPort: 7101 })
NodeRuntime.runMain(Layer.launch(Main.pipe(Layer.provide(CounterLive), Layer.provideMerge(Node))))
