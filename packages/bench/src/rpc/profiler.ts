/**
 * The V8 sampling profiler of this process, driven through `node:inspector`: the same sampler and
 * the same `.cpuprofile` JSON as `node --cpu-prof`, but started and stopped around the measured
 * window only (no start-up, no module loading). Optionally the sampling heap profiler too
 * (`HeapProfiler.startSampling`), whose `.heapprofile` Chrome DevTools also reads.
 */
import * as Effect from "effect/Effect"
import * as fs from "node:fs/promises"
import * as inspector from "node:inspector"

let session: inspector.Session | undefined
let samplingHeap = false

const post = (method: string, params?: object) =>
  Effect.async<any, Error>((resume) => {
    session!.post(method, params ?? {}, (error, result) =>
      resume(error ? Effect.fail(new Error(`${method}: ${error.message}`)) : Effect.succeed(result))
    )
  })

/** Starts sampling every `intervalUs` microseconds, and allocations every `heapSamplingBytes` if given. */
export const start = (intervalUs: number, heapSamplingBytes?: number) =>
  Effect.gen(function* () {
    if (!session) {
      session = new inspector.Session()
      session.connect()
    }
    yield* post("Profiler.enable")
    yield* post("Profiler.setSamplingInterval", { interval: intervalUs })
    yield* post("Profiler.start")
    if (heapSamplingBytes === undefined) return
    yield* post("HeapProfiler.enable")
    // objects already collected count too: most of a call's allocations die young
    yield* post("HeapProfiler.startSampling", {
      samplingInterval: heapSamplingBytes,
      includeObjectsCollectedByMajorGC: true,
      includeObjectsCollectedByMinorGC: true
    })
    samplingHeap = true
  })

/**
 * Stops sampling and writes the profile to `file` (a `.cpuprofile`, readable by Chrome DevTools), and
 * the heap profile, if sampled, beside it (`heapProfileFile(file)`).
 */
export const stop = (file: string) =>
  Effect.gen(function* () {
    if (samplingHeap) {
      samplingHeap = false
      const { profile } = yield* post("HeapProfiler.stopSampling")
      yield* Effect.promise(() => fs.writeFile(heapProfileFile(file), JSON.stringify(profile)))
      yield* post("HeapProfiler.disable")
    }
    const { profile } = yield* post("Profiler.stop")
    yield* Effect.promise(() => fs.writeFile(file, JSON.stringify(profile)))
    yield* post("Profiler.disable")
    return file
  })

/** Where `stop(file)` writes the heap profile. */
export const heapProfileFile = (file: string) => file.replace(/\.cpuprofile$/, "") + ".heapprofile"
