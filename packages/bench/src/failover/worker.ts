/**
 * One node process of the failover benchmark: a Foundation node on Postgres hosting the probe
 * entity. It prints `FOUNDATION_BENCH_READY` when it serves, and runs until it is killed.
 */
import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import * as FoundationNode from "@foundation/node/FoundationNode"
import * as Config from "effect/Config"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Logger from "effect/Logger"
import * as LogLevel from "effect/LogLevel"
import { layerProbe } from "./Probe.js"

const program = Effect.gen(function* () {
  const options = yield* Config.all({
    id: Config.string("BENCH_NODE_ID"),
    port: Config.port("BENCH_PORT"),
    runnerPort: Config.port("BENCH_RUNNER_PORT"),
    url: Config.string("BENCH_DATABASE_URL"),
    mode: Config.literal("foundation", "engine")("BENCH_MODE")
  })
  const node = FoundationNode.layer({
    id: options.id,
    port: options.port,
    runnerPort: options.runnerPort,
    storage: { _tag: "postgres", url: options.url },
    failureDetection: options.mode
  })
  yield* Layer.launch(
    Layer.provideMerge(
      Layer.effectDiscard(Effect.sync(() => console.log("FOUNDATION_BENCH_READY"))),
      Layer.provideMerge(layerProbe(options.id), node)
    )
  )
})

NodeRuntime.runMain(program.pipe(Logger.withMinimumLogLevel(LogLevel.Warning)))
