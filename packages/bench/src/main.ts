/**
 * Benchmarks: `npm run bench -- <scenario>`. Progress goes to stderr; the last stdout line is one
 * JSON object with the results.
 *
 * - `failover`: 3 node processes on Postgres (`FOUNDATION_BENCH_PG_URL`, default the local test
 *   database); env `BENCH_TRIALS` (default 10), `BENCH_SIGSTOP_TRIALS` (5), `BENCH_BASELINE_TRIALS` (3).
 * - `rpc`: calls/s, latency and caller CPU per call of a plain socket echo, plain `@effect/rpc`, the
 *   engine's default entity call, Foundation's entity call and node RPC (2 then 3 processes on
 *   loopback, Postgres for the clusters); env `BENCH_RPC_SECONDS` (default 3), `BENCH_RPC_RUNS` (3),
 *   `BENCH_RPC_WARMUP_SECONDS` (3), `BENCH_RPC_IN_FLIGHT` (100), `BENCH_RPC_ONLY` (comma-separated
 *   paths: raw, raw_coalesced, effect_rpc, engine_default_entity, entity, node_rpc), and
 *   `BENCH_RPC_PROFILE` (a directory: also CPU-profile each path on the caller and a callee, see
 *   `rpc/profile.ts`; `BENCH_RPC_PROFILE_SECONDS` 10, `BENCH_RPC_PROFILE_INTERVAL_US` 1000 as in
 *   `node --cpu-prof`; `BENCH_RPC_HEAP_SAMPLING_BYTES`, e.g. 4096: also the bytes allocated per call).
 * - `registry`: Registry throughput, local lookup latency, visibility lag and facade overhead (3 node
 *   processes on Postgres); env `BENCH_REGISTRY_NAMES` (10000), `BENCH_REGISTRY_CONCURRENCY` (1000 in
 *   flight per node), `BENCH_REGISTRY_LOOKUPS` (200000), `BENCH_REGISTRY_LAG_TRIALS` (200),
 *   `BENCH_REGISTRY_WARMUP_ROUNDS` (3), `BENCH_REGISTRY_ROUNDS` (3, median reported), `BENCH_REGISTRY_PROFILE` (a directory: CPU-profile the workers).
 * - `mabeam`: sealed-bid, English and consensus runs among agents spread over 3 node processes on
 *   Postgres; env `BENCH_MABEAM_AGENTS` (1000), `BENCH_MABEAM_RUNS` (30), `BENCH_MABEAM_ENGLISH_RUNS` (10).
 * - `singleton`: Supervisor start latency and SIGKILL failover of a singleton (3 node processes on
 *   Postgres); env `BENCH_SINGLETON_TRIALS` (20), `BENCH_SINGLETON_STARTS` (30),
 *   `BENCH_SINGLETON_TIMEOUT_MS` (10000).
 */
import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import * as Config from "effect/Config"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import { runChannels } from "./channels/channels.js"
import { runSharedConfig } from "./channels/sharedConfig.js"
import { runFailover } from "./failover/failover.js"
import { runMabeam } from "./mabeam/mabeam.js"
import { runRegistry } from "./registry/registry.js"
import { runSingleton } from "./registry/singleton.js"
import { runRpc } from "./rpc/rpc.js"

const databaseUrl = Config.string("FOUNDATION_BENCH_PG_URL").pipe(
  Config.withDefault("postgres://postgres@127.0.0.1:5432/test")
)

const scenarios = {
  sharedconfig: Effect.gen(function* () {
    const options = yield* Config.all({
      databaseUrl,
      sets: Config.integer("BENCH_SHAREDCONFIG_SETS").pipe(Config.withDefault(2000)),
      warmup: Config.integer("BENCH_SHAREDCONFIG_WARMUP").pipe(Config.withDefault(500))
    })
    return yield* runSharedConfig(options)
  }),
  channels: Effect.gen(function* () {
    const options = yield* Config.all({
      databaseUrl,
      messages: Config.integer("BENCH_CHANNELS_MESSAGES").pipe(Config.withDefault(300_000)),
      runs: Config.integer("BENCH_CHANNELS_RUNS").pipe(Config.withDefault(3)),
      pings: Config.integer("BENCH_CHANNELS_PINGS").pipe(Config.withDefault(1000)),
      floodBytes: Config.integer("BENCH_CHANNELS_FLOOD_BYTES").pipe(Config.withDefault(1024 * 1024)),
      pingIntervalMs: Config.number("BENCH_CHANNELS_PING_INTERVAL_MS").pipe(Config.withDefault(2)),
      profileDir: Config.option(Config.string("BENCH_CHANNELS_PROFILE"))
    })
    return yield* runChannels({ ...options, profileDir: Option.getOrUndefined(options.profileDir) })
  }),
  mabeam: Effect.gen(function* () {
    const options = yield* Config.all({
      databaseUrl,
      agents: Config.integer("BENCH_MABEAM_AGENTS").pipe(Config.withDefault(1000)),
      runs: Config.integer("BENCH_MABEAM_RUNS").pipe(Config.withDefault(30)),
      englishRuns: Config.integer("BENCH_MABEAM_ENGLISH_RUNS").pipe(Config.withDefault(10))
    })
    return yield* runMabeam(options)
  }),
  failover: Effect.gen(function* () {
    const options = yield* Config.all({
      databaseUrl,
      trials: Config.integer("BENCH_TRIALS").pipe(Config.withDefault(10)),
      sigstopTrials: Config.integer("BENCH_SIGSTOP_TRIALS").pipe(Config.withDefault(5)),
      baselineTrials: Config.integer("BENCH_BASELINE_TRIALS").pipe(Config.withDefault(3))
    })
    return yield* runFailover(options)
  }),
  registry: Effect.gen(function* () {
    const options = yield* Config.all({
      databaseUrl,
      names: Config.integer("BENCH_REGISTRY_NAMES").pipe(Config.withDefault(10_000)),
      concurrency: Config.integer("BENCH_REGISTRY_CONCURRENCY").pipe(Config.withDefault(1000)),
      lookupSamples: Config.integer("BENCH_REGISTRY_LOOKUPS").pipe(Config.withDefault(200_000)),
      lagTrials: Config.integer("BENCH_REGISTRY_LAG_TRIALS").pipe(Config.withDefault(200)),
      warmupRounds: Config.integer("BENCH_REGISTRY_WARMUP_ROUNDS").pipe(Config.withDefault(3)),
      rounds: Config.integer("BENCH_REGISTRY_ROUNDS").pipe(Config.withDefault(3)),
      profileDir: Config.option(Config.string("BENCH_REGISTRY_PROFILE"))
    })
    return yield* runRegistry({ ...options, profileDir: Option.getOrUndefined(options.profileDir) })
  }),
  singleton: Effect.gen(function* () {
    const options = yield* Config.all({
      databaseUrl,
      trials: Config.integer("BENCH_SINGLETON_TRIALS").pipe(Config.withDefault(20)),
      starts: Config.integer("BENCH_SINGLETON_STARTS").pipe(Config.withDefault(30)),
      timeoutMs: Config.integer("BENCH_SINGLETON_TIMEOUT_MS").pipe(Config.withDefault(10_000))
    })
    return yield* runSingleton(options)
  }),
  rpc: Effect.gen(function* () {
    const options = yield* Config.all({
      databaseUrl,
      seconds: Config.number("BENCH_RPC_SECONDS").pipe(Config.withDefault(3)),
      runs: Config.integer("BENCH_RPC_RUNS").pipe(Config.withDefault(3)),
      warmupSeconds: Config.number("BENCH_RPC_WARMUP_SECONDS").pipe(Config.withDefault(3)),
      inFlight: Config.integer("BENCH_RPC_IN_FLIGHT").pipe(Config.withDefault(100)),
      only: Config.string("BENCH_RPC_ONLY").pipe(
        Config.withDefault(""),
        Config.map((only) => only.split(",").filter((path) => path.trim() !== ""))
      ),
      profileDir: Config.option(Config.string("BENCH_RPC_PROFILE")),
      profileSeconds: Config.number("BENCH_RPC_PROFILE_SECONDS").pipe(Config.withDefault(10)),
      profileIntervalUs: Config.integer("BENCH_RPC_PROFILE_INTERVAL_US").pipe(Config.withDefault(1000)),
      heapSamplingBytes: Config.option(Config.integer("BENCH_RPC_HEAP_SAMPLING_BYTES"))
    })
    return yield* runRpc({
      ...options,
      profileDir: Option.getOrUndefined(options.profileDir),
      heapSamplingBytes: Option.getOrUndefined(options.heapSamplingBytes)
    })
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
