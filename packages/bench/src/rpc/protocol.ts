/**
 * The commands the rpc benchmark's orchestrator sends to its workers, one JSON line on stdin each,
 * and the prefix of their one-line replies on stdout.
 */
import * as Schema from "effect/Schema"

/** The paths a caller can load. */
export const Path = Schema.Literal(
  "raw",
  "raw_coalesced",
  "effect_rpc",
  "engine_default_entity",
  "entity",
  "node_rpc"
)
export type Path = typeof Path.Type

/** The commands a worker takes on stdin. */
export const Command = Schema.Union(
  /** gets a path ready: connects, and for entities waits for the shards to settle and picks remote ids */
  Schema.TaggedStruct("Prepare", {
    path: Path,
    entities: Schema.Number,
    port: Schema.optional(Schema.Number),
    peer: Schema.optional(Schema.String)
  }),
  /** one closed-loop run on a prepared path */
  Schema.TaggedStruct("Load", {
    path: Path,
    inFlight: Schema.Number,
    millis: Schema.Number,
    latencies: Schema.Boolean,
    port: Schema.optional(Schema.Number)
  }),
  Schema.TaggedStruct("ProfileStart", {
    intervalUs: Schema.Number,
    /** also sample allocations, one sample per this many bytes on average */
    heapSamplingBytes: Schema.optional(Schema.Number)
  }),
  Schema.TaggedStruct("ProfileStop", { file: Schema.String }),
  /** how many calls this worker served so far, and its CPU time so far (µs, `process.cpuUsage`) */
  Schema.TaggedStruct("Served", {})
)
export type Command = typeof Command.Type

/** One command line. */
export const Request = Schema.Struct({ id: Schema.Number, command: Command })
export type Request = typeof Request.Type
