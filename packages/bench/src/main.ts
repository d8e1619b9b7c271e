/**
 * Benchmarks: `npm run bench -- <scenario>`. Progress goes to stderr; the last stdout line is one
 * JSON object with the results.
 *
 * - `failover`: 3 node processes on Postgres (`FOUNDATION_BENCH_PG_URL`, default the local test
 *   database); env `BENCH_TRIALS` (default 10), `BENCH_SIGSTOP_TRIALS` (5), `BENCH_BASELINE_TRIALS` (3).
 */
import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import * as Config from "effect/Config"
import * as Effect from "effect/Effect"
import { runFailover } from "./failover/failover.js"

const scenarios = {
  failover: Effect.gen(function* () {
    const options = yield* Config.all({
      databaseUrl: Config.string("FOUNDATION_BENCH_PG_URL").pipe(
        Config.withDefault("postgres://postgres@127.0.0.1:5432/test")
      ),
      trials: Config.integer("BENCH_TRIALS").pipe(Config.withDefault(10)),
      sigstopTrials: Config.integer("BENCH_SIGSTOP_TRIALS").pipe(Config.withDefault(5)),
      baselineTrials: Config.integer("BENCH_BASELINE_TRIALS").pipe(Config.withDefault(3))
    })
    return yield* runFailover(options)
  })
} as const

const name = process.argv[2] ?? ""
const program = Effect.gen(function* () {
  if (!(name in scenarios)) {
    return yield* Effect.fail(
      `Unknown benchmark "${name}". Available: ${Object.keys(scenarios).join(", ")} (npm run bench -- <name>)`
    )
  }
  const result = yield* scenarios[name as keyof typeof scenarios]
  yield* Effect.sync(() => console.log(JSON.stringify(result)))
})

NodeRuntime.runMain(program)
