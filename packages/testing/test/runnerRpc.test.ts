/**
 * Entity calls between nodes go over `RunnerRpc` (the runner hop on Foundation's fast node RPC, the
 * default of `Foundation.layerNode`): typed errors, streamed replies and interruption reach the
 * other node's entity and come back as they do over the engine's own runner RPC. Entity clients
 * open no span per call unless the entity sets `ClusterSchema.ClientTracingEnabled` itself.
 */
import * as ClusterSchema from "@effect/cluster/ClusterSchema"
import * as Entity from "@effect/cluster/Entity"
import * as Rpc from "@effect/rpc/Rpc"
import { describe, expect, it } from "@effect/vitest"
import * as Chunk from "effect/Chunk"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import * as Schema from "effect/Schema"
import * as Stream from "effect/Stream"
import * as Tracer from "effect/Tracer"
import { TestCluster } from "@foundation/testing"

class Refused extends Schema.TaggedError<Refused>()("Refused", { reason: Schema.String }) {}

const Remote = Entity.make("Remote", [
  Rpc.make("Where", { success: Schema.String }),
  Rpc.make("Refuse", { payload: { reason: Schema.String }, error: Refused }),
  Rpc.make("Count", { payload: { to: Schema.Number }, success: Schema.Number, stream: true }),
  Rpc.make("Hang")
])

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

class Seen extends Context.Tag("test/RunnerRpc/Seen")<Seen, { started: number; interrupted: number }>() {}

const RemoteLive = Remote.toLayer(
  Effect.gen(function* () {
    const address = yield* Entity.CurrentRunnerAddress
    const seen = yield* Seen
    return Remote.of({
      Where: () => Effect.succeed(address.host),
      Refuse: ({ payload }) => Effect.fail(new Refused({ reason: payload.reason })),
      Count: ({ payload }) => Stream.range(1, payload.to),
      Hang: () =>
        Effect.sync(() => seen.started++).pipe(
          Effect.zipRight(Effect.never),
          Effect.onInterrupt(() => Effect.sync(() => seen.interrupted++))
        )
    })
  })
).pipe(Layer.provideMerge(Layer.sync(Seen, () => ({ started: 0, interrupted: 0 }))))

describe("entity calls between nodes over RunnerRpc", () => {
  it.scopedLive("carry typed errors, streamed replies and interruption to the entity's node and back", () =>
    Effect.gen(function* () {
      const cluster = yield* TestCluster.make({ nodes: 2, layer: RemoteLive })
      yield* cluster.awaitConverged()
      const id = yield* cluster.on(
        "node-1",
        Effect.gen(function* () {
          const client = yield* Remote.client
          for (let index = 0; index < 100; index++) {
            if ((yield* client(`r-${index}`).Where()) === "node-2") return `r-${index}`
          }
          return yield* Effect.dieMessage("no entity id among r-0..r-99 lives on node-2")
        })
      )
      const remote = <A, E, R>(
        f: (client: ReturnType<Effect.Effect.Success<typeof Remote.client>>) => Effect.Effect<A, E, R>
      ) =>
        cluster.on(
          "node-1",
          Effect.flatMap(Remote.client, (client) => f(client(id)))
        )

      const refused = yield* remote((client) => Effect.flip(client.Refuse({ reason: "not today" })))
      expect(refused).toBeInstanceOf(Refused)
      expect(refused).toMatchObject({ _tag: "Refused", reason: "not today" })

      const counted = yield* remote((client) => Stream.runCollect(client.Count({ to: 40 })))
      expect(Chunk.toReadonlyArray(counted)).toEqual(Array.from({ length: 40 }, (_, i) => i + 1))

      const hanging = yield* Effect.fork(remote((client) => client.Hang()))
      yield* cluster.eventually(
        cluster.on(
          "node-2",
          Effect.filterOrFail(Seen, (seen) => seen.started === 1)
        )
      )
      yield* Fiber.interrupt(hanging)
      yield* cluster.eventually(
        cluster.on(
          "node-2",
          Effect.filterOrFail(Seen, (seen) => seen.interrupted === 1)
        )
      )
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
