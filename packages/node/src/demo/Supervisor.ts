/**
 * The demo's Registry and Supervisor step: a named singleton started from the first node, looked
 * up from every node, then its node crashed (no goodbye); the step measures how long until it runs
 * again on a survivor and `lookupSingleton` on every survivor finds the new instance.
 *
 * Wiring: add `layer(sql)` to each node's application layer (the demo's shared SQL client, for the
 * `foundation_registry` and `foundation_processes` tables), then run `run` with the running nodes
 * (`FoundationNode.RunningNode`s), all up; it crashes one of them:
 * ```ts
 * FoundationNode.start(options, Layer.merge(Sample.layer(report), SupervisorDemo.layer(sql)))
 * yield* SupervisorDemo.run(nodes)
 * ```
 * Underneath: `ProcessManager.startSingleton` (which calls `Supervisor.startSingleton`),
 * `ProcessManager.lookupSingleton` (`Registry.lookup` on each node's local view),
 * `Supervisor.local` to see where the instance runs, and `RunningNode.crash`.
 */
import type * as SqlClient from "@effect/sql/SqlClient"
import type * as Node from "@foundation/core/Node"
import * as ProcessManager from "@foundation/core/ProcessManager"
import * as Registry from "@foundation/core/Registry"
import * as RegistryStorage from "@foundation/core/RegistryStorage"
import * as Supervisor from "@foundation/core/Supervisor"
import * as SupervisorStorage from "@foundation/core/SupervisorStorage"
import * as Console from "effect/Console"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Schema from "effect/Schema"
import * as Table from "../internal/table.js"

/** A singleton that counts ticks; what matters here is where it runs. */
export const Ticker = Supervisor.spec("demo-ticker", {
  args: Schema.Struct({ everyMs: Schema.Number }),
  run: ({ everyMs }) => Effect.forever(Effect.sleep(everyMs))
})

/** What each node needs for this step: the Registry and the Supervisor (declaring `Ticker`) on SQL. */
export const layer = (sql: Layer.Layer<SqlClient.SqlClient>) =>
  Supervisor.layer([Ticker]).pipe(
    Layer.provideMerge(Registry.layer()),
    Layer.provide([RegistryStorage.layerSql(), SupervisorStorage.layerSql()]),
    Layer.provide(sql)
  )

/** The services `layer` provides. */
export type Services = Registry.Registry | Supervisor.Supervisor

/** A running node with `layer` in its application: a `FoundationNode.RunningNode` fits. */
export interface DemoNode {
  readonly info: Node.NodeInfo
  readonly run: <X, E>(effect: Effect.Effect<X, E, Services>) => Effect.Effect<X, E>
  readonly crash: Effect.Effect<void>
}

/** The step did not finish in time. */
export class SupervisorDemoError extends Schema.TaggedError<SupervisorDemoError>()("SupervisorDemoError", {
  step: Schema.String,
  detail: Schema.String
}) {
  get message(): string {
    return `The Supervisor demo got stuck at "${this.step}": ${this.detail}`
  }
}

/** What the step measured. */
export interface Report {
  readonly name: string
  readonly first: Supervisor.ProcessRef
  readonly startMs: number
  readonly crashed: string
  readonly second: Supervisor.ProcessRef
  /** from the crash until the instance ran on a survivor and every survivor's lookup found it */
  readonly failoverMs: number
}

const name = "demo-singleton"

const waitFor = <A>(
  step: string,
  check: Effect.Effect<A | undefined>,
  timeoutMs: number
): Effect.Effect<A, SupervisorDemoError> =>
  Effect.gen(function* () {
    const deadline = Date.now() + timeoutMs
    while (Date.now() < deadline) {
      const result = yield* check
      if (result !== undefined) return result
      yield* Effect.sleep("5 millis")
    }
    return yield* new SupervisorDemoError({ step, detail: `not done after ${timeoutMs} ms` })
  })

const lookups = (nodes: ReadonlyArray<DemoNode>) =>
  Effect.forEach(nodes, (node) =>
    node.run(Effect.map(Effect.option(ProcessManager.lookupSingleton(name)), Option.getOrUndefined))
  )

const view = (nodes: ReadonlyArray<DemoNode>, refs: ReadonlyArray<Supervisor.ProcessRef | undefined>) =>
  Table.render(
    ["viewer", `lookupSingleton("${name}")`],
    nodes.map((node, i) => [
      node.info.id,
      refs[i] ? `${refs[i]!.node} (epoch ${refs[i]!.epoch})` : "not found"
    ])
  )

/** Runs the step on `nodes` (at least two, all up) and prints it; crashes the singleton's node. */
export const run = (nodes: ReadonlyArray<DemoNode>): Effect.Effect<Report, SupervisorDemoError> =>
  Effect.gen(function* () {
    yield* Console.log(`\nRegistry and Supervisor: a named singleton, started from ${nodes[0].info.id}`)
    const startedAt = Date.now()
    const first = yield* nodes[0]
      .run(ProcessManager.startSingleton(Ticker, { everyMs: 100 }, { name }))
      .pipe(Effect.mapError((error) => new SupervisorDemoError({ step: "start", detail: error.message })))
    const startMs = Date.now() - startedAt
    yield* Console.log(
      `ProcessManager.startSingleton returned after ${startMs} ms: it runs on ${first.node} (epoch ${first.epoch})\n` +
        view(nodes, yield* lookups(nodes))
    )

    const victim = nodes.find((node) => node.info.id === first.node)
    if (!victim)
      return yield* new SupervisorDemoError({ step: "crash", detail: `${first.node} is not a demo node` })
    const survivors = nodes.filter((node) => node !== victim)
    yield* Console.log(`\nCrashing ${victim.info.id} (storage severed, sockets destroyed, no goodbye)`)
    const crashedAt = Date.now()
    yield* victim.crash
    const second = yield* waitFor(
      "the singleton after the crash",
      Effect.gen(function* () {
        const refs = yield* lookups(survivors)
        const ref = refs[0]
        if (!ref || ref.node === victim.info.id || refs.some((other) => other?.epoch !== ref.epoch))
          return undefined
        const host = survivors.find((node) => node.info.id === ref.node)
        const running = host
          ? yield* host.run(Effect.flatMap(Supervisor.Supervisor, (supervisor) => supervisor.local))
          : []
        return running.some((local) => local.name === name && local.epoch === ref.epoch) ? ref : undefined
      }),
      20_000
    )
    const failoverMs = Date.now() - crashedAt
    yield* Console.log(
      `It runs again on ${second.node} (epoch ${second.epoch}), and every survivor finds it, ${failoverMs} ms after the crash\n` +
        view(survivors, yield* lookups(survivors))
    )
    return { name, first, startMs, crashed: victim.info.id, second, failoverMs }
  })
