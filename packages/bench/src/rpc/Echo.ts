/**
 * The call every path of the rpc benchmark makes: a small struct in, a small struct out. The same
 * `Rpc` is served as an `@effect/cluster` entity (`EchoEntity`) and as a plain `@effect/rpc` group
 * (`EchoRpcs`).
 */
import * as Entity from "@effect/cluster/Entity"
import * as Rpc from "@effect/rpc/Rpc"
import * as RpcGroup from "@effect/rpc/RpcGroup"
import * as Effect from "effect/Effect"
import * as Schema from "effect/Schema"

export const Echo = Rpc.make("Echo", {
  payload: { seq: Schema.Number, text: Schema.String },
  success: Schema.Struct({ seq: Schema.Number, node: Schema.String })
})

/** The entity of the `entity` and `engine_default` paths. */
export const EchoEntity = Entity.make("BenchEcho", [Echo])

/** The group of the plain `@effect/rpc` path. */
export class EchoRpcs extends RpcGroup.make(Echo) {}

/** The payload every caller sends. */
export const payload = (seq: number) => ({ seq, text: "the quick brown fox" })

/** Counts the calls a process served (read by the profile mode to get CPU per call on the callee). */
export const served = { count: 0 }

/** The entity's handler, on the node `node`. */
export const layerEntity = (node: string) =>
  EchoEntity.toLayer(
    EchoEntity.of({
      Echo: ({ payload }) =>
        Effect.sync(() => {
          served.count++
          return { seq: payload.seq, node }
        })
    })
  )

/** The plain `@effect/rpc` handlers, on the node `node`. */
export const layerRpcHandlers = (node: string) =>
  EchoRpcs.toLayer(
    EchoRpcs.of({
      Echo: ({ seq }) =>
        Effect.sync(() => {
          served.count++
          return { seq, node }
        })
    })
  )
