/**
 * A node process for `supervisor.postgres.test.ts`: a Foundation node on Postgres with the Registry and
 * the Supervisor on SQL storage. It registers `held-by-{id}`, starts the singleton named by
 * `FT_START` if set, and prints a line per life of a `beacon` instance on this node:
 * `LIFE start|end {name} {node} {epoch} {Date.now()}`.
 */
import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import * as Registry from "@foundation/core/Registry"
import * as RegistryStorage from "@foundation/core/RegistryStorage"
import * as Supervisor from "@foundation/core/Supervisor"
import * as SupervisorStorage from "@foundation/core/SupervisorStorage"
import * as Config from "effect/Config"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Logger from "effect/Logger"
import * as LogLevel from "effect/LogLevel"
import * as Option from "effect/Option"
import * as Schema from "effect/Schema"
import * as Scope from "effect/Scope"
import * as FoundationNode from "../src/FoundationNode.js"
import * as SqlStorage from "../src/SqlStorage.js"

const line = (phase: string, name: string, node: string, epoch: number) =>
  Effect.sync(() => void process.stdout.write(`LIFE ${phase} ${name} ${node} ${epoch} ${Date.now()}\n`))

export const Beacon = Supervisor.spec("beacon", {
  args: Schema.Struct({ label: Schema.String }),
  run: (_, context) =>
    Effect.acquireRelease(line("start", context.registryName, context.node, context.epoch), () =>
      line("end", context.registryName, context.node, context.epoch)
    ).pipe(Effect.zipRight(Effect.never))
})

const program = Effect.gen(function* () {
  const options = yield* Config.all({
    id: Config.string("FT_ID"),
    port: Config.port("FT_PORT"),
    runnerPort: Config.port("FT_RUNNER_PORT"),
    url: Config.string("FT_URL"),
    prefix: Config.string("FT_PREFIX"),
    start: Config.option(Config.string("FT_START"))
  })
  const sql = yield* SqlStorage.shared(SqlStorage.layerClient({ _tag: "postgres", url: options.url }))
  const prefix = SqlStorage.tablePrefixes(options.prefix).directory
  const app = Supervisor.layer([Beacon]).pipe(
    Layer.provideMerge(Registry.layer()),
    Layer.provide([RegistryStorage.layerSql({ prefix }), SupervisorStorage.layerSql({ prefix })]),
    Layer.provide(sql)
  )
  const node = yield* FoundationNode.start(
    {
      id: options.id,
      port: options.port,
      runnerPort: options.runnerPort,
      storage: sql,
      tablePrefix: options.prefix
    },
    app
  )
  const scope = yield* Effect.scope
  yield* node.run(
    Effect.gen(function* () {
      const registry = yield* Registry.Registry
      yield* registry.register(`held-by-${options.id}`)
      if (Option.isSome(options.start)) {
        const supervisor = yield* Supervisor.Supervisor
        yield* supervisor.startSingleton(Beacon, { label: "pg" }, { name: options.start.value })
      }
    }).pipe(Scope.extend(scope))
  )
  yield* Effect.sync(() => console.log(`READY ${options.id}`))
  return yield* Effect.never
})

NodeRuntime.runMain(program.pipe(Effect.scoped, Logger.withMinimumLogLevel(LogLevel.Warning)))
