/**
 * One process of the rpc benchmark. Every worker serves; the one the orchestrator picks as the caller
 * also runs the load. Modes (`BENCH_RPC_MODE`):
 * - `bare`: no cluster; a `node:net` echo on two ports (one write per frame / coalesced per tick)
 *   and a plain `@effect/rpc` server (`RpcServer.layerProtocolSocketServer`, msgpack);
 * - `engine`: the engine's default setup, `NodeClusterSocket.layer({ storage: "sql" })` (socket runner,
 *   msgpack, default `ShardingConfig`) on Postgres, hosting `EchoEntity`;
 * - `foundation`: `FoundationNode.layer` on Postgres, hosting `EchoEntity`.
 *
 * It prints `FOUNDATION_BENCH_READY` when it serves, then takes one JSON command per stdin line and
 * answers each with one stdout line `BENCH_REPLY {"id", "ok", "result" | "error"}`. It exits when
 * stdin closes.
 */
import * as EntityId from "@effect/cluster/EntityId"
import * as RunnerAddress from "@effect/cluster/RunnerAddress"
import * as Sharding from "@effect/cluster/Sharding"
import * as ShardingConfig from "@effect/cluster/ShardingConfig"
import * as ShardId from "@effect/cluster/ShardId"
import * as NodeClusterSocket from "@effect/platform-node/NodeClusterSocket"
import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import * as NodeSocket from "@effect/platform-node/NodeSocket"
import * as NodeSocketServer from "@effect/platform-node/NodeSocketServer"
import * as RpcClient from "@effect/rpc/RpcClient"
import * as RpcSerialization from "@effect/rpc/RpcSerialization"
import * as RpcServer from "@effect/rpc/RpcServer"
import * as PgClient from "@effect/sql-pg/PgClient"
import * as Node from "@foundation/core/Node"
import * as FoundationNode from "@foundation/node/FoundationNode"
import * as Config from "effect/Config"
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Logger from "effect/Logger"
import * as LogLevel from "effect/LogLevel"
import * as Option from "effect/Option"
import * as Redacted from "effect/Redacted"
import * as Schedule from "effect/Schedule"
import * as Scope from "effect/Scope"
import { EchoEntity, EchoRpcs, layerEntity, layerRpcHandlers, payload, served } from "./Echo.js"
import * as Experiments from "./experiments.js"
import { loadResult, runLoad } from "./load.js"
import { nodeRpcCall } from "./nodeRpc.js"
import * as Profiler from "./profiler.js"
import { type Command, type Path, Request } from "./protocol.js"
import * as Commands from "../shared/commands.js"
import * as RawSocket from "./rawSocket.js"

const options = Config.all({
  mode: Config.literal("bare", "engine", "foundation")("BENCH_RPC_MODE"),
  id: Config.string("BENCH_NODE_ID"),
  host: Config.string("BENCH_HOST").pipe(Config.withDefault("127.0.0.1")),
  port: Config.port("BENCH_PORT"),
  runnerPort: Config.port("BENCH_RUNNER_PORT"),
  rawPort: Config.port("BENCH_RAW_PORT"),
  rawCoalescedPort: Config.port("BENCH_RAW_COALESCED_PORT"),
  rpcPort: Config.port("BENCH_RPC_PORT"),
  databaseUrl: Config.string("BENCH_DATABASE_URL").pipe(Config.withDefault(""))
})
type Options = Config.Config.Success<typeof options>

const rawServers = (options: Options) =>
  Layer.scopedDiscard(
    Effect.forEach(
      [
        [options.rawPort, "perFrame"],
        [options.rawCoalescedPort, "coalesced"]
      ] as const,
      ([port, mode]) =>
        Effect.acquireRelease(
          Effect.promise(() => RawSocket.listenEcho(options.host, port, mode)),
          (server) => Effect.sync(() => server.close())
        )
    )
  )

const effectRpcServer = (options: Options) =>
  RpcServer.layer(EchoRpcs).pipe(
    Layer.provide(layerRpcHandlers(options.id)),
    Layer.provide(RpcServer.layerProtocolSocketServer),
    Layer.provide(NodeSocketServer.layer({ host: options.host, port: options.rpcPort })),
    Layer.provide(RpcSerialization.layerMsgPack)
  )

const engineNode = (options: Options) =>
  layerEntity(options.id).pipe(
    Layer.provideMerge(
      NodeClusterSocket.layer({
        storage: "sql",
        shardingConfig: { runnerAddress: Option.some(RunnerAddress.make(options.host, options.runnerPort)) }
      })
    ),
    Layer.provide(PgClient.layer({ url: Redacted.make(options.databaseUrl) }))
  )

const foundationNode = (options: Options) =>
  Layer.provideMerge(
    layerEntity(options.id),
    FoundationNode.layer({
      id: options.id,
      host: options.host,
      port: options.port,
      runnerPort: options.runnerPort,
      storage: { _tag: "postgres", url: options.databaseUrl }
    })
  )

const serverLayer = (options: Options): Layer.Layer<never, unknown> =>
  options.mode === "bare"
    ? Layer.mergeAll(rawServers(options), effectRpcServer(options))
    : options.mode === "engine"
      ? engineNode(options)
      : foundationNode(options)

/** A prepared call: `(slot, seq) => call`. */
type Caller = (slot: number, seq: number) => Effect.Effect<unknown, unknown>

const log = (line: string) => Effect.sync(() => console.error(line))

/**
 * Waits until the shard assignment has settled (this runner's shard count unchanged over three
 * checks a second apart, and other runners owning the rest), then picks `count` entity ids on shards
 * this runner does not own, and checks that each answers from another node.
 */
const remoteEntities = (
  self: string,
  count: number,
  sharding: Sharding.Sharding["Type"],
  shardsPerGroup: number
) =>
  Effect.gen(function* () {
    const makeClient = yield* sharding.makeClient(EchoEntity)
    const isLocal = (id: string) => {
      const entityId = EntityId.make(id)
      return sharding.hasShardId(sharding.getShardId(entityId, EchoEntity.getShardGroup(entityId)))
    }
    const owned = () => {
      let n = 0
      for (let i = 1; i <= shardsPerGroup; i++) if (sharding.hasShardId(ShardId.make("default", i))) n++
      return n
    }
    const deadline = Date.now() + 180_000
    while (Date.now() < deadline) {
      const counts: Array<number> = []
      while (Date.now() < deadline) {
        counts.push(owned())
        const last = counts.slice(-3)
        if (last.length === 3 && last.every((n) => n === last[0]) && last[0]! < shardsPerGroup * 0.6) break
        yield* Effect.sleep(Duration.seconds(1))
      }
      const ids: Array<string> = []
      for (let i = 0; ids.length < count && i < count * 1000; i++) {
        if (!isLocal(`echo-${i}`)) ids.push(`echo-${i}`)
      }
      const answers = yield* Effect.forEach(
        ids,
        (id) =>
          makeClient(id)
            .Echo(payload(0))
            .pipe(
              Effect.map((answer) => answer.node),
              Effect.timeout(Duration.seconds(30)),
              Effect.orElseSucceed(() => "timeout")
            ),
        { concurrency: 10 }
      )
      const byNode: Record<string, number> = {}
      for (const node of answers) byNode[node] = (byNode[node] ?? 0) + 1
      yield* log(`[${self}] shards owned here: ${owned()}; entity answers by node: ${JSON.stringify(byNode)}`)
      if (ids.length === count && !(self in byNode) && !("timeout" in byNode)) {
        return { byNode, clients: ids.map((id) => makeClient(id)) }
      }
      yield* Effect.sleep(Duration.seconds(2))
    }
    return yield* Effect.dieMessage(`the shard assignment did not settle within 180 s`)
  })

const program = Effect.gen(function* () {
  const config = yield* options
  const scope = yield* Effect.scope
  const context = yield* Layer.buildWithScope(serverLayer(config), scope)
  const callers = new Map<Path, Caller>()
  const service = <I, S>(tag: Context.Tag<I, S>) =>
    Option.match(Context.getOption(context, tag), {
      onNone: () => Effect.dieMessage(`${tag.key} is not available in ${config.mode} mode`),
      onSome: Effect.succeed
    })

  const prepare = (command: Extract<Command, { _tag: "Prepare" }>) =>
    Effect.gen(function* () {
      switch (command.path) {
        case "raw":
        case "raw_coalesced":
          return {}
        case "effect_rpc": {
          const protocol = yield* Layer.buildWithScope(
            RpcClient.layerProtocolSocket().pipe(
              Layer.provide(NodeSocket.layerNet({ host: config.host, port: command.port! })),
              Layer.provide(RpcSerialization.layerMsgPack)
            ),
            scope
          )
          const client = yield* RpcClient.make(EchoRpcs).pipe(Effect.provide(protocol), Scope.extend(scope))
          yield* client.Echo(payload(0))
          callers.set(command.path, (_slot, seq) => client.Echo(payload(seq)))
          return {}
        }
        case "engine_default_entity":
        case "entity": {
          const sharding = yield* service(Sharding.Sharding)
          const shardsPerGroup = Option.match(Context.getOption(context, ShardingConfig.ShardingConfig), {
            onNone: () => ShardingConfig.defaults.shardsPerGroup,
            onSome: (config) => config.shardsPerGroup
          })
          const { byNode, clients } = yield* remoteEntities(
            config.id,
            command.entities,
            sharding,
            shardsPerGroup
          )
          callers.set(command.path, (slot, seq) => clients[slot % clients.length]!.Echo(payload(seq)))
          return { byNode }
        }
        case "node_rpc": {
          const node = yield* service(Node.Node)
          const call = yield* nodeRpcCall(Node.nodeId(config.id), Node.nodeId(command.peer!)).pipe(
            Effect.tap((call) => call),
            Effect.retry({ times: 60, schedule: Schedule.spaced(Duration.seconds(1)) }),
            Effect.provideService(Node.Node, node)
          )
          callers.set(command.path, () => call)
          return {}
        }
      }
    })

  const handle = (command: Command): Effect.Effect<unknown, unknown> => {
    switch (command._tag) {
      case "Prepare":
        return prepare(command)
      case "Load": {
        const { path, inFlight, millis, latencies } = command
        if (inFlight === 0) return runLoad(() => Effect.void, { inFlight, millis, latencies })
        if (path === "raw" || path === "raw_coalesced") {
          return Effect.promise(async () => {
            const cpu = process.cpuUsage()
            const result = await RawSocket.runEchoClient({
              host: config.host,
              port: command.port!,
              mode: path === "raw" ? "perFrame" : "coalesced",
              inFlight,
              millis,
              latencies
            })
            return loadResult(result.calls, result.elapsedMs, process.cpuUsage(cpu), result.latencies)
          })
        }
        const caller = callers.get(path)
        if (!caller) return Effect.fail(new Error(`path ${path} is not prepared`))
        return runLoad(caller, { inFlight, millis, latencies })
      }
      case "ProfileStart":
        return Profiler.start(command.intervalUs, command.heapSamplingBytes).pipe(
          Effect.as({ served: served.count })
        )
      case "ProfileStop":
        return Profiler.stop(command.file).pipe(Effect.map((file) => ({ file, served: served.count })))
      case "Served":
        return Effect.sync(() => {
          const cpu = process.cpuUsage()
          return { served: served.count, cpuUs: cpu.user + cpu.system }
        })
    }
  }

  yield* Commands.serve(Request, handle)
})

NodeRuntime.runMain(
  Effect.scoped(program).pipe(Experiments.apply, Logger.withMinimumLogLevel(LogLevel.Warning))
)
