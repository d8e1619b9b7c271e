/**
 * The commands the channels and sharedconfig benchmarks send to their node processes, one JSON line
 * on stdin each, and the prefix of the one-line replies on stdout.
 */
import * as Schema from "effect/Schema"

const Channel = Schema.Literal("control", "events", "data", "telemetry")

/** The commands a worker takes on stdin. */
export const Command = Schema.Union(
  /** counts what arrives on a built-in channel from now on (`Counters` reads the counts) */
  Schema.TaggedStruct("Count", { channel: Channel }),
  /** answers every ping on the control channel with a pong to its sender */
  Schema.TaggedStruct("Echo", {}),
  /** what `Count` counted so far on a channel; `reset` starts the counts again from zero */
  Schema.TaggedStruct("Counters", { channel: Channel, reset: Schema.Boolean }),
  /** broadcasts `count` messages of about `size` encoded bytes on a channel as fast as it can */
  Schema.TaggedStruct("Publish", { channel: Channel, count: Schema.Number, size: Schema.Number }),
  /** `count` control round trips to the echoing nodes, one at a time, `intervalMs` apart */
  Schema.TaggedStruct("Pings", { count: Schema.Number, intervalMs: Schema.Number }),
  /** `count` plain node RPC round trips (`NodeRpcs.Ping`) to `peer`, `intervalMs` apart: the baseline */
  Schema.TaggedStruct("RpcPings", { peer: Schema.String, count: Schema.Number, intervalMs: Schema.Number }),
  /** starts broadcasting `size`-byte messages on `data` without pause */
  Schema.TaggedStruct("FloodStart", { size: Schema.Number }),
  /** stops the flood; the reply says how much it sent */
  Schema.TaggedStruct("FloodStop", {}),
  /** until every other node is in this node's Channels view of `channel` */
  Schema.TaggedStruct("AwaitSubscribers", { channel: Channel, nodes: Schema.Array(Schema.String) }),
  /** until this node sees every one of `nodes` up */
  Schema.TaggedStruct("AwaitMembers", { nodes: Schema.Array(Schema.String) }),
  /** `count` sequential `SharedConfig.set` calls; the reply has each one's latency */
  Schema.TaggedStruct("Sets", { count: Schema.Number }),
  /** starts the V8 sampling profiler (see `rpc/profiler.ts`) */
  Schema.TaggedStruct("ProfileStart", { intervalUs: Schema.Number }),
  /** stops it and writes the `.cpuprofile` to `file` */
  Schema.TaggedStruct("ProfileStop", { file: Schema.String }),
  /** starts recording this process's GC pauses and event-loop delay (`VitalsStop` returns them) */
  Schema.TaggedStruct("VitalsStart", {}),
  /** stops recording; the reply has the GC pauses and the event-loop delay since `VitalsStart` */
  Schema.TaggedStruct("VitalsStop", {}),
  /** this node's `Channels.stats` */
  Schema.TaggedStruct("Stats", {}),
  /** the `SharedConfig` entry this node holds for the benchmark's key */
  Schema.TaggedStruct("ConfigEntry", {})
)
export type Command = typeof Command.Type

/** One command line. */
export const Request = Schema.Struct({ id: Schema.Number, command: Command })
export type Request = typeof Request.Type
