/**
 * The sample application the `foundation` CLI runs: an entity that says where it lives and a
 * singleton that says where it runs. Both are plain `@effect/cluster` code:
 * ```ts
 * Entity.make("Greeter", [Rpc.make("Greet", ...), Rpc.make("Where", ...)]).toLayer(...)
 * Singleton.make("foundation-sample-singleton", run)
 * ```
 */
import * as Entity from "@effect/cluster/Entity"
import type { Sharding } from "@effect/cluster/Sharding"
import * as Singleton from "@effect/cluster/Singleton"
import * as Rpc from "@effect/rpc/Rpc"
import { Node, type NodeInfo } from "@foundation/core/Node"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Schema from "effect/Schema"

/** Where an entity instance runs: its id, the Foundation node and the engine runner hosting it. */
export class Placement extends Schema.Class<Placement>("@foundation/node/Sample/Placement")({
  entityId: Schema.String,
  node: Schema.String,
  runner: Schema.String
}) {}

/**
 * The `Greeter` entity:
 * - `Greet({ name })`: a greeting naming the node that answered;
 * - `Where()`: its `Placement` (the handler reads `Entity.CurrentAddress` and `Entity.CurrentRunnerAddress`).
 */
export const Greeter = Entity.make("Greeter", [
  Rpc.make("Greet", { payload: { name: Schema.String }, success: Schema.String }),
  Rpc.make("Where", { success: Placement })
])

/** The `Greeter` handlers (`Greeter.toLayer`). */
export const layerGreeter = Greeter.toLayer(
  Effect.gen(function* () {
    const address = yield* Entity.CurrentAddress
    const runner = yield* Entity.CurrentRunnerAddress
    const node = yield* Node
    const placement = new Placement({
      entityId: address.entityId,
      node: node.self.id,
      runner: `${runner.host}:${runner.port}`
    })
    return {
      Greet: ({ payload }) => Effect.succeed(`Hello, ${payload.name}, from ${node.self.id}`),
      Where: () => Effect.succeed(placement)
    }
  })
)

/** The name of the sample singleton. */
export const singletonName = "foundation-sample-singleton"

/**
 * What the sample singleton reports: it started on a node, or stopped there (its shard moved, or
 * the node is shutting down).
 */
export interface SingletonReport {
  readonly kind: "started" | "stopped"
  readonly node: NodeInfo
  readonly at: number
}

/**
 * The sample singleton (`Singleton.make(singletonName, ...)`): reports where it starts and stops,
 * then waits. By default the reports are logged.
 */
export const layerSingleton = (
  report: (report: SingletonReport) => Effect.Effect<void> = (report) =>
    Effect.logInfo(`singleton ${report.kind} on ${report.node.id}`)
): Layer.Layer<never, never, Node | Sharding> =>
  Singleton.make(
    singletonName,
    Effect.gen(function* () {
      const node = yield* Node
      yield* Effect.addFinalizer(() => report({ kind: "stopped", node: node.self, at: Date.now() }))
      yield* report({ kind: "started", node: node.self, at: Date.now() })
      return yield* Effect.never
    })
  )

/** The whole sample application: `layerGreeter` and `layerSingleton(report)`. */
export const layer = (report?: (report: SingletonReport) => Effect.Effect<void>) =>
  Layer.merge(layerGreeter, layerSingleton(report))
