/**
 * A node's own vital signs: memory and event-loop lag, as the process measures them. `Health` asks
 * every node for them over node RPC (`HealthRpcs.Vitals`) and reports them per node.
 *
 * This module is platform-neutral: it holds the service and its data. The measuring layer lives in
 * the platform package (`@foundation/node`'s `NodeVitals.layer`: `process.memoryUsage()`,
 * `v8.getHeapStatistics()` and `perf_hooks.monitorEventLoopDelay`). `layerTest` answers what a test
 * says, per node; `layerUnmeasured` answers "not measured" on a platform without those APIs.
 */
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Schema from "effect/Schema"
import { Node, type NodeId } from "./Node.js"

/** Memory of the process, in bytes (`process.memoryUsage()`, plus the V8 heap limit). */
export class Memory extends Schema.Class<Memory>("@foundation/Memory")({
  rssBytes: Schema.Number,
  heapUsedBytes: Schema.Number,
  heapTotalBytes: Schema.Number,
  /** the heap size V8 will not grow past (`--max-old-space-size`); `null` when unknown */
  heapLimitBytes: Schema.NullOr(Schema.Number),
  externalBytes: Schema.Number
}) {}

/**
 * How late the event loop ran its timers since the previous sample, in milliseconds: the delay
 * beyond the sampling interval. A healthy loop stays in single-digit milliseconds; hundreds of
 * milliseconds mean CPU-bound work on the loop, and every message to this node waits that long.
 */
export class EventLoopLag extends Schema.Class<EventLoopLag>("@foundation/EventLoopLag")({
  meanMs: Schema.Number,
  p99Ms: Schema.Number,
  maxMs: Schema.Number
}) {}

/** One sample. A field is `null` when the platform does not measure it. */
export class Sample extends Schema.Class<Sample>("@foundation/VitalsSample")({
  memory: Schema.NullOr(Memory),
  eventLoopLag: Schema.NullOr(EventLoopLag)
}) {}

/**
 * The vitals service: `sample` measures now. An implementation that keeps a window (the event-loop
 * histogram) starts a new window at each sample, so consecutive samples do not overlap.
 */
export class Vitals extends Context.Tag("@foundation/core/Vitals")<
  Vitals,
  { readonly sample: Effect.Effect<Sample> }
>() {}

/** A sample with nothing measured. */
export const unmeasured: Sample = new Sample({ memory: null, eventLoopLag: null })

/** For a platform that cannot measure: every sample is `unmeasured`, and Health reports the fields as `null`. */
export const layerUnmeasured: Layer.Layer<Vitals> = Layer.succeed(
  Vitals,
  Vitals.of({ sample: Effect.succeed(unmeasured) })
)

/**
 * For tests: each node answers `sampleOf(its node id)`, read again at every sample, so a test can
 * change what a node reports (a lagging event loop, a full heap) while the cluster runs. Needs the
 * node's `Node` service, which every Foundation node provides to its application layers.
 */
export const layerTest = (sampleOf: (node: NodeId) => Sample): Layer.Layer<Vitals, never, Node> =>
  Layer.effect(
    Vitals,
    Effect.map(Node, (node) => Vitals.of({ sample: Effect.sync(() => sampleOf(node.self.id)) }))
  )
