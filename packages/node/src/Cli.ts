/**
 * The `foundation` command line (`@effect/cli`):
 * - `foundation node --id n1 --port 4370 --runner-port 4371 [--database-url URL | --sqlite-file FILE]`:
 *   runs one node hosting the `Sample` entity and singleton until SIGTERM or SIGINT. Every flag falls
 *   back to its `FOUNDATION_*` variable (see `FoundationNode.env`); flags win. A graceful stop that
 *   takes longer than `--shutdown-timeout` seconds (default 20) exits with code 1.
 * - `foundation demo`: the in-process three-node demo (see `Demo`).
 *
 * Run it with `NodeRuntime.runMain` (as `bin.ts` does): on SIGTERM the node's scope closes, so the
 * engine unregisters its runner and releases its shards, and they move at once.
 */
import * as Command from "@effect/cli/Command"
import * as Options from "@effect/cli/Options"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import type * as ConfigError from "effect/ConfigError"
import * as ConfigProvider from "effect/ConfigProvider"
import * as Layer from "effect/Layer"
import * as Logger from "effect/Logger"
import * as LogLevel from "effect/LogLevel"
import * as Option from "effect/Option"
import * as Demo from "./Demo.js"
import * as FoundationNode from "./FoundationNode.js"
import * as Sample from "./Sample.js"
import type * as SqlStorage from "./SqlStorage.js"

const flags = {
  id: Options.text("id").pipe(Options.withDescription("the node id (FOUNDATION_NODE_ID)"), Options.optional),
  host: Options.text("host").pipe(
    Options.withDescription("the host peers reach this node on (FOUNDATION_HOST, default 127.0.0.1)"),
    Options.optional
  ),
  listenHost: Options.text("listen-host").pipe(
    Options.withDescription("the host both endpoints bind (FOUNDATION_LISTEN_HOST, default: --host)"),
    Options.optional
  ),
  port: Options.integer("port").pipe(
    Options.withDescription("the node endpoint port (FOUNDATION_PORT, default 4370)"),
    Options.optional
  ),
  runnerPort: Options.integer("runner-port").pipe(
    Options.withDescription("the engine runner port (FOUNDATION_RUNNER_PORT, default 4371)"),
    Options.optional
  ),
  databaseUrl: Options.text("database-url").pipe(
    Options.withDescription("PostgreSQL URL (FOUNDATION_DATABASE_URL)"),
    Options.optional
  ),
  sqliteFile: Options.text("sqlite-file").pipe(
    Options.withDescription(
      "SQLite file, single process only (FOUNDATION_SQLITE_FILE, default .foundation/foundation.db)"
    ),
    Options.optional
  ),
  tablePrefix: Options.text("table-prefix").pipe(
    Options.withDescription("a prefix for every table (FOUNDATION_TABLE_PREFIX)"),
    Options.optional
  ),
  failureDetection: Options.choice("failure-detection", ["foundation", "engine"]).pipe(
    Options.withDescription("who detects failures (FOUNDATION_FAILURE_DETECTION, default foundation)"),
    Options.optional
  ),
  shutdownTimeout: Options.integer("shutdown-timeout").pipe(
    Options.withDescription(
      "seconds a graceful stop may take before the process exits with code 1 (default 20)"
    ),
    Options.withDefault(20)
  )
}

type NodeFlag = Exclude<keyof typeof flags, "shutdownTimeout">

const variables: Record<NodeFlag, string> = {
  id: "FOUNDATION_NODE_ID",
  host: "FOUNDATION_HOST",
  listenHost: "FOUNDATION_LISTEN_HOST",
  port: "FOUNDATION_PORT",
  runnerPort: "FOUNDATION_RUNNER_PORT",
  databaseUrl: "FOUNDATION_DATABASE_URL",
  sqliteFile: "FOUNDATION_SQLITE_FILE",
  tablePrefix: "FOUNDATION_TABLE_PREFIX",
  failureDetection: "FOUNDATION_FAILURE_DETECTION"
}

/**
 * The node options for a set of flags: the `FOUNDATION_*` variables of the environment, overridden by
 * the flags written as their variables, read through `FoundationNode.config`
 * (`ConfigProvider.fromMap`), so a flag and its variable are validated alike.
 */
export const nodeOptions = (values: {
  readonly [K in NodeFlag]: Option.Option<string | number>
}): Effect.Effect<FoundationNode.Options, ConfigError.ConfigError> => {
  const merged = new Map<string, string>()
  for (const [name, value] of Object.entries(process.env)) {
    if (name.startsWith("FOUNDATION_") && value !== undefined) merged.set(name, value)
  }
  for (const [key, variable] of Object.entries(variables)) {
    const value = values[key as NodeFlag]
    if (Option.isSome(value)) merged.set(variable, String(value.value))
  }
  return Effect.withConfigProvider(FoundationNode.config, ConfigProvider.fromMap(merged))
}

/** `foundation node`: one node with the sample application, until SIGTERM or SIGINT. */
export const node = Command.make("node", flags, (values) =>
  Effect.gen(function* () {
    const options = yield* nodeOptions(values)
    const storage = options.storage as SqlStorage.Storage
    const database = storage._tag === "postgres" ? "postgres" : `sqlite ${storage.filename}`
    yield* Effect.logInfo(
      `starting node ${options.id}: node endpoint ${options.host}:${options.port}, ` +
        `runner ${options.host}:${options.runnerPort}, storage ${database}`
    )
    const app = Layer.mergeAll(Sample.layer(), FoundationNode.layerLogMembership).pipe(
      Layer.provide(FoundationNode.layer(options))
    )
    return yield* Layer.launch(
      FoundationNode.layerShutdownTimeout(Duration.seconds(values.shutdownTimeout)).pipe(Layer.provide(app))
    ).pipe(Effect.annotateLogs("node", options.id))
  })
).pipe(Command.withDescription("Run one Foundation node (hosting the sample Greeter entity and singleton)"))

/** `foundation demo`: three nodes in one process, a crash, and the failover times. */
export const demo = Command.make(
  "demo",
  { verbose: Options.boolean("verbose").pipe(Options.withDescription("also print the nodes' logs")) },
  ({ verbose }) =>
    Demo.run.pipe(
      Effect.scoped,
      Effect.asVoid,
      Logger.withMinimumLogLevel(verbose ? LogLevel.Info : LogLevel.Warning)
    )
).pipe(Command.withDescription("Start 3 nodes in one process, crash one, and show the failover"))

/** The `foundation` command with its subcommands. */
export const command = Command.make("foundation").pipe(
  Command.withDescription("Foundation for Effect: BEAM-style clustering on @effect/cluster"),
  Command.withSubcommands([node, demo])
)

/** Parses `argv` (`process.argv`) and runs the command (`Command.run`). Needs `NodeContext.layer`. */
export const run = Command.run(command, { name: "foundation", version: "0.1.0" })
