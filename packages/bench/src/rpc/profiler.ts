/**
 * The V8 sampling profiler of this process, driven through `node:inspector`: the same sampler and
 * the same `.cpuprofile` JSON as `node --cpu-prof`, but started and stopped around the measured
 * window only (no start-up, no module loading).
 */
import * as Effect from "effect/Effect"
import * as fs from "node:fs/promises"
import * as inspector from "node:inspector"

let session: inspector.Session | undefined

const post = (method: string, params?: object) =>
  Effect.async<any, Error>((resume) => {
    session!.post(method, params ?? {}, (error, result) =>
      resume(error ? Effect.fail(new Error(`${method}: ${error.message}`)) : Effect.succeed(result))
    )
  })

/** Starts sampling every `intervalUs` microseconds. */
export const start = (intervalUs: number) =>
  Effect.gen(function* () {
    if (!session) {
      session = new inspector.Session()
      session.connect()
    }
    yield* post("Profiler.enable")
    yield* post("Profiler.setSamplingInterval", { interval: intervalUs })
    yield* post("Profiler.start")
  })

/** Stops sampling and writes the profile to `file` (a `.cpuprofile`, readable by Chrome DevTools). */
export const stop = (file: string) =>
  Effect.gen(function* () {
    const { profile } = yield* post("Profiler.stop")
    yield* Effect.promise(() => fs.writeFile(file, JSON.stringify(profile)))
    yield* post("Profiler.disable")
    return file
  })
