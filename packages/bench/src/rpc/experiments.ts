/**
 * What-if switches for the profile mode, applied inside each worker process only
 * (`BENCH_RPC_EXPERIMENTS`, comma-separated). They measure the gain of a lever before anyone
 * builds it; the benchmark's figures are always taken without them.
 * - `tracer-off`: the whole process runs with `Effect.withTracerEnabled(false)`, so every span the
 *   engine makes (RpcClient, RpcServer, Sharding, entity handlers) is a no-op span;
 * - `memo-payload-make`: the engine's own runner RPCs (`Runners.Rpcs`) get a `payloadSchema.make`
 *   whose validator is built once (`ParseResult.validateSync(schema)`) instead of on every call,
 *   which is what a fix of `RpcClient`'s `rpc.payloadSchema.make(payload)` would give.
 */
import * as Runners from "@effect/cluster/Runners"
import * as Effect from "effect/Effect"
import * as ParseResult from "effect/ParseResult"
import type * as Schema from "effect/Schema"

export type Experiment = "tracer-off" | "memo-payload-make"

/** The experiments named in `BENCH_RPC_EXPERIMENTS`. */
export const current = (): ReadonlySet<Experiment> =>
  new Set(
    (process.env.BENCH_RPC_EXPERIMENTS ?? "")
      .split(",")
      .map((name) => name.trim())
      .filter((name): name is Experiment => name === "tracer-off" || name === "memo-payload-make")
  )

/** Applies the process-wide switches and wraps the worker's program in the per-fiber ones. */
export const apply = <A, E, R>(program: Effect.Effect<A, E, R>): Effect.Effect<A, E, R> => {
  const experiments = current()
  if (experiments.has("memo-payload-make")) {
    for (const rpc of Runners.Rpcs.requests.values()) {
      const schema = rpc.payloadSchema as Schema.Schema.Any & { make?: (props: unknown) => unknown }
      if (typeof schema.make !== "function") continue
      const validate = ParseResult.validateSync(schema)
      schema.make = (props: unknown) => validate(props)
    }
  }
  return experiments.has("tracer-off") ? Effect.withTracerEnabled(program, false) : program
}
