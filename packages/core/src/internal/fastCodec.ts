import * as Either from "effect/Either"
import * as Option from "effect/Option"
import type { ParseError } from "effect/ParseResult"
import * as Schema from "effect/Schema"
import * as AST from "effect/SchemaAST"

/** What a fast codec returns for a value it does not take: the caller then runs the Schema. */
export const invalid: unique symbol = Symbol.for("@foundation/core/FastCodec/invalid") as never

type Codec = (input: unknown) => unknown

/** The value of a parse step that succeeded synchronously, or `invalid`. */
const settled = (result: unknown): unknown =>
  Either.isEither(result) && Either.isRight(result) ? result.right : invalid

const compile = (ast: AST.AST, isDecoding: boolean): Codec | undefined => {
  if (Option.isSome(AST.getParseOptionsAnnotation(ast))) return undefined
  switch (ast._tag) {
    case "StringKeyword":
      return (input) => (typeof input === "string" ? input : invalid)
    case "NumberKeyword":
      return (input) => (typeof input === "number" ? input : invalid)
    case "BooleanKeyword":
      return (input) => (typeof input === "boolean" ? input : invalid)
    case "BigIntKeyword":
      return (input) => (typeof input === "bigint" ? input : invalid)
    case "UnknownKeyword":
    case "AnyKeyword":
      return (input) => input
    case "Literal": {
      const literal = ast.literal
      return (input) => (input === literal ? input : invalid)
    }
    case "Refinement": {
      if (!isDecoding) {
        // the parser's order: check the whole type side (filters included), then encode `from`
        const typeSide = compile(AST.typeAST(ast), true)
        const encodeFrom = compile(withoutRefinements(ast.from), false)
        if (typeSide === undefined || encodeFrom === undefined) return undefined
        return (input) => {
          const value = typeSide(input)
          return value === invalid ? invalid : encodeFrom(value)
        }
      }
      const from = compile(ast.from, true)
      if (from === undefined) return undefined
      const filter = ast.filter
      return (input) => {
        const value = from(input)
        if (value === invalid) return invalid
        return Option.isNone(filter(value, AST.defaultParseOption, ast)) ? value : invalid
      }
    }
    case "TypeLiteral": {
      if (ast.indexSignatures.length > 0 || ast.propertySignatures.length === 0) return undefined
      const fields: Array<readonly [string, Codec]> = []
      for (const ps of ast.propertySignatures) {
        if (ps.isOptional || typeof ps.name !== "string") return undefined
        const field = compile(ps.type, isDecoding)
        if (field === undefined) return undefined
        fields.push([ps.name, field])
      }
      return (input) => {
        if (typeof input !== "object" || input === null || Array.isArray(input)) return invalid
        const output: Record<string, unknown> = {}
        for (const [name, field] of fields) {
          const value = field((input as Record<string, unknown>)[name])
          if (value === invalid) return invalid
          output[name] = value
        }
        return output
      }
    }
    case "Declaration": {
      // a class's instance check, `Schema.DateFromSelf`, ...: the Schema's own function
      const parse = isDecoding
        ? ast.decodeUnknown(...ast.typeParameters)
        : ast.encodeUnknown(...ast.typeParameters)
      return (input) => settled(parse(input, AST.defaultParseOption, ast))
    }
    case "Transformation": {
      if (ast.transformation._tag !== "FinalTransformation") return undefined
      // the parser's order: the input side, the transformation, the output side
      const first = isDecoding ? compile(ast.from, true) : compile(ast.to, false)
      const last = isDecoding ? compile(ast.to, true) : compile(ast.from, false)
      if (first === undefined || last === undefined) return undefined
      const transform = isDecoding ? ast.transformation.decode : ast.transformation.encode
      return (input) => {
        const value = first(input)
        if (value === invalid) return invalid
        const transformed = settled(transform(value, AST.defaultParseOption, ast, input))
        return transformed === invalid ? invalid : last(transformed)
      }
    }
    default:
      return undefined
  }
}

const withoutRefinements = (ast: AST.AST): AST.AST =>
  ast._tag === "Refinement" ? withoutRefinements(ast.from) : ast

/**
 * Compiled versions of `Schema.decodeUnknownEither(schema)` and `Schema.encodeUnknownEither(schema)`
 * for the common shapes: structs (required string keys, no index signatures) of strings, numbers,
 * booleans, bigints, literals, `Unknown`, refinements of those (`Schema.NonEmptyTrimmedString`,
 * `Schema.Int`, brands, filters), classes (`Schema.Class`) and other plain transformations and
 * declarations. They take the parser's steps in its order, calling the Schema's own filters,
 * transformations and declarations with the default parse options, and return what it returns on
 * success; where it would fail, or where a step does not settle synchronously, they return
 * `invalid` and the caller runs the Schema itself (for its error). `undefined` when the Schema has
 * another shape (unions, optional keys, records, property signature transformations, ...) or a
 * `parseOptions` annotation.
 *
 * Why: the generic parser builds an `Either`, closures and an output per node, several kilobytes
 * per call of a small RPC; this builds only the output.
 */
export const decoder = (ast: AST.AST): Codec | undefined => compile(ast, true)

/** The encoding half of `decoder`. */
export const encoder = (ast: AST.AST): Codec | undefined => compile(ast, false)

/** `parse`, through the compiled `fast` first if there is one: the Schema runs only for its errors. */
const fastFirst =
  <A>(fast: Codec | undefined, parse: (input: unknown) => Either.Either<A, ParseError>) =>
  (input: unknown): Either.Either<A, ParseError> => {
    const value = fast === undefined ? invalid : fast(input)
    return value === invalid ? parse(input) : Either.right(value as A)
  }

/** `Schema.decodeUnknownEither(schema)` (default options), through `decoder` first. */
export const decodeUnknownEither = <A, I, R>(schema: Schema.Schema<A, I, R>) =>
  fastFirst<A>(decoder(schema.ast), Schema.decodeUnknownEither(schema as Schema.Schema<A, I, never>))

/** `Schema.encodeUnknownEither(schema)` (default options), through `encoder` first. */
export const encodeUnknownEither = <A, I, R>(schema: Schema.Schema<A, I, R>) =>
  fastFirst<I>(encoder(schema.ast), Schema.encodeUnknownEither(schema as Schema.Schema<A, I, never>))
