/**
 * Entity calls between nodes go over `RunnerRpc` (the runner hop on Foundation's fast node RPC, the
 * default of `Foundation.layerNode`): typed errors, streamed replies and interruption reach the
 * other node's entity and come back as they do over the engine's own runner RPC. Run on the
 * in-memory TestCluster network (`runnerRpc.test.ts`) and over real sockets
 * (`packages/node/test/runnerRpc.test.ts`).
 */
import type * as Sharding from "@effect/cluster/Sharding"
import * as Entity from "@effect/cluster/Entity"
import * as Rpc from "@effect/rpc/Rpc"
import * as Node from "@foundation/core/Node"
import { expect } from "@effect/vitest"
import * as Chunk from "effect/Chunk"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import * as Schema from "effect/Schema"
import * as Stream from "effect/Stream"

class Refused extends Schema.TaggedError<Refused>()("Refused", { reason: Schema.String }) {}

export const Remote = Entity.make("Remote", [
  Rpc.make("Where", { success: Schema.String }),
  Rpc.make("Refuse", { payload: { reason: Schema.String }, error: Refused }),
  Rpc.make("Count", { payload: { to: Schema.Number }, success: Schema.Number, stream: true }),
  Rpc.make("Hang")
])

/** How many `Hang` calls this node's entities started, and how many were interrupted. */
export class Seen extends Context.Tag("test/RunnerRpc/Seen")<
  Seen,
  { started: number; interrupted: number }
>() {}

/** Hosts `Remote` on a node. */
export const RemoteLive = Remote.toLayer(
  Effect.gen(function* () {
    const node = yield* Node.Node
    const seen = yield* Seen
    return Remote.of({
      Where: () => Effect.succeed(node.self.id),
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

/** Runs an effect with a node's services. */
export type On = <A, E>(
  node: "node-1" | "node-2",
  effect: Effect.Effect<A, E, Sharding.Sharding | Seen>
) => Effect.Effect<A, unknown>

/** Polls `check` every 50 ms until it holds, for at most 10 s. */
const eventually = (check: Effect.Effect<boolean, unknown>) =>
  Effect.gen(function* () {
    for (let attempt = 0; attempt < 200; attempt++) {
      if (yield* check) return
      yield* Effect.sleep("50 millis")
    }
    return yield* Effect.dieMessage("the condition did not hold within 10 s")
  })

/**
 * From node-1, calls an entity that lives on node-2: a typed error, a 40-element stream, and a call
 * interrupted while its handler runs.
 */
export const entityCallsAcrossNodes = (on: On) =>
  Effect.gen(function* () {
    const id = yield* on(
      "node-1",
      Effect.gen(function* () {
        const client = yield* Remote.client
        for (let index = 0; index < 100; index++) {
          if ((yield* client(`r-${index}`).Where()) === "node-2") return `r-${index}`
        }
        return yield* Effect.dieMessage("no entity id among r-0..r-99 lives on node-2")
      })
    )
    const remote = <A, E>(
      f: (client: ReturnType<Effect.Effect.Success<typeof Remote.client>>) => Effect.Effect<A, E, Seen>
    ) =>
      on(
        "node-1",
        Effect.flatMap(Remote.client, (client) => f(client(id)))
      )

    const refused = yield* remote((client) => Effect.flip(client.Refuse({ reason: "not today" })))
    expect(refused).toBeInstanceOf(Refused)
    expect(refused).toMatchObject({ _tag: "Refused", reason: "not today" })

    const counted = yield* remote((client) => Stream.runCollect(client.Count({ to: 40 })))
    expect(Chunk.toReadonlyArray(counted)).toEqual(Array.from({ length: 40 }, (_, i) => i + 1))

    const hanging = yield* Effect.fork(remote((client) => client.Hang()))
    yield* eventually(
      on(
        "node-2",
        Effect.map(Seen, (seen) => seen.started === 1)
      )
    )
    yield* Fiber.interrupt(hanging)
    yield* eventually(
      on(
        "node-2",
        Effect.map(Seen, (seen) => seen.interrupted === 1)
      )
    )
  })
