import { describe, expect, it } from "@effect/vitest"
import * as Arbitrary from "effect/Arbitrary"
import * as Either from "effect/Either"
import * as FastCheck from "effect/FastCheck"
import * as Schema from "effect/Schema"
import * as FastCodec from "../src/internal/fastCodec.js"

const NodeId = Schema.NonEmptyTrimmedString.pipe(Schema.brand("NodeId"))

class Address extends Schema.Class<Address>("Address")({
  host: Schema.NonEmptyString,
  port: Schema.Int.pipe(Schema.between(0, 65535))
}) {}

class Pong extends Schema.Class<Pong>("Pong")({
  node: NodeId,
  sentAt: Schema.Number,
  address: Address,
  at: Schema.Date
}) {}

const compiled = {
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
  "a refined string": Schema.String.pipe(Schema.minLength(2)),
  "a class with a class field and a date": Pong,
  "a refined transformation": Schema.NumberFromString.pipe(Schema.filter((n) => n > 0)),
  "a struct holding a class and transformations": Schema.Struct({
    address: Address,
    port: Schema.NumberFromString,
    at: Schema.DateFromNumber
  })
} as const

/** Valid values, near misses (a valid value with one field broken or removed, or an extra one) and junk. */
const near = (valid: FastCheck.Arbitrary<unknown>) =>
  FastCheck.oneof(
    valid,
    FastCheck.tuple(valid, FastCheck.string(), FastCheck.anything()).map(([value, key, junk]) => {
      if (typeof value !== "object" || value === null) return junk
      const keys = Object.keys(value)
      const broken: Record<string, unknown> = { ...value, extra: junk }
      const target = keys.length === 0 ? key : keys[key.length % keys.length]!
      if (key.length % 2 === 0) delete broken[target]
      else broken[target] = junk
      return broken
    }),
    FastCheck.anything()
  )

const sameAsSchema = (
  codec: ((input: unknown) => unknown) | undefined,
  parse: (input: unknown) => Either.Either<unknown, unknown>,
  inputs: FastCheck.Arbitrary<unknown>
) => {
  expect(codec).toBeDefined()
  let taken = 0
  let declined = 0
  FastCheck.assert(
    FastCheck.property(inputs, (input) => {
      const fast = codec!(input)
      const slow = parse(input)
      if (fast === FastCodec.invalid) {
        declined++
        expect(Either.isLeft(slow)).toBe(true)
      } else {
        taken++
        expect(Either.isRight(slow)).toBe(true)
        expect(fast).toStrictEqual(Either.getOrThrow(slow))
      }
    }),
    { numRuns: 400, seed: 42 }
  )
  expect(taken).toBeGreaterThan(40)
  expect(declined).toBeGreaterThan(40)
}

describe("FastCodec", () => {
  for (const [name, schema] of Object.entries(compiled)) {
    const any = schema as unknown as Schema.Schema<unknown, unknown>
    it(`${name}: decodes as the Schema does, or declines where it fails`, () =>
      sameAsSchema(
        FastCodec.decoder(any.ast),
        Schema.decodeUnknownEither(any),
        near(Arbitrary.make(any).map((value) => Schema.encodeSync(any)(value)))
      ))
    it(`${name}: encodes as the Schema does, or declines where it fails`, () =>
      sameAsSchema(FastCodec.encoder(any.ast), Schema.encodeUnknownEither(any), near(Arbitrary.make(any))))
  }

  it("declines unions, optional keys, records, property signature transformations and parse options", () => {
    const declined = [
      Schema.Struct({ a: Schema.optional(Schema.Number) }),
      Schema.Struct({ a: Schema.optionalWith(Schema.Number, { default: () => 1 }) }),
      Schema.Record({ key: Schema.String, value: Schema.Number }),
      Schema.Struct({ a: Schema.Union(Schema.String, Schema.Number) }),
      Schema.Struct({ a: Schema.Number }).annotations({ parseOptions: { onExcessProperty: "error" } }),
      Schema.Struct({})
    ]
    for (const schema of declined) {
      expect(FastCodec.decoder(schema.ast)).toBeUndefined()
      expect(FastCodec.encoder(schema.ast)).toBeUndefined()
    }
  })
})
