import { describe, expect, it } from "@effect/vitest"
import { Lives } from "@foundation/testing"
import * as ProcessManager from "@foundation/core/ProcessManager"
import * as Registry from "@foundation/core/Registry"
import * as RegistryStorage from "@foundation/core/RegistryStorage"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Logger from "effect/Logger"
import * as LogLevel from "effect/LogLevel"
import * as Option from "effect/Option"
import * as Path from "node:path"
import * as FoundationNode from "../src/FoundationNode.js"
import * as SocketTransport from "../src/SocketTransport.js"
import * as SqlStorage from "../src/SqlStorage.js"
import { freshPrefix, postgresUrl, sharedPostgres, spawnTs, waitUntil } from "./utils.js"

const url = postgresUrl("multi-process Supervisor test")

const workerPath = Path.resolve(import.meta.dirname, "supervisorWorker.ts")

/** Starts `supervisorWorker.ts` as node `id`; SIGKILLed when the scope closes if still running. */
const spawnWorker = (id: string, ports: readonly [number, number], env: Record<string, string>) =>
  Effect.map(
    spawnTs(workerPath, [], { FT_ID: id, FT_PORT: `${ports[0]}`, FT_RUNNER_PORT: `${ports[1]}`, ...env }),
    (child) => ({ id, ...child })
  )

type Worker = Effect.Effect.Success<ReturnType<typeof spawnWorker>>

/** Every life of `name` printed by the workers; a killed worker's lives end at `killed[worker]`. */
const lives = (workers: ReadonlyArray<Worker>, name: string, killed: ReadonlyMap<string, number>) => {
  const all: Array<Lives.Life> = []
  for (const worker of workers) {
    for (const text of worker.stdout().split("\n")) {
      const [tag, phase, lifeName, node, epoch, at] = text.split(" ")
      if (tag !== "LIFE" || lifeName !== name) continue
      if (phase === "start") {
        all.push({ worker: worker.id, node, epoch: Number(epoch), start: Number(at), end: undefined })
      } else {
        const life = all.find(
          (l) => l.worker === worker.id && l.epoch === Number(epoch) && l.end === undefined
        )
        if (life) life.end = Number(at)
      }
    }
  }
  for (const life of all)
    if (life.end === undefined && killed.has(life.worker)) life.end = killed.get(life.worker)
  return all
}

describe.skipIf(!url)("Supervisor across node processes on PostgreSQL", () => {
  it.scopedLive(
    "a SIGKILLed host's singleton runs again on a survivor and every node finds it; a SIGTERMed host hands it over at once; never two at a time",
    () =>
      Effect.gen(function* () {
        const sql = yield* sharedPostgres(url!)
        const prefix = yield* freshPrefix(sql, "fs")
        const ports = yield* SocketTransport.freePorts(8)
        const env = { FT_URL: url!, FT_PREFIX: prefix }
        const workers = yield* Effect.forEach(["w-1", "w-2", "w-3"], (id, i) =>
          spawnWorker(
            id,
            [ports[i * 2], ports[i * 2 + 1]],
            id === "w-1" ? { ...env, FT_START: "pg-single" } : env
          )
        )
        // an observer node in this process: the Registry only, so the singleton is never placed here
        const observer = yield* FoundationNode.start(
          { id: "observer", port: ports[6], runnerPort: ports[7], storage: sql, tablePrefix: prefix },
          Registry.layer().pipe(
            Layer.provide(RegistryStorage.layerSql({ prefix: SqlStorage.tablePrefixes(prefix).directory })),
            Layer.provide(sql)
          )
        )
        const lookup = observer.run(Effect.option(ProcessManager.lookupSingleton("pg-single")))
        /** Waits until the singleton runs on another node than `previous`, in a later epoch. */
        const movedFrom = (previous: { readonly node: string; readonly epoch: number }, what: string) =>
          waitUntil(
            what,
            Effect.map(lookup, (ref) =>
              Option.isSome(ref) && ref.value.node !== previous.node && ref.value.epoch > previous.epoch
                ? ref.value
                : undefined
            ),
            { timeoutMs: 10_000, intervalMs: 5 }
          )
        const held = (id: string) =>
          observer.run(Effect.flatMap(Registry.Registry, (registry) => registry.lookup(`held-by-${id}`)))

        const first = yield* waitUntil(
          "the singleton and every worker's name to be visible to the observer",
          Effect.gen(function* () {
            const ref = yield* lookup
            const names = yield* Effect.forEach(workers, (worker) => held(worker.id))
            return Option.isSome(ref) && names.every(Option.isSome) ? ref.value : undefined
          }),
          { timeoutMs: 60_000, intervalMs: 100 }
        ).pipe(
          Effect.tapDefect(() =>
            Effect.sync(() => workers.forEach((w) => console.log(`--- ${w.id}\n${w.output().slice(-3000)}`)))
          )
        )
        const killed = new Map<string, number>()

        // SIGKILL the host
        const victim = workers.find((worker) => worker.id === first.node)!
        const killedAt = Date.now()
        victim.process.kill("SIGKILL")
        killed.set(victim.id, killedAt)
        const second = yield* movedFrom(first, "the singleton to run on a survivor")
        const failoverMs = Date.now() - killedAt
        expect(failoverMs).toBeLessThan(5000)
        // the name is registered just before the instance runs
        const started = yield* waitUntil(
          "the new instance's start line",
          Effect.sync(() =>
            lives(workers, "pg-single", killed).find(
              (life) => life.node === second.node && life.epoch === second.epoch
            )
          ),
          { timeoutMs: 5000, intervalMs: 5 }
        )
        expect(started.end).toBeUndefined()
        expect(started.start).toBeGreaterThanOrEqual(killedAt)
        yield* waitUntil(
          "the killed worker's name to be gone",
          Effect.map(held(victim.id), (entry) => (Option.isNone(entry) ? true : undefined)),
          { timeoutMs: 5000 }
        )
        console.log(
          `SIGKILL of ${victim.id}: "pg-single" runs on ${second.node} (epoch ${second.epoch}); the observer found it after ${failoverMs} ms`
        )

        // SIGTERM the new host: a graceful leave hands the singleton over at once
        const leaving = workers.find((worker) => worker.id === second.node)!
        const stoppedAt = Date.now()
        leaving.process.kill("SIGTERM")
        const third = yield* movedFrom(second, "the singleton to be handed over")
        const handoverMs = Date.now() - stoppedAt
        expect(yield* leaving.exited.pipe(Effect.timeout("15 seconds"), Effect.orDie)).toBe(0)
        expect(handoverMs).toBeLessThan(3000)
        console.log(
          `SIGTERM of ${leaving.id}: handed over to ${third.node} (epoch ${third.epoch}) after ${handoverMs} ms`
        )

        yield* Effect.sleep("500 millis")
        const all = lives(workers, "pg-single", killed)
        expect(all.filter((life) => life.end === undefined).map((life) => life.node)).toEqual([third.node])
        expect(Lives.overlaps(all)).toEqual([])
      }).pipe(Logger.withMinimumLogLevel(LogLevel.Error)),
    120_000
  )
})
