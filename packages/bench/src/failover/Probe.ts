/**
 * The probe entity of the failover benchmark: it answers with the node that serves it.
 */
import * as Entity from "@effect/cluster/Entity"
import * as Rpc from "@effect/rpc/Rpc"
import * as Effect from "effect/Effect"
import * as Schema from "effect/Schema"

export const Probe = Entity.make("BenchProbe", [
  Rpc.make("Where", { success: Schema.Struct({ node: Schema.String, runner: Schema.String }) })
])

/** The probe's handlers, on a node whose id is `node`. */
export const layerProbe = (node: string) =>
  Probe.toLayer(
    Effect.gen(function* () {
      const runner = yield* Entity.CurrentRunnerAddress
      return Probe.of({
        Where: () => Effect.succeed({ node, runner: `${runner.host}:${runner.port}` })
      })
    })
  )
