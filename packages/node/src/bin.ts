#!/usr/bin/env node
/**
 * The `foundation` executable: `Cli.run(process.argv)` under `NodeRuntime.runMain`, which interrupts
 * the program on SIGTERM / SIGINT so every scope closes (graceful leave) before the process exits.
 */
import * as NodeContext from "@effect/platform-node/NodeContext"
import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import * as Effect from "effect/Effect"
import * as Cli from "./Cli.js"

Cli.run(process.argv).pipe(Effect.provide(NodeContext.layer), NodeRuntime.runMain)
