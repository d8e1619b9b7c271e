/**
 * The closed-loop load of the rpc benchmark: `inFlight` fibers, each calling again as soon as its
 * previous call answered, until the deadline. Measured on the caller: calls, wall time, and the
 * process's CPU time (`process.cpuUsage`, user + system, all threads).
 */
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import { percentile } from "../shared/stats.js"

/** What one run measured. */
export interface LoadResult {
  readonly calls: number
  readonly elapsedMs: number
  /** caller CPU time during the run, in µs */
  readonly cpuUs: number
  /** call latency percentiles in ms (only when latencies were recorded) */
  readonly p50Ms?: number | undefined
  readonly p99Ms?: number | undefined
}

/** Builds a `LoadResult` from raw figures. */
export const loadResult = (
  calls: number,
  elapsedMs: number,
  cpu: NodeJS.CpuUsage,
  latencies: ReadonlyArray<number>
): LoadResult => ({
  calls,
  elapsedMs,
  cpuUs: cpu.user + cpu.system,
  ...(latencies.length > 0 ? { p50Ms: percentile(latencies, 50), p99Ms: percentile(latencies, 99) } : {})
})

/**
 * Runs `call(slot, seq)` from `inFlight` fibers for `millis`. Fails if the calls have not all
 * answered 30 s after the deadline. With `inFlight` 0 it only waits: the process's idle CPU.
 */
export const runLoad = <E>(
  call: (slot: number, seq: number) => Effect.Effect<unknown, E>,
  options: { readonly inFlight: number; readonly millis: number; readonly latencies: boolean }
): Effect.Effect<LoadResult, E | Error> =>
  Effect.suspend(() => {
    const latencies: Array<number> = []
    let calls = 0
    const cpu = process.cpuUsage()
    const startedAt = performance.now()
    const deadline = startedAt + options.millis
    const slot = (index: number) =>
      Effect.gen(function* () {
        while (performance.now() < deadline) {
          const sentAt = performance.now()
          yield* call(index, calls)
          if (options.latencies) latencies.push(performance.now() - sentAt)
          calls++
        }
      })
    const slots =
      options.inFlight === 0
        ? Effect.sleep(Duration.millis(options.millis))
        : Effect.forEach(
            Array.from({ length: options.inFlight }, (_, index) => index),
            slot,
            { concurrency: "unbounded", discard: true }
          )
    return slots.pipe(
      Effect.timeoutFail({
        duration: Duration.millis(options.millis + 30_000),
        onTimeout: () => new Error(`calls did not answer within 30 s after the deadline (${calls} answered)`)
      }),
      Effect.map(() => loadResult(calls, performance.now() - startedAt, process.cpuUsage(cpu), latencies))
    )
  })
