/**
 * The rpc benchmark: calls per second, latency and caller CPU per call of every way one process can
 * call another, measured in one run on loopback:
 * - `raw_socket`: a plain `node:net` echo, one write per frame (and `raw_socket_coalesced`: writes
 *   coalesced per tick), 2 processes;
 * - `effect_rpc`: a plain `@effect/rpc` client and server over a socket, msgpack, 2 processes;
 * - `engine_default_entity`: an `@effect/cluster` entity call with the engine's default setup
 *   (`NodeClusterSocket.layer`, msgpack, default `ShardingConfig`, Postgres storage), 3 processes;
 * - `entity`: the same entity on Foundation nodes (`FoundationNode.layer`), 3 processes;
 * - `node_rpc`: Foundation's node-to-node RPC (`nodeRpcCall`), on 3 fresh Foundation nodes.
 *
 * Worker 1 is the caller; entity calls go only to entities on the other runners. Every measurement is
 * a warm-up run, then `runs` runs of `seconds` each with `inFlight` calls outstanding (and, for
 * latency, `runs` runs with 1 call outstanding); the result is the median of the runs. With
 * `profileDir`, each path then gets one more run under the V8 sampling profiler on the caller and on
 * one callee, and `profile.ts` summarises where their CPU went.
 */
import * as Effect from "effect/Effect"
import * as fs from "node:fs"
import * as os from "node:os"
import * as NodePath from "node:path"
import { fileURLToPath } from "node:url"
import * as Commands from "../shared/commands.js"
import * as Processes from "../shared/processes.js"
import { median } from "../shared/stats.js"
import type { LoadResult } from "./load.js"
import * as Profile from "./profile.js"
import { heapProfileFile } from "./profiler.js"
import type { Command, Path } from "./protocol.js"

export interface RpcOptions {
  readonly databaseUrl: string
  /** length of one measured run */
  readonly seconds: number
  /** measured runs per figure (the median is reported) */
  readonly runs: number
  readonly warmupSeconds: number
  readonly inFlight: number
  /** only these paths (all when empty) */
  readonly only: ReadonlyArray<string>
  /** where to write CPU profiles; no profiling when undefined */
  readonly profileDir: string | undefined
  readonly profileSeconds: number
  readonly profileIntervalUs: number
  /** in profile mode, also sample allocations (one sample per this many bytes on average) */
  readonly heapSamplingBytes: number | undefined
}

const workerPath = fileURLToPath(new URL("./worker.ts", import.meta.url))

const log = (line: string) => Effect.sync(() => console.error(line))

type Mode = "bare" | "engine" | "foundation"

interface Ports {
  readonly port: number
  readonly runnerPort: number
  readonly rawPort: number
  readonly rawCoalescedPort: number
  readonly rpcPort: number
}

interface BenchWorker extends Processes.Worker {
  readonly id: string
  readonly ports: Ports
}

/** Sends a command to a worker and waits for its reply. */
const request = (worker: BenchWorker, command: Command) => Commands.request(worker, command)

/**
 * Starts `count` workers in `mode` (on a fresh database for the cluster modes) for the scope: the
 * first alone (concurrent `CREATE TABLE` on a fresh database races), then the rest together. Every
 * worker is killed when the scope closes.
 */
const startWorkers = (options: RpcOptions, mode: Mode, count: number) =>
  Effect.gen(function* () {
    const databaseUrl = mode === "bare" ? "" : (yield* Processes.temporaryDatabase(options.databaseUrl)).url
    const ports = yield* Processes.freePorts(count * 5)
    const specs = Array.from({ length: count }, (_, i) => ({
      id: `node-${i + 1}`,
      ports: {
        port: ports[i * 5]!,
        runnerPort: ports[i * 5 + 1]!,
        rawPort: ports[i * 5 + 2]!,
        rawCoalescedPort: ports[i * 5 + 3]!,
        rpcPort: ports[i * 5 + 4]!
      }
    }))
    const start = (spec: (typeof specs)[number]) =>
      Effect.map(
        Processes.scopedWorker({
          name: spec.id,
          script: workerPath,
          stdin: true,
          env: {
            BENCH_RPC_MODE: mode,
            BENCH_NODE_ID: spec.id,
            BENCH_PORT: String(spec.ports.port),
            BENCH_RUNNER_PORT: String(spec.ports.runnerPort),
            BENCH_RAW_PORT: String(spec.ports.rawPort),
            BENCH_RAW_COALESCED_PORT: String(spec.ports.rawCoalescedPort),
            BENCH_RPC_PORT: String(spec.ports.rpcPort),
            BENCH_DATABASE_URL: databaseUrl
          }
        }),
        (worker): BenchWorker => ({ ...worker, id: spec.id, ports: spec.ports })
      )
    const first = yield* start(specs[0]!)
    const rest = yield* Effect.forEach(specs.slice(1), start, { concurrency: "unbounded" })
    yield* log(`[rpc] ${mode}: ${count} workers serving`)
    return [first, ...rest]
  })

/** The medians of one path's runs. */
interface Figures {
  readonly callsPerSecond: number
  readonly cpuUsPerCall: number
  /** the CPU the serving workers spent, together, per call */
  readonly calleeCpuUsPerCall: number
  readonly p50Ms?: number | undefined
  readonly p99Ms?: number | undefined
  readonly runs: ReadonlyArray<number>
}

const round = (value: number, digits: number) => Number(value.toFixed(digits))

/** The CPU time `workers` have used so far, together, in µs. */
const cpuOf = (workers: ReadonlyArray<BenchWorker>) =>
  Effect.map(
    Effect.forEach(
      workers,
      (worker) => request(worker, { _tag: "Served" }) as Effect.Effect<{ cpuUs: number }, Error>
    ),
    (replies) => replies.reduce((sum, reply) => sum + reply.cpuUs, 0)
  )

/** Warm-up, then `runs` measured runs of one path from `caller`, served by `callees`. */
const measure = (
  options: RpcOptions,
  caller: BenchWorker,
  callees: ReadonlyArray<BenchWorker>,
  path: Path,
  inFlight: number,
  latencies: boolean,
  port?: number
) =>
  Effect.gen(function* () {
    const load = (millis: number) =>
      request(caller, {
        _tag: "Load",
        path,
        inFlight,
        millis,
        latencies,
        ...(port === undefined ? {} : { port })
      }) as Effect.Effect<LoadResult, Error>
    yield* load(options.warmupSeconds * 1000)
    const results: Array<LoadResult> = []
    const calleeCpu: Array<number> = []
    for (let run = 0; run < options.runs; run++) {
      const before = yield* cpuOf(callees)
      const result = yield* load(options.seconds * 1000)
      calleeCpu.push(((yield* cpuOf(callees)) - before) / result.calls)
      results.push(result)
    }
    const rates = results.map((result) => (result.calls / result.elapsedMs) * 1000)
    const figures: Figures = {
      callsPerSecond: Math.round(median(rates)),
      cpuUsPerCall: round(median(results.map((result) => result.cpuUs / result.calls)), 1),
      calleeCpuUsPerCall: round(median(calleeCpu), 1),
      runs: rates.map(Math.round),
      ...(latencies
        ? {
            p50Ms: round(median(results.map((result) => result.p50Ms!)), 3),
            p99Ms: round(median(results.map((result) => result.p99Ms!)), 3)
          }
        : {})
    }
    yield* log(
      `[rpc] ${path}, ${inFlight} in flight: ${figures.callsPerSecond} calls/s (runs ${figures.runs.join(", ")}), ` +
        `caller ${figures.cpuUsPerCall} µs CPU/call, callees ${figures.calleeCpuUsPerCall} µs CPU/call` +
        (latencies ? `, p50 ${figures.p50Ms} ms, p99 ${figures.p99Ms} ms` : "")
    )
    return figures
  })

/** One more run under the profiler, on the caller and on `callee`; returns both summaries. */
const profile = (options: RpcOptions, caller: BenchWorker, callee: BenchWorker, path: Path, port?: number) =>
  Effect.gen(function* () {
    const dir = options.profileDir!
    fs.mkdirSync(dir, { recursive: true })
    const start = {
      _tag: "ProfileStart",
      intervalUs: options.profileIntervalUs,
      ...(options.heapSamplingBytes === undefined ? {} : { heapSamplingBytes: options.heapSamplingBytes })
    } as const
    const before = (yield* request(callee, start)) as { served: number }
    yield* request(caller, start)
    const result = (yield* request(caller, {
      _tag: "Load",
      path,
      inFlight: options.inFlight,
      millis: options.profileSeconds * 1000,
      latencies: false,
      ...(port === undefined ? {} : { port })
    })) as LoadResult
    const callerFile = NodePath.join(dir, `${path}-caller.cpuprofile`)
    const calleeFile = NodePath.join(dir, `${path}-callee.cpuprofile`)
    yield* request(caller, { _tag: "ProfileStop", file: callerFile })
    const after = (yield* request(callee, { _tag: "ProfileStop", file: calleeFile })) as { served: number }
    // the node endpoint's Ping handler does not count; its only caller is this load
    const calleeCalls = after.served - before.served || result.calls
    const callerSummary = Profile.summarize(Profile.read(callerFile), result.calls)
    const calleeSummary = Profile.summarize(Profile.read(calleeFile), calleeCalls)
    const calls_s = Math.round((result.calls / result.elapsedMs) * 1000)
    yield* log(`[rpc] profile of ${path} (${calls_s} calls/s under the profiler)`)
    yield* log(Profile.format(`${path} caller (${result.calls} calls)`, callerSummary))
    yield* log(Profile.format(`${path} callee ${callee.id} (${calleeCalls} calls)`, calleeSummary))
    if (options.heapSamplingBytes === undefined) {
      return { path, calls_s, caller: callerSummary, callee: calleeSummary, callerFile, calleeFile }
    }
    const allocations = {
      caller: Profile.summarizeAllocations(Profile.readHeap(heapProfileFile(callerFile)), result.calls),
      callee: Profile.summarizeAllocations(Profile.readHeap(heapProfileFile(calleeFile)), calleeCalls)
    }
    yield* log(Profile.formatAllocations(`${path} caller`, allocations.caller))
    yield* log(Profile.formatAllocations(`${path} callee ${callee.id}`, allocations.callee))
    return {
      path,
      calls_s,
      caller: callerSummary,
      callee: calleeSummary,
      callerFile,
      calleeFile,
      allocations
    }
  })

/** Runs every selected path and builds the JSON result line. */
export const runRpc = (options: RpcOptions) =>
  Effect.gen(function* () {
    const selected = (path: Path) => options.only.length === 0 || options.only.includes(path)
    const any = (...paths: Array<Path>) => paths.some(selected)
    const result: Record<string, unknown> = {
      scenario: "rpc",
      seconds: options.seconds,
      runs: options.runs,
      in_flight: options.inFlight,
      ...(process.env.BENCH_RPC_EXPERIMENTS ? { experiments: process.env.BENCH_RPC_EXPERIMENTS } : {})
    }
    const loadAtStart = os.loadavg()[0]!
    const runsOf: Record<string, ReadonlyArray<number>> = {}
    const profiles: Array<unknown> = []

    /**
     * Measures `path` at `inFlight` (`<name>_calls_s`, `<cpu>`) and at 1 in flight (`<prefix>_p50_ms`,
     * `<prefix>_p99_ms`), then profiles it in profile mode.
     */
    const both = (
      caller: BenchWorker,
      callees: ReadonlyArray<BenchWorker>,
      path: Path,
      names: { readonly calls: string; readonly latency: string; readonly cpu: string },
      port?: number
    ) =>
      Effect.gen(function* () {
        const load = yield* measure(options, caller, callees, path, options.inFlight, false, port)
        const single = yield* measure(options, caller, callees, path, 1, true, port)
        runsOf[path] = load.runs
        result[names.calls] = load.callsPerSecond
        result[`${names.latency}_p50_ms`] = single.p50Ms
        result[`${names.latency}_p99_ms`] = single.p99Ms
        result[names.cpu] = load.cpuUsPerCall
        result[names.cpu.replace("caller", "callee")] = load.calleeCpuUsPerCall
        if (options.profileDir) profiles.push(yield* profile(options, caller, callees[0]!, path, port))
      })

    if (any("raw", "raw_coalesced", "effect_rpc")) {
      yield* Effect.scoped(
        Effect.gen(function* () {
          const [caller, callee] = yield* startWorkers(options, "bare", 2)
          if (selected("raw"))
            yield* both(
              caller!,
              [callee!],
              "raw",
              {
                calls: "raw_socket_calls_s",
                latency: "raw_socket",
                cpu: "raw_socket_caller_cpu_us_per_call"
              },
              callee!.ports.rawPort
            )
          if (selected("raw_coalesced")) {
            const load = yield* measure(
              options,
              caller!,
              [callee!],
              "raw_coalesced",
              options.inFlight,
              false,
              callee!.ports.rawCoalescedPort
            )
            runsOf.raw_coalesced = load.runs
            result.raw_socket_coalesced_calls_s = load.callsPerSecond
            result.raw_socket_coalesced_caller_cpu_us_per_call = load.cpuUsPerCall
          }
          if (selected("effect_rpc")) {
            yield* request(caller!, {
              _tag: "Prepare",
              path: "effect_rpc",
              entities: 0,
              port: callee!.ports.rpcPort
            })
            yield* both(
              caller!,
              [callee!],
              "effect_rpc",
              {
                calls: "effect_rpc_calls_s",
                latency: "effect_rpc",
                cpu: "effect_rpc_caller_cpu_us_per_call"
              },
              callee!.ports.rpcPort
            )
          }
        })
      )
    }

    /**
     * The caller's CPU with nothing to do, in % of one core (the cluster's own background work):
     * the median of three 2 s windows.
     */
    const idle = (caller: BenchWorker, name: string) =>
      Effect.gen(function* () {
        const windows: Array<number> = []
        for (let window = 0; window < 3; window++) {
          const load = (yield* request(caller, {
            _tag: "Load",
            path: "raw",
            inFlight: 0,
            millis: 2000,
            latencies: false
          })) as LoadResult
          windows.push(round((load.cpuUs / 1000 / load.elapsedMs) * 100, 1))
        }
        result[name] = median(windows)
        yield* log(`[rpc] ${name}: ${windows.join(", ")} % of a core`)
      })

    const cluster = (
      mode: "engine" | "foundation",
      body: (workers: Array<BenchWorker>) => Effect.Effect<void, Error>
    ) => Effect.scoped(Effect.flatMap(startWorkers(options, mode, 3), body))

    if (selected("engine_default_entity")) {
      yield* cluster("engine", ([caller, ...callees]) =>
        Effect.gen(function* () {
          yield* request(caller!, {
            _tag: "Prepare",
            path: "engine_default_entity",
            entities: options.inFlight
          })
          yield* idle(caller!, "engine_default_idle_caller_cpu_pct")
          yield* both(caller!, callees, "engine_default_entity", {
            calls: "engine_default_entity_calls_s",
            latency: "engine_default_entity",
            cpu: "engine_default_caller_cpu_us_per_call"
          })
        })
      )
    }

    // each path on its own fresh cluster: a path measured on workers that already ran another one
    // inherits their heap and JIT state, which moved node RPC by up to 18 %
    if (selected("entity")) {
      yield* cluster("foundation", ([caller, ...callees]) =>
        Effect.gen(function* () {
          yield* request(caller!, { _tag: "Prepare", path: "entity", entities: options.inFlight })
          yield* idle(caller!, "foundation_idle_caller_cpu_pct")
          yield* both(caller!, callees, "entity", {
            calls: "entity_calls_s",
            latency: "entity",
            cpu: "entity_caller_cpu_us_per_call"
          })
        })
      )
    }

    if (selected("node_rpc")) {
      yield* cluster("foundation", ([caller, ...callees]) =>
        Effect.gen(function* () {
          yield* request(caller!, { _tag: "Prepare", path: "node_rpc", entities: 0, peer: callees[0]!.id })
          yield* both(caller!, [callees[0]!], "node_rpc", {
            calls: "node_rpc_calls_s",
            latency: "node_rpc",
            cpu: "caller_cpu_us_per_call"
          })
        })
      )
    }

    if (options.profileDir) {
      fs.writeFileSync(NodePath.join(options.profileDir, "summary.json"), JSON.stringify(profiles, null, 2))
      yield* log(`[rpc] profiles and summary.json in ${options.profileDir}`)
    }
    const first = [
      "scenario",
      "node_rpc_calls_s",
      "node_rpc_p50_ms",
      "node_rpc_p99_ms",
      "entity_calls_s",
      "engine_default_entity_calls_s",
      "raw_socket_calls_s",
      "raw_socket_coalesced_calls_s",
      "caller_cpu_us_per_call",
      "entity_caller_cpu_us_per_call",
      "engine_default_caller_cpu_us_per_call"
    ].filter((key) => key in result)
    return {
      ...Object.fromEntries(first.map((key) => [key, result[key]])),
      ...result,
      runs_calls_s: runsOf,
      // other work on the host skews every figure: the 1-minute load average before and after
      host_loadavg_1m: [round(loadAtStart, 2), round(os.loadavg()[0]!, 2)],
      host_cpus: os.cpus().length
    }
  })
