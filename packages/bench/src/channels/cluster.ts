/**
 * The node processes of the channels and sharedconfig benchmarks: 3 workers (`worker.ts`) on a
 * throwaway Postgres database, each a Foundation node with Channels and SharedConfig, driven over
 * stdin (`shared/commands.ts`). Every worker is killed when the scope closes.
 */
import * as Effect from "effect/Effect"
import { fileURLToPath } from "node:url"
import * as Commands from "../shared/commands.js"
import type { Command } from "./protocol.js"

const workerPath = fileURLToPath(new URL("./worker.ts", import.meta.url))

export const log = (line: string) => Effect.sync(() => console.error(line))

export type BenchWorker = Commands.CommandWorker

/** Sends a command to a worker and waits for its reply. */
export const request: <A = any>(worker: BenchWorker, command: Command) => Effect.Effect<A, Error> =
  Commands.request

/** Starts the 3 workers `node-1` .. `node-3` on a fresh database for the scope. */
export const startCluster = (databaseUrl: string) =>
  Commands.startNodeCluster(databaseUrl, workerPath).pipe(
    Effect.tap(() => log(`[bench] 3 node processes serving`))
  )

export const round = (value: number, digits: number) => Number(value.toFixed(digits))
