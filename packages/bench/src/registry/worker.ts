/**
 * One node process of the `registry` and `singleton` benchmarks: a Foundation node on Postgres with
 * the Registry and the Supervisor on SQL storage, the `beacon` process spec, and a command loop.
 *
 * Commands are JSON lines on stdin (`{ "id": 1, "cmd": "register", ... }`); each answer is one stdout
 * line `REPLY {"id":1,...}`. Events are stdout lines `EVENT {...}`: `life` when a beacon instance
 * starts or ends on this node, `view` when this node's registry view of a watched name changes.
 * Every timestamp is `Date.now()` (the processes share the machine's clock).
 */
import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import * as Rpc from "@effect/rpc/Rpc"
import * as RpcGroup from "@effect/rpc/RpcGroup"
import * as Node from "@foundation/core/Node"
import * as ProcessManager from "@foundation/core/ProcessManager"
import * as Registry from "@foundation/core/Registry"
import * as RegistryStorage from "@foundation/core/RegistryStorage"
import * as Supervisor from "@foundation/core/Supervisor"
import * as SupervisorStorage from "@foundation/core/SupervisorStorage"
import * as FoundationNode from "@foundation/node/FoundationNode"
import * as SqlStorage from "@foundation/node/SqlStorage"
import * as Config from "effect/Config"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Logger from "effect/Logger"
import * as LogLevel from "effect/LogLevel"
import * as Option from "effect/Option"
import * as Runtime from "effect/Runtime"
import * as Schema from "effect/Schema"
import * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import * as readline from "node:readline"
import { percentile } from "../shared/stats.js"

const emit = (kind: "REPLY" | "EVENT", value: unknown) =>
  Effect.sync(() => void process.stdout.write(`${kind} ${JSON.stringify(value)}\n`))

/** A process that only reports its life: start and end, with its node and epoch. */
export const Beacon = Supervisor.spec("beacon", {
  args: Schema.Struct({ label: Schema.String }),
  run: (_, context) =>
    Effect.acquireRelease(
      emit("EVENT", {
        type: "life",
        phase: "start",
        name: context.registryName,
        node: context.node,
        epoch: context.epoch,
        at: Date.now()
      }),
      () =>
        emit("EVENT", {
          type: "life",
          phase: "end",
          name: context.registryName,
          node: context.node,
          epoch: context.epoch,
          at: Date.now()
        })
    ).pipe(Effect.zipRight(Effect.never))
})

/** Asked by a peer right after a registration: is the name in this node's view already? */
export const BenchRpcs = RpcGroup.make(
  Rpc.make("BenchLookup", { payload: { name: Schema.String }, success: Schema.Boolean })
)

const BenchLive = Node.layerServe(BenchRpcs).pipe(
  Layer.provide(
    BenchRpcs.toLayer(
      Effect.map(Registry.Registry, (registry) =>
        BenchRpcs.of({
          BenchLookup: ({ name }) => Effect.sync(() => registry.unsafeLookup(name) !== undefined)
        })
      )
    )
  )
)

const now = () => Number(process.hrtime.bigint()) / 1000

type Command = { readonly id: number; readonly cmd: string } & Record<string, unknown>

const commands = (names: Scope.CloseableScope) => ({
  /**
   * registers `${prefix}${from}` .. `${prefix}${to - 1}`, `concurrency` at a time, kept until exit;
   * also the CPU time this process used meanwhile (its own registrations and the pushes it received)
   */
  register: (command: Command) =>
    Effect.gen(function* () {
      const registry = yield* Registry.Registry
      const from = command.from as number
      const to = command.to as number
      const startedAt = Date.now()
      const cpuBefore = process.cpuUsage()
      let failed = 0
      const all = Array.from({ length: to - from }, (_, i) => `${command.prefix}${from + i}`)
      const failing = Effect.catchAll(() => Effect.sync(() => failed++))
      const concurrency = command.concurrency as number
      // the scope is provided once, around the loop; `scopePerCall` provides it to every call instead,
      // which costs the caller's fibers far more than the registration (see docs/registry.md)
      yield* command.scopePerCall
        ? Effect.forEach(all, (name) => failing(Scope.extend(registry.register(name, { n: 1 }), names)), {
            concurrency,
            discard: true
          })
        : Scope.extend(
            Effect.forEach(all, (name) => failing(registry.register(name, { n: 1 })), {
              concurrency,
              discard: true
            }),
            names
          )
      const endedAt = Date.now()
      const cpu = process.cpuUsage(cpuBefore)
      return { startedAt, endedAt, failed, cpuMs: (cpu.user + cpu.system) / 1000 }
    }),
  /** `samples` lookups of random names among `${prefix}0` .. `${prefix}${count - 1}`, each timed */
  lookups: (command: Command) =>
    Effect.gen(function* () {
      const registry = yield* Registry.Registry
      const count = command.count as number
      const samples = command.samples as number
      const names = Array.from({ length: count }, (_, i) => `${command.prefix}${i}`)
      const times = new Float64Array(samples)
      let found = 0
      for (let i = 0; i < samples; i++) {
        const name = names[(i * 7919) % count]
        const start = now()
        const entry = yield* registry.lookup(name)
        times[i] = now() - start
        if (Option.isSome(entry)) found++
      }
      const sorted = Array.from(times)
      return { p50: percentile(sorted, 50), p99: percentile(sorted, 99), found }
    }),
  /** registers a name, then asks every peer at once whether it sees it; polls until all do */
  lag: (command: Command) =>
    Effect.gen(function* () {
      const registry = yield* Registry.Registry
      const node = yield* Node.Node
      const peers = command.peers as ReadonlyArray<string>
      const clients = yield* Effect.forEach(peers, (peer) => node.clientFor(BenchRpcs)(Node.nodeId(peer)))
      const lags: Array<number> = []
      let misses = 0
      for (let trial = 0; trial < (command.trials as number); trial++) {
        const name = `lag-${node.self.id}-${trial}`
        yield* registry.register(name).pipe(Scope.extend(names))
        const registeredAt = performance.now()
        const seen = yield* Effect.forEach(clients, (client) => client.BenchLookup({ name }), {
          concurrency: "unbounded"
        })
        if (seen.every(Boolean)) {
          lags.push(0)
          continue
        }
        misses++
        yield* Effect.forEach(
          clients,
          (client) =>
            client.BenchLookup({ name }).pipe(
              Effect.filterOrFail((found) => found),
              Effect.retry({ times: 10_000 })
            ),
          { concurrency: "unbounded", discard: true }
        )
        lags.push(performance.now() - registeredAt)
      }
      return { max: Math.max(...lags), p50: percentile(lags, 50), misses, trials: lags.length }
    }),
  /**
   * `ProcessManager.lookupSingleton(name)` against two raw versions, `samples` calls each,
   * alternated over `rounds` (which goes first alternates too); times are the best round of each,
   * ratios the median over rounds of facade / raw - 1:
   * - `raw`: the raw code its doc comment gives (`Registry.lookup`, then `Supervisor.refOf`), with
   *   the `Registry` service resolved once beforehand, as a caller holding it would;
   * - `sameCalls`: the calls the facade itself makes (`Registry.unsafeLookup`, then `refOf`), so the
   *   difference is only the facade's own work (reading the service from the fiber's context and
   *   checking the log level).
   */
  facade: (command: Command) =>
    Effect.gen(function* () {
      const registry = yield* Registry.Registry
      const name = command.name as string
      const samples = command.samples as number
      const found = (ref: Supervisor.ProcessRef | undefined) =>
        ref?.kind === "singleton" ? Effect.succeed(ref) : Effect.fail(new Supervisor.NotFound({ name }))
      const raw = Effect.flatMap(registry.lookup(name), (entry) =>
        found(Supervisor.refOf(Option.getOrUndefined(entry)))
      )
      const sameCalls = Effect.suspend(() => found(Supervisor.refOf(registry.unsafeLookup(name))))
      const facade = ProcessManager.lookupSingleton(name)
      const time = (effect: Effect.Effect<Supervisor.ProcessRef, Supervisor.NotFound, Registry.Registry>) =>
        Effect.gen(function* () {
          const start = now()
          for (let i = 0; i < samples; i++) yield* effect
          return (now() - start) / samples
        })
      const variants = { raw, sameCalls, facade }
      const times: Record<keyof typeof variants, Array<number>> = { raw: [], sameCalls: [], facade: [] }
      const keys = Object.keys(variants) as Array<keyof typeof variants>
      for (let round = 0; round < (command.rounds as number); round++) {
        for (const key of round % 2 === 0 ? keys : [...keys].reverse()) {
          times[key].push(yield* time(variants[key]))
        }
      }
      // a round times the three back to back, so a load spike from elsewhere hits all of them: the
      // ratios are taken per round, then their median
      const pairedRatio = (base: Array<number>) =>
        percentile(
          times.facade.map((facadeUs, round) => facadeUs / base[round] - 1),
          50
        )
      return {
        rawUs: Math.min(...times.raw),
        sameCallsUs: Math.min(...times.sameCalls),
        facadeUs: Math.min(...times.facade),
        ratio: pairedRatio(times.raw),
        sameCallsRatio: pairedRatio(times.sameCalls)
      }
    }),
  /**
   * Starts each of `count` names twice, once with `Supervisor.startSingleton` and once with
   * `ProcessManager.startSingleton` (alternating which goes first), stopping it in between, so both
   * start the same name on the same node; each start's duration in ms.
   */
  starts: (command: Command) =>
    Effect.gen(function* () {
      const supervisor = yield* Supervisor.Supervisor
      const raw: Array<number> = []
      const facade: Array<number> = []
      for (let i = 0; i < (command.count as number); i++) {
        const options = { name: `${command.prefix}${i}` }
        for (const viaFacade of i % 2 === 0 ? [false, true] : [true, false]) {
          const start = performance.now()
          yield* viaFacade
            ? ProcessManager.startSingleton(Beacon, { label: "start" }, options)
            : supervisor.startSingleton(Beacon, { label: "start" }, options)
          ;(viaFacade ? facade : raw).push(performance.now() - start)
          yield* supervisor.stop(options.name)
        }
      }
      return { raw, facade }
    }),
  start: (command: Command) =>
    Effect.flatMap(Supervisor.Supervisor, (supervisor) =>
      supervisor.startSingleton(Beacon, { label: command.label as string }, { name: command.name as string })
    ),
  lookupSingleton: (command: Command) =>
    Effect.flatMap(Supervisor.Supervisor, (supervisor) =>
      supervisor.lookupSingleton(command.name as string).pipe(
        Effect.map((ref) => ({ found: true, node: ref.node, epoch: ref.epoch })),
        Effect.catchAll(() => Effect.succeed({ found: false }))
      )
    ),
  /** prints a `view` event now and on every change of this node's view of `name` */
  watch: (command: Command) =>
    Effect.flatMap(Registry.Registry, (registry) =>
      registry.watch(command.name as string).pipe(
        Stream.runForEach((entry) => {
          const ref = Supervisor.refOf(Option.getOrUndefined(entry))
          return emit("EVENT", {
            type: "view",
            name: command.name,
            node: ref?.node ?? null,
            epoch: ref?.epoch ?? null,
            at: Date.now()
          })
        }),
        Effect.forkDaemon,
        Effect.as({ watching: command.name })
      )
    ),
  /** exits with code 0 (a signal would skip writing `--cpu-prof` profiles) */
  exit: () =>
    Effect.sync(() => {
      setTimeout(() => process.exit(0), 50)
      return "exiting"
    }),
  members: () =>
    Effect.flatMap(Node.Node, (node) =>
      Effect.map(node.members, (members) => members.map((member) => [member.info.id, member.status]))
    )
})

const program = Effect.gen(function* () {
  const options = yield* Config.all({
    id: Config.string("BENCH_NODE_ID"),
    port: Config.port("BENCH_PORT"),
    runnerPort: Config.port("BENCH_RUNNER_PORT"),
    url: Config.string("BENCH_DATABASE_URL")
  })
  const sql = yield* SqlStorage.shared(SqlStorage.layerClient({ _tag: "postgres", url: options.url }))
  const app = Layer.mergeAll(BenchLive, Supervisor.layer([Beacon])).pipe(
    Layer.provideMerge(Registry.layer()),
    Layer.provide([RegistryStorage.layerSql(), SupervisorStorage.layerSql()]),
    Layer.provide(sql)
  )
  const node = yield* FoundationNode.start(
    { id: options.id, port: options.port, runnerPort: options.runnerPort, storage: sql },
    app
  )
  const names = yield* Scope.make()
  const handlers = commands(names)
  const runtime = yield* Effect.runtime<never>()
  const lines = readline.createInterface({ input: process.stdin })
  lines.on("line", (line) => {
    const command = JSON.parse(line) as Command
    const handler = handlers[command.cmd as keyof typeof handlers] as (
      command: Command
    ) => Effect.Effect<unknown, unknown, never>
    Runtime.runFork(runtime)(
      node.run(handler(command) as Effect.Effect<unknown, unknown, Registry.Registry>).pipe(
        Effect.flatMap((result) => emit("REPLY", { id: command.id, ok: true, result })),
        Effect.catchAllCause((cause) => emit("REPLY", { id: command.id, ok: false, error: String(cause) }))
      )
    )
  })
  yield* Effect.sync(() => console.log("FOUNDATION_BENCH_READY"))
  yield* Effect.never
})

NodeRuntime.runMain(program.pipe(Effect.scoped, Logger.withMinimumLogLevel(LogLevel.Warning)))
