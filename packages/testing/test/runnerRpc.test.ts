/**
 * Entity calls between nodes go over `RunnerRpc` (see `runnerRpcContract.ts`), here on the in-memory
 * network. Entity clients open no span per call unless the entity sets
 * `ClusterSchema.ClientTracingEnabled` itself.
 */
import * as ClusterSchema from "@effect/cluster/ClusterSchema"
import * as Entity from "@effect/cluster/Entity"
import * as Rpc from "@effect/rpc/Rpc"
import { describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Schema from "effect/Schema"
import * as Tracer from "effect/Tracer"
import { TestCluster } from "@foundation/testing"
import { entityCallsAcrossNodes, Remote, RemoteLive } from "./runnerRpcContract.js"

/** The same call on an entity that asks for client spans itself. */
const Traced = Entity.make("Traced", [Rpc.make("Where", { success: Schema.String })]).annotate(
  ClusterSchema.ClientTracingEnabled,
  true
)

const TracedLive = Traced.toLayer(
  Effect.map(Entity.CurrentRunnerAddress, (address) =>
    Traced.of({ Where: () => Effect.succeed(address.host) })
  )
)

describe("entity calls between nodes over RunnerRpc", () => {
  it.scopedLive("carry typed errors, streamed replies and interruption to the entity's node and back", () =>
    Effect.gen(function* () {
      const cluster = yield* TestCluster.make({ nodes: 2, layer: RemoteLive })
      yield* cluster.awaitConverged()
      yield* entityCallsAcrossNodes((node, effect) => cluster.on(node, effect))
    })
  )

  it.scopedLive("open no client span per entity call unless the entity asks for one", () =>
    Effect.gen(function* () {
      const cluster = yield* TestCluster.make({ nodes: 1, layer: Layer.merge(RemoteLive, TracedLive) })
      yield* cluster.awaitConverged()
      const base = yield* Effect.tracer
      const spans: Array<string> = []
      const recording = Tracer.make({
        span: (name, ...rest) => {
          spans.push(name)
          return base.span(name, ...rest)
        },
        context: base.context
      })
      yield* cluster.on(
        "node-1",
        Effect.gen(function* () {
          yield* Effect.flatMap(Remote.client, (client) => client("a").Where())
          yield* Effect.flatMap(Traced.client, (client) => client("a").Where())
        }).pipe(Effect.withTracer(recording))
      )
      expect(spans.filter((name) => name.includes(".client."))).toEqual(["Traced.client.Where"])
    })
  )
})
