/**
 * A Foundation node on Node.js: `Foundation.layerNode` with TCP sockets for both endpoints and SQL
 * storage (SQLite embedded, or PostgreSQL).
 *
 * What `layer(options)` builds, in raw calls:
 * ```ts
 * Foundation.layerNode({ id, address, runnerAddress, sharding, failureDetection, runnerTransport,
 *   entityClientTracing, entityHost }, {                        // runner hop: RunnerRpc, entities: EntityHost
 *   nodeServer:   SocketTransport.layerServer("node", { host, port }),
 *   runnerServer: SocketTransport.layerServer("runner", { host, port: runnerPort }),
 *   runnerClient: SocketTransport.layerRunnerClient,                // NodeClusterSocket.layerClientProtocol + fixes
 *   engineRunnerHealth: RunnerHealth.layerPing,                     // only with failureDetection "engine";
 *                                                                   // options.engineRunnerHealth replaces it
 *   transport:    SocketTransport.layerTransport,
 *   runnerStorage: SqlRunnerStorage.layerWith({ prefix }),
 *   messageStorage: SqlMessageStorage.layerWith({ prefix }),
 *   directory:    NodeDirectory.layerSql({ prefix })                // all three: SqlStorage.layer
 * })
 * ```
 * Every address is explicit: unlike `NodeClusterSocket.layer`, nothing reads `HOST`/`PORT`
 * (`ShardingConfig.layerFromEnv` is never used). Drop down to `Foundation.layerNode` to swap a part.
 */
import * as RunnerAddress from "@effect/cluster/RunnerAddress"
import * as RunnerHealth from "@effect/cluster/RunnerHealth"
import * as Runners from "@effect/cluster/Runners"
import * as ShardingConfig from "@effect/cluster/ShardingConfig"
import type * as SqlClient from "@effect/sql/SqlClient"
import type { SqlError } from "@effect/sql/SqlError"
import * as FailureDetector from "@foundation/core/FailureDetector"
import * as Foundation from "@foundation/core/Foundation"
import * as Node from "@foundation/core/Node"
import type { NodeDirectoryError } from "@foundation/core/NodeError"
import * as NodeFault from "@foundation/core/NodeFault"
import * as Config from "effect/Config"
import * as ConfigError from "effect/ConfigError"
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as ExecutionStrategy from "effect/ExecutionStrategy"
import * as Exit from "effect/Exit"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import * as TcpServer from "./internal/tcpServer.js"
import * as SocketTransport from "./SocketTransport.js"
import * as SqlStorage from "./SqlStorage.js"

/** How a node is started. */
export interface Options<E = never> {
  /** the node's stable name, unique in the cluster */
  readonly id: string
  /** the host peers reach this node on (default `127.0.0.1`) */
  readonly host?: string | undefined
  /** the host both endpoints bind (default: `host`; `0.0.0.0` in a container) */
  readonly listenHost?: string | undefined
  /** the node endpoint's port (Foundation's `NodeRpcs`) */
  readonly port: number
  /** the engine runner's port */
  readonly runnerPort: number
  /** the database (default `SqlStorage.defaultStorage`), or your own `SqlClient` layer */
  readonly storage?: SqlStorage.Storage | Layer.Layer<SqlClient.SqlClient, E> | undefined
  /** a prefix for every table, to run several clusters in one database */
  readonly tablePrefix?: string | undefined
  /** overrides of `Foundation.shardingDefaults` (or of the engine defaults in `engine` mode) */
  readonly sharding?: Partial<ShardingConfig.ShardingConfig["Type"]> | undefined
  /** overrides of `FailureDetector.defaults` */
  readonly detector?:
    | Partial<{ readonly [K in keyof FailureDetector.Settings]: Duration.DurationInput }>
    | undefined
  /** `foundation` (default) or `engine`: the engine alone, with `engineRunnerHealth` */
  readonly failureDetection?: Foundation.FailureDetection | undefined
  /**
   * who answers the engine's `RunnerHealth` in `engine` mode (default `RunnerHealth.layerPing`), e.g.
   * `NodeClusterConfig.layerK8sRunnerHealth(kubernetes)` with its `K8sHttpClient` provided
   */
  readonly engineRunnerHealth?: Layer.Layer<RunnerHealth.RunnerHealth, E> | undefined
  /** `foundation` (default: the runner hop on the fast node RPC, `RunnerRpc`) or `engine` */
  readonly runnerTransport?: Foundation.NodeOptions["runnerTransport"]
  /** a span per entity call on the caller (default `false`, see `Foundation.NodeOptions`) */
  readonly entityClientTracing?: boolean | undefined
  /** `foundation` (default: the `EntityHost` runs entities, see `docs/entities.md`) or `engine` */
  readonly entityHost?: Foundation.NodeOptions["entityHost"]
}

/** What can stop a node from starting. */
export type StartError<E = never> = SocketTransport.ListenError | SqlError | NodeDirectoryError | E

/** The identity a node will have, computed from its options. */
export const nodeOptions = (options: Options<unknown>): Foundation.NodeOptions => {
  const host = options.host ?? "127.0.0.1"
  return {
    id: Node.nodeId(options.id),
    address: new Node.NodeAddress({ host, port: options.port }),
    runnerAddress: RunnerAddress.make(host, options.runnerPort),
    sharding: options.sharding,
    failureDetection: options.failureDetection,
    runnerTransport: options.runnerTransport,
    entityClientTracing: options.entityClientTracing,
    entityHost: options.entityHost
  }
}

interface Fault {
  readonly severance: NodeFault.Severance
  readonly cut: TcpServer.NetworkCut
}

const layerWith = <E>(
  options: Options<E>,
  fault: Fault | undefined
): Layer.Layer<Foundation.NodeServices, StartError<E>> => {
  const identity = nodeOptions(options)
  const listenHost = options.listenHost ?? identity.address.host
  const storage = options.storage ?? SqlStorage.defaultStorage
  const sql: Layer.Layer<SqlClient.SqlClient, SqlError | E> = Layer.isLayer(storage)
    ? (storage as Layer.Layer<SqlClient.SqlClient, E>)
    : SqlStorage.layerClient(storage as SqlStorage.Storage)
  const config = ShardingConfig.layer(Foundation.shardingConfigFor(identity))
  const storages = SqlStorage.layer(options.tablePrefix).pipe(Layer.provide([sql, config]))
  const runnerClient = SocketTransport.layerRunnerClient
  const node = Foundation.layerNode<StartError<E>>(identity, {
    nodeServer: SocketTransport.layerServer("node", { host: listenHost, port: options.port }),
    runnerServer: SocketTransport.layerServer("runner", { host: listenHost, port: options.runnerPort }),
    runnerClient,
    engineRunnerHealth:
      options.engineRunnerHealth ??
      RunnerHealth.layerPing.pipe(
        Layer.provide(Runners.layerRpc),
        Layer.provide([runnerClient, storages, config])
      ),
    transport: SocketTransport.layerTransport,
    runnerStorage: fault
      ? NodeFault.severableRunnerStorage(fault.severance).pipe(Layer.provide(storages))
      : storages,
    directory: fault ? NodeFault.severableDirectory(fault.severance).pipe(Layer.provide(storages)) : storages,
    messageStorage: storages
  })
  return node.pipe(
    Layer.provide(
      Layer.mergeAll(
        FailureDetector.layerConfig(options.detector ?? {}),
        Layer.succeed(TcpServer.CurrentNetworkCut, fault?.cut)
      )
    )
  )
}

/**
 * One node as a layer. Provide your entities and singletons on top of it:
 * `Layer.provide(MyEntity.toLayer(...), FoundationNode.layer({ id, port, runnerPort }))`.
 * Closing its scope is a graceful leave: the engine unregisters the runner and releases its shards,
 * and the node removes itself from the directory.
 */
export const layer = <E = never>(options: Options<E>): Layer.Layer<Foundation.NodeServices, StartError<E>> =>
  layerWith(options, undefined)

/** A node started with `start`, with the handles a test or a demo needs. */
export interface RunningNode<A = never> {
  readonly info: Node.NodeInfo
  /** the node's services (and the application's, if a layer was given) */
  readonly context: Context.Context<Foundation.NodeServices | A>
  /** runs an effect against this node's services */
  readonly run: <X, E, R extends Foundation.NodeServices | A>(
    effect: Effect.Effect<X, E, R>
  ) => Effect.Effect<X, E>
  /** graceful leave: closes the node's scope (unregister, release shards, leave the directory) */
  readonly stop: Effect.Effect<void>
  /**
   * a crash, with no goodbye: severs the node's storage and directory
   * (`NodeFault.severableRunnerStorage` / `severableDirectory`), closes its listeners and destroys
   * its open connections as the kernel does for a killed process, then closes its scope.
   */
  readonly crash: Effect.Effect<void>
}

/**
 * Starts a node (and an optional application layer on top of it) in a child of the current scope,
 * with a fault hook. `Layer.buildWithScope` underneath; the node stops when the scope closes, or
 * earlier with `stop` / `crash`.
 */
export const start = <A = never, E = never, E2 = never>(
  options: Options<E>,
  app?: Layer.Layer<A, E2, Foundation.NodeServices>
): Effect.Effect<RunningNode<A>, StartError<E> | E2, Scope.Scope> =>
  Effect.gen(function* () {
    const scope = yield* Scope.fork(yield* Effect.scope, ExecutionStrategy.sequential)
    const fault: Fault = { severance: NodeFault.makeSeverance(), cut: TcpServer.makeNetworkCut() }
    const node = layerWith(options, fault)
    const full: Layer.Layer<Foundation.NodeServices | A, StartError<E> | E2> = app
      ? Layer.provideMerge(app, node)
      : (node as Layer.Layer<Foundation.NodeServices | A, StartError<E>>)
    const context = yield* Layer.buildWithScope(full, scope).pipe(
      Effect.onError((cause) => Scope.close(scope, Exit.failCause(cause)))
    )
    return {
      info: Context.get(context, Node.Node).self,
      context,
      run: (effect) => Effect.provide(effect, context),
      stop: Scope.close(scope, Exit.void),
      crash: Effect.suspend(() => {
        fault.severance.severed = true
        return Effect.zipRight(TcpServer.cutNetwork(fault.cut), Scope.close(scope, Exit.void))
      })
    }
  })

/**
 * Logs every membership change this node sees (`Node.events`): `node n2 up`, `node n3 down
 * (connection-refused)`.
 */
export const layerLogMembership: Layer.Layer<never, never, Node.Node> = Layer.scopedDiscard(
  Effect.gen(function* () {
    const node = yield* Node.Node
    const events = yield* node.events
    yield* events.pipe(
      Stream.runForEach((event) =>
        event._tag === "NodeUp"
          ? Effect.logInfo(`node ${event.node.id} up (${event.node.address})`)
          : event._tag === "NodeSuspect"
            ? Effect.logInfo(`node ${event.node.id} suspect (silent for ${event.silentForMs} ms)`)
            : Effect.logInfo(`node ${event.node.id} down (${event.reason})`)
      ),
      Effect.forkScoped
    )
  })
)

/**
 * Bounds a graceful shutdown: when the scope holding this layer starts closing, a timer starts that
 * exits the process with code 1 if it is still running after `timeout` (the timer is `unref`ed, so
 * it never keeps a finished process alive). Build it after the node (`Layer.provide(node)`), so it
 * closes first. Why: with its database gone, the engine's shutdown waits for shard lock storage to
 * become healthy again before it releases its shards, which can be forever.
 */
export const layerShutdownTimeout = (timeout: Duration.DurationInput): Layer.Layer<never> =>
  Layer.scopedDiscard(
    Effect.addFinalizer(() =>
      Effect.sync(() => {
        const millis = Duration.toMillis(timeout)
        setTimeout(() => {
          process.stderr.write(`shutdown did not finish within ${Duration.format(timeout)}; exiting\n`)
          process.exit(1)
        }, millis).unref()
      })
    )
  )

// -----------------------------------------------------------------------------
// Configuration from the environment
// -----------------------------------------------------------------------------

const tablePrefixPattern = /^[A-Za-z_][A-Za-z0-9_]{0,40}$/

/**
 * The `FOUNDATION_*` environment variables, one `effect/Config` each (the CLI falls back to them).
 * Only these are read: never `HOST` or `PORT`.
 */
export const env = {
  id: Config.string("FOUNDATION_NODE_ID").pipe(
    Config.validate({ message: "Expected a non-empty node id", validation: (id) => id.trim().length > 0 })
  ),
  host: Config.string("FOUNDATION_HOST").pipe(Config.withDefault("127.0.0.1")),
  listenHost: Config.option(Config.string("FOUNDATION_LISTEN_HOST")),
  port: Config.port("FOUNDATION_PORT").pipe(Config.withDefault(4370)),
  runnerPort: Config.port("FOUNDATION_RUNNER_PORT").pipe(Config.withDefault(4371)),
  databaseUrl: Config.option(
    Config.string("FOUNDATION_DATABASE_URL").pipe(
      Config.validate({
        message: "Expected a postgres:// or postgresql:// URL",
        validation: (url) => /^postgres(ql)?:\/\//.test(url)
      })
    )
  ),
  sqliteFile: Config.option(Config.nonEmptyString("FOUNDATION_SQLITE_FILE")),
  tablePrefix: Config.option(
    Config.string("FOUNDATION_TABLE_PREFIX").pipe(
      Config.validate({
        message: "Expected letters, digits and underscores, starting with a letter or underscore",
        validation: (prefix) => tablePrefixPattern.test(prefix)
      })
    )
  ),
  failureDetection: Config.literal(
    "foundation",
    "engine"
  )("FOUNDATION_FAILURE_DETECTION").pipe(Config.withDefault("foundation" as const)),
  shardsPerGroup: Config.option(
    Config.integer("FOUNDATION_SHARDS_PER_GROUP").pipe(
      Config.validate({ message: "Expected a positive integer", validation: (n) => n > 0 })
    )
  )
}

/** The storage chosen by `FOUNDATION_DATABASE_URL` / `FOUNDATION_SQLITE_FILE` (at most one of them). */
const storageFrom = (
  databaseUrl: Option.Option<string>,
  sqliteFile: Option.Option<string>
): Either.Either<SqlStorage.Storage, ConfigError.ConfigError> =>
  Option.isSome(databaseUrl) && Option.isSome(sqliteFile)
    ? Either.left(
        ConfigError.InvalidData(
          ["FOUNDATION_DATABASE_URL"],
          "Set FOUNDATION_DATABASE_URL (PostgreSQL) or FOUNDATION_SQLITE_FILE (SQLite), not both"
        )
      )
    : Either.right(
        Option.isSome(databaseUrl)
          ? { _tag: "postgres", url: databaseUrl.value }
          : Option.isSome(sqliteFile)
            ? { _tag: "sqlite", filename: sqliteFile.value }
            : SqlStorage.defaultStorage
      )

/** Node options read from the `FOUNDATION_*` variables (see `env`); a bad value names its variable. */
export const config: Config.Config<Options> = Config.all(env).pipe(
  Config.mapOrFail((values) =>
    Either.map(
      storageFrom(values.databaseUrl, values.sqliteFile),
      (storage): Options => ({
        id: values.id.trim(),
        host: values.host,
        listenHost: Option.getOrUndefined(values.listenHost),
        port: values.port,
        runnerPort: values.runnerPort,
        storage,
        tablePrefix: Option.getOrUndefined(values.tablePrefix),
        failureDetection: values.failureDetection,
        sharding: Option.match(values.shardsPerGroup, {
          onNone: () => undefined,
          onSome: (shardsPerGroup) => ({ shardsPerGroup })
        })
      })
    )
  )
)

/** `layer` with options from `config` (the environment), then `overrides` applied on top. */
export const layerFromEnv = (
  overrides?: Partial<Options>
): Layer.Layer<Foundation.NodeServices, StartError | ConfigError.ConfigError> =>
  Layer.unwrapEffect(Effect.map(config, (options) => layer({ ...options, ...overrides })))
