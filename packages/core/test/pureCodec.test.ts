import { describe, expect, it } from "@effect/vitest"
import * as Arbitrary from "effect/Arbitrary"
import * as Either from "effect/Either"
import * as FastCheck from "effect/FastCheck"
import * as Schema from "effect/Schema"
import * as PureCodec from "../src/internal/pureCodec.js"

const NodeId = Schema.NonEmptyTrimmedString.pipe(Schema.brand("NodeId"))

const pure = {
  "a struct of refined and branded fields": Schema.Struct({
    from: NodeId,
    sentAt: Schema.Number,
    count: Schema.Int.pipe(Schema.between(0, 10)),
    ok: Schema.Boolean
  }),
  "nested structs, literals, unknown and bigint": Schema.Struct({
    kind: Schema.Literal("a"),
    inner: Schema.Struct({ n: Schema.Number, tag: Schema.Literal(1), any: Schema.Unknown }),
    big: Schema.BigIntFromSelf
  }),
  "a filtered struct": Schema.Struct({ low: Schema.Number, high: Schema.Number }).pipe(
    Schema.filter((range) => range.low <= range.high)
  ),
  "a refined string": Schema.String.pipe(Schema.minLength(2))
} as const

/** Valid values, near misses (each valid value with one field broken or removed) and junk. */
const inputs = (schema: Schema.Schema<any, any>) =>
  FastCheck.oneof(
    Arbitrary.make(schema),
    FastCheck.tuple(Arbitrary.make(schema), FastCheck.string(), FastCheck.anything()).map(
      ([value, key, junk]) => {
        if (typeof value !== "object" || value === null) return junk
        const keys = Object.keys(value)
        const broken: Record<string, unknown> = { ...value, extra: junk }
        const target = keys.length === 0 ? key : keys[key.length % keys.length]!
        if (key.length % 2 === 0) delete broken[target]
        else broken[target] = junk
        return broken
      }
    ),
    FastCheck.anything()
  )

describe("PureCodec", () => {
  for (const [name, schema] of Object.entries(pure)) {
    it(`${name}: same result as the Schema, decoding and encoding, or invalid where it fails`, () => {
      const codec = PureCodec.compile(schema.ast)
      expect(codec).toBeDefined()
      const decode = Schema.decodeUnknownEither(schema as Schema.Schema<unknown, unknown>)
      const encode = Schema.encodeUnknownEither(schema as Schema.Schema<unknown, unknown>)
      let valid = 0
      let rejected = 0
      FastCheck.assert(
        FastCheck.property(inputs(schema as Schema.Schema<any, any>), (input) => {
          const fast = codec!(input)
          for (const slow of [decode(input), encode(input)]) {
            if (Either.isRight(slow)) expect(fast).toStrictEqual(slow.right)
            else expect(fast).toBe(PureCodec.invalid)
          }
          if (fast === PureCodec.invalid) rejected++
          else valid++
        }),
        { numRuns: 500, seed: 42 }
      )
      expect(valid).toBeGreaterThan(50)
      expect(rejected).toBeGreaterThan(50)
    })
  }

  it("declines what is not pure: transformations, classes, optional keys, index signatures, unions, parse options", () => {
    class Point extends Schema.Class<Point>("Point")({ x: Schema.Number }) {}
    const declined = [
      Schema.Date,
      Point,
      Schema.NumberFromString,
      Schema.Struct({ a: Schema.optional(Schema.Number) }),
      Schema.Record({ key: Schema.String, value: Schema.Number }),
      Schema.Struct({ a: Schema.Union(Schema.String, Schema.Number) }),
      Schema.Struct({ a: Schema.Number }).annotations({ parseOptions: { onExcessProperty: "error" } }),
      Schema.Struct({})
    ]
    for (const schema of declined) expect(PureCodec.compile(schema.ast)).toBeUndefined()
  })
})
