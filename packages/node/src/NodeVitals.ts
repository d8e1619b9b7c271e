/**
 * `Vitals` on Node.js: what `Health` reports as a node's memory and event-loop lag.
 *
 * Underneath:
 * - memory: `process.memoryUsage()` (rss, heap used and total, external) and
 *   `v8.getHeapStatistics().heap_size_limit` (the heap limit, `--max-old-space-size`);
 * - event-loop lag: `perf_hooks.monitorEventLoopDelay({ resolution })`, enabled while the layer's
 *   scope is open. Its histogram is cut into windows of `window` (5 s); a sample reads the last
 *   `retain` windows (6: 30 s, Health's check interval) and the current one, without resetting
 *   anything, so any number of peers can ask. The timer's own `resolution` is subtracted: the lag is
 *   the delay beyond it. The mean is weighted by samples; p99 and max are the worst of the windows.
 *
 * Drop down to `monitorEventLoopDelay` and `process.memoryUsage` for finer data.
 */
import * as Vitals from "@foundation/core/Vitals"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Schedule from "effect/Schedule"
import { monitorEventLoopDelay } from "node:perf_hooks"
import * as V8 from "node:v8"

/** How the event loop is sampled. */
export interface Options {
  /** the timer resolution of `monitorEventLoopDelay`, in ms (10) */
  readonly resolutionMs?: number | undefined
  /** the length of one window (5 s) */
  readonly window?: Duration.DurationInput | undefined
  /** how many closed windows a sample covers, besides the current one (6) */
  readonly retain?: number | undefined
}

interface WindowStats {
  readonly count: number
  readonly meanNs: number
  readonly p99Ns: number
  readonly maxNs: number
}

/** The Node.js `Vitals`, measuring from the moment it is built until its scope closes. */
export const make = (options?: Options) =>
  Effect.gen(function* () {
    const resolutionMs = options?.resolutionMs ?? 10
    const retain = options?.retain ?? 6
    const histogram = yield* Effect.acquireRelease(
      Effect.sync(() => {
        const histogram = monitorEventLoopDelay({ resolution: resolutionMs })
        histogram.enable()
        return histogram
      }),
      (histogram) => Effect.sync(() => histogram.disable())
    )
    const closed: Array<WindowStats> = []
    const current = (): WindowStats => ({
      count: histogram.count,
      meanNs: histogram.count > 0 ? histogram.mean : 0,
      p99Ns: histogram.count > 0 ? histogram.percentile(99) : 0,
      maxNs: histogram.count > 0 ? histogram.max : 0
    })
    yield* Effect.sync(() => {
      closed.push(current())
      if (closed.length > retain) closed.shift()
      histogram.reset()
    }).pipe(
      Effect.repeat(Schedule.spaced(options?.window ?? Duration.seconds(5))),
      Effect.delay(options?.window ?? Duration.seconds(5)),
      Effect.interruptible,
      Effect.forkScoped
    )
    const lagMs = (ns: number) => Math.max(0, Math.round((ns / 1e6 - resolutionMs) * 100) / 100)
    return Vitals.Vitals.of({
      sample: Effect.sync(() => {
        const memory = process.memoryUsage()
        const windows = [...closed, current()].filter((w) => w.count > 0)
        const count = windows.reduce((sum, w) => sum + w.count, 0)
        return new Vitals.Sample({
          memory: new Vitals.Memory({
            rssBytes: memory.rss,
            heapUsedBytes: memory.heapUsed,
            heapTotalBytes: memory.heapTotal,
            heapLimitBytes: V8.getHeapStatistics().heap_size_limit,
            externalBytes: memory.external
          }),
          eventLoopLag:
            count === 0
              ? null
              : new Vitals.EventLoopLag({
                  meanMs: lagMs(windows.reduce((sum, w) => sum + w.meanNs * w.count, 0) / count),
                  p99Ms: lagMs(Math.max(...windows.map((w) => w.p99Ns))),
                  maxMs: lagMs(Math.max(...windows.map((w) => w.maxNs)))
                })
        })
      })
    })
  })

/** The Node.js `Vitals` as a layer. */
export const layer = (options?: Options): Layer.Layer<Vitals.Vitals> =>
  Layer.scoped(Vitals.Vitals, make(options))
