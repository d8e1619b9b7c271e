import * as Option from "effect/Option"
import * as AST from "effect/SchemaAST"

/** What a pure codec returns for a value its Schema rejects. */
export const invalid: unique symbol = Symbol.for("@foundation/core/PureCodec/invalid") as never

/**
 * The encoder, which is also the decoder, of a "pure" Schema: one whose encoded and decoded forms
 * are the same, with no transformation anywhere, made of structs (required string keys, no index
 * signatures), strings, numbers, booleans, bigints, literals, `Unknown` / `Any` and refinements of
 * those (`Schema.NonEmptyTrimmedString`, `Schema.Int`, brands, ...). It returns what
 * `Schema.decodeUnknownEither` / `Schema.encodeUnknownEither` return on success (a struct is a new
 * object with the declared keys, in order, excess keys dropped), or `invalid` where they fail: the
 * caller then runs the Schema for its error. `undefined` when the Schema is not pure, or has an
 * annotation that changes parsing (`parseOptions`), or needs more than the default options.
 *
 * Why: the generic parser builds an `Either`, closures and an output per field, several kilobytes
 * per call for a small payload; this checks the same conditions (the refinements' own filters,
 * with the default parse options) and builds only the output.
 */
export const compile = (ast: AST.AST): ((input: unknown) => unknown) | undefined => {
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
      const from = compile(ast.from)
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
      const fields: Array<readonly [string, (input: unknown) => unknown]> = []
      for (const ps of ast.propertySignatures) {
        if (ps.isOptional || typeof ps.name !== "string") return undefined
        const field = compile(ps.type)
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
    default:
      return undefined
  }
}
