/**
 * Foundation patches `@effect/rpc`'s `RpcClient` at install (`patches/@effect+rpc+0.76.2.patch`): the
 * engine called `rpc.payloadSchema.make(payload)` on every call, which compiles a new parser per call
 * when the payload holds a transformation (the cluster's runner RPC always does). These tests fail on
 * an unpatched `RpcClient` and check that `make`'s checks and defaults are kept.
 */
import * as Rpc from "@effect/rpc/Rpc"
import * as RpcGroup from "@effect/rpc/RpcGroup"
import * as RpcTest from "@effect/rpc/RpcTest"
import { describe, expect, it } from "@effect/vitest"
import * as Cause from "effect/Cause"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import { globalValue } from "effect/GlobalValue"
import * as ParseResult from "effect/ParseResult"
import * as Schema from "effect/Schema"

class Point extends Schema.Class<Point>("Point")({ x: Schema.Number.pipe(Schema.int()) }) {}

class Calls extends RpcGroup.make(
  Rpc.make("Stamp", {
    payload: { at: Schema.DateFromString, n: Schema.NumberFromString },
    success: Schema.Number
  }),
  Rpc.make("WithDefault", {
    payload: Schema.Struct({
      n: Schema.Number,
      step: Schema.optionalWith(Schema.Number, { default: () => 7 })
    }),
    success: Schema.Number
  }),
  Rpc.make("Move", { payload: Point, success: Schema.Number })
) {}

const handlers = Calls.toLayer({
  Stamp: ({ n }) => Effect.succeed(n),
  WithDefault: ({ n, step }) => Effect.succeed(n + step),
  Move: (point) => Effect.succeed(point instanceof Point ? point.x : -1)
})

/** Counts the parsers that `effect/ParseResult` compiles (each compilation stores one in this memo). */
const countCompilations = Effect.acquireRelease(
  Effect.sync(() => {
    const memo = globalValue(
      Symbol.for("effect/ParseResult/decodeMemoMap"),
      () => new WeakMap<object, unknown>()
    )
    const counter = { compiled: 0, memo }
    const set = WeakMap.prototype.set
    Object.defineProperty(memo, "set", {
      configurable: true,
      value: (key: object, value: unknown) => {
        counter.compiled++
        return set.call(memo, key, value)
      }
    })
    return counter
  }),
  ({ memo }) => Effect.sync(() => delete (memo as { set?: unknown }).set)
)

describe("patched RpcClient payload validation", () => {
  it.scoped("builds the validator of a payload with transformations once, not per call", () =>
    Effect.gen(function* () {
      const client = yield* RpcTest.makeClient(Calls)
      const payload = { at: new Date(0), n: 1 }
      yield* client.Stamp(payload)
      const counter = yield* countCompilations
      for (let i = 0; i < 20; i++) yield* client.Stamp(payload)
      expect(counter.compiled).toBe(0)
    }).pipe(Effect.provide(handlers))
  )

  it.scoped("still rejects invalid payloads, applies defaults and constructs classes", () =>
    Effect.gen(function* () {
      const client = yield* RpcTest.makeClient(Calls)
      expect(yield* client.WithDefault({ n: 1 })).toBe(8)
      expect(yield* client.Move(new Point({ x: 3 }))).toBe(3)
      const invalid = yield* Effect.exit(client.Stamp({ at: new Date(0), n: "one" as unknown as number }))
      const fractional = yield* Effect.exit(client.Move({ x: 1.5 } as Point))
      for (const exit of [invalid, fractional]) {
        expect(Exit.isFailure(exit) && ParseResult.isParseError(Cause.squash(exit.cause))).toBe(true)
      }
    }).pipe(Effect.provide(handlers))
  )
})
