/**
 * `foundation demo`: three nodes in one process over loopback TCP, on one shared SQLite database,
 * running the `Sample` entity and singleton. It first prints its configuration as
 * `ClusterConfig.explainText` shows it: each chosen value and the setting, env var or rule it came
 * from. Then it prints membership and placement, crashes the node
 * hosting the singleton (no goodbye: `RunningNode.crash`), and measures how long the cluster takes
 * to notice, to run the singleton elsewhere and to answer that node's entities from another node.
 * Between those steps each component shows its part (`./demo/*`): the health endpoints and report,
 * routed channel messages and a cluster-wide setting, a MABEAM auction and vote and, after the crash,
 * a named singleton started with `ProcessManager`, looked up everywhere and failed over.
 *
 * Underneath: `ClusterConfig.resolve(settings)` per node (the `local` strategy on SQLite `:memory:`,
 * three expected nodes, each node its own id and free loopback ports; `FOUNDATION_*` variables
 * override the rest, as they would for any node), one client for every node
 * (`SqlStorage.shared(SqlStorage.layerClient(translation.storage))`), then
 * `FoundationNode.start({ ...NodeClusterConfig.nodeOptions(translation), storage }, Sample.layer(report))`
 * per node, with the resolved configuration provided to `Health` (its expected node count). Calls go
 * through `Sample.Greeter.client`, membership through `Node.members` and `Node.events`.
 */
import * as ClusterConfig from "@foundation/core/ClusterConfig"
import { Node } from "@foundation/core/Node"
import * as Console from "effect/Console"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import * as Schema from "effect/Schema"
import * as Stream from "effect/Stream"
import * as ChannelsDemo from "./demo/Channels.js"
import * as HealthDemo from "./demo/Health.js"
import * as MabeamDemo from "./demo/Mabeam.js"
import * as SupervisorDemo from "./demo/Supervisor.js"
import * as FoundationNode from "./FoundationNode.js"
import * as Table from "./internal/table.js"
import * as NodeClusterConfig from "./NodeClusterConfig.js"
import * as Sample from "./Sample.js"
import * as SocketTransport from "./SocketTransport.js"
import * as SqlStorage from "./SqlStorage.js"

/** A step of the demo did not finish in time; `step` says which. */
export class DemoError extends Schema.TaggedError<DemoError>()("DemoError", {
  step: Schema.String,
  detail: Schema.String
}) {
  get message(): string {
    return `The demo got stuck at "${this.step}": ${this.detail}`
  }
}

/** What the demo measured, in milliseconds from the crash. */
export interface Report {
  readonly crashed: string
  /** per survivor: when it declared the crashed node down, and why */
  readonly detection: ReadonlyArray<{ readonly viewer: string; readonly ms: number; readonly reason: string }>
  readonly singleton: { readonly node: string; readonly ms: number }
  /** when the last entity of the crashed node answered from another node */
  readonly entitiesMs: number
  readonly movedEntities: number
}

const host = "127.0.0.1"
const count = 3
const entityIds = Array.from({ length: 24 }, (_, i) => `user-${i + 1}`)

/** Polls `check` every `intervalMs` until it returns a value; fails with `DemoError` after `timeoutMs`. */
const waitFor = <A, E, R>(
  step: string,
  check: Effect.Effect<A | undefined, E, R>,
  options: { readonly timeoutMs: number; readonly intervalMs: number }
): Effect.Effect<A, E | DemoError, R> =>
  Effect.gen(function* () {
    const deadline = Date.now() + options.timeoutMs
    while (Date.now() < deadline) {
      const result = yield* check
      if (result !== undefined) return result
      yield* Effect.sleep(options.intervalMs)
    }
    return yield* new DemoError({ step, detail: `not done after ${options.timeoutMs} ms` })
  })

const ms = (value: number) => `${Math.round(value)} ms`

/**
 * The settings of demo node `i`: the `local` strategy in memory, three expected nodes, and its own id
 * and ports (`FOUNDATION_*` variables override them, as for any node).
 */
const settingsOf = (i: number, ports: ReadonlyArray<number>): ClusterConfig.Settings => ({
  cluster: "local",
  appName: "foundation-demo",
  nodeId: `node-${i + 1}`,
  expectedNodes: count,
  host,
  port: ports[i * 2],
  runnerPort: ports[i * 2 + 1],
  sqliteFile: ":memory:"
})

/**
 * Resolves every node's configuration; fails with `DemoError` when a variable gives all of them the
 * same id or port (they run in one process, so each needs its own).
 */
const configure = (ports: ReadonlyArray<number>) =>
  Effect.gen(function* () {
    const resolved = yield* Effect.forEach(
      Array.from({ length: count }, (_, i) => settingsOf(i, ports)),
      (s) => ClusterConfig.resolve(s)
    )
    // settings without a `layer` always translate
    const translations = resolved.map((config) => ClusterConfig.translationOf(config)!)
    for (const field of ["nodeId", "port", "runnerPort"] as const) {
      if (new Set(translations.map((t) => t[field])).size < count) {
        const choice = resolved[0].choices.find((c) => c.setting === field)
        return yield* new DemoError({
          step: "configuration",
          detail:
            `every node got ${field} ${choice?.value} from ${choice ? ClusterConfig.renderSource(choice.source) : "?"}; ` +
            `the demo runs ${count} nodes in one process: unset it`
        })
      }
    }
    return resolved.map((config, i) => ({ config, translation: translations[i] }))
  })

/**
 * Runs the demo and prints its progress; returns the measurements. Needs no database server and no
 * free port configuration: ports come from `SocketTransport.freePorts`.
 */
export const run = Effect.gen(function* () {
  const startedAt = Date.now()
  yield* Console.log(`Foundation demo: ${count} nodes in one process, loopback TCP, one shared database\n`)

  const ports = yield* SocketTransport.freePorts(count * 2, host)
  const configs = yield* configure(ports)
  yield* Console.log(ClusterConfig.explainText(configs[0].config))
  yield* Console.log(
    `\n  ${configs
      .slice(1)
      .map((c) => c.translation.nodeId)
      .join(" and ")}: the same, with their own nodeId, port and runnerPort\n`
  )

  const sql = yield* SqlStorage.shared(SqlStorage.layerClient(configs[0].translation.storage))
  const reports: Array<Sample.SingletonReport> = []
  let singletonHost: string | undefined
  const report = (event: Sample.SingletonReport) =>
    Effect.sync(() => {
      reports.push(event)
      if (event.kind === "started") singletonHost = event.node.id
      else if (singletonHost === event.node.id) singletonHost = undefined
    })

  const nodes = yield* Effect.forEach(
    configs,
    ({ config, translation }) =>
      FoundationNode.start(
        { ...NodeClusterConfig.nodeOptions(translation), storage: sql },
        Layer.mergeAll(
          Sample.layer(report),
          HealthDemo.layer.pipe(Layer.provide(ClusterConfig.layerResolved(config))),
          ChannelsDemo.layer,
          MabeamDemo.layer,
          SupervisorDemo.layer(sql)
        )
      ),
    { concurrency: "unbounded" }
  )
  const nodeIds = nodes.map((node) => node.info.id)
  yield* Console.log(
    Table.render(
      ["node", "node endpoint", "runner endpoint"],
      nodes.map((node) => [
        node.info.id,
        node.info.address.toString(),
        `${node.info.runnerAddress.host}:${node.info.runnerAddress.port}`
      ])
    )
  )

  const views = (viewers: typeof nodes) =>
    Effect.forEach(viewers, (viewer) =>
      viewer.run(
        Effect.map(
          Effect.flatMap(Node, (node) => node.members),
          (members) => ({ viewer, members })
        )
      )
    )
  const printMembership = (title: string, viewers: typeof nodes) =>
    Effect.flatMap(views(viewers), (all) =>
      Console.log(
        `\n${title}\n` +
          Table.render(
            ["viewer", ...nodeIds],
            all.map(({ members, viewer }) => [
              viewer.info.id,
              ...nodeIds.map((id) => {
                const member = members.find((m) => m.info.id === id)
                if (!member) return "-"
                return member.downReason ? `${member.status} (${member.downReason})` : member.status
              })
            ])
          )
      )
    )

  yield* waitFor(
    "membership",
    Effect.map(views(nodes), (all) =>
      all.every(({ members }) => members.length === count && members.every((m) => m.status === "up"))
        ? true
        : undefined
    ),
    { timeoutMs: 15_000, intervalMs: 50 }
  )
  yield* Console.log(`\nall ${count} nodes see each other up after ${ms(Date.now() - startedAt)}`)

  const placements = (caller: (typeof nodes)[number], ids: ReadonlyArray<string>) =>
    caller
      .run(
        Effect.flatMap(Sample.Greeter.client, (client) =>
          Effect.forEach(ids, (id) => client(id).Where().pipe(Effect.timeout("10 seconds")), {
            concurrency: "unbounded"
          })
        )
      )
      .pipe(Effect.mapError((error) => new DemoError({ step: "placement", detail: error.message })))
  const snapshot = Effect.map(placements(nodes[0], entityIds), (placed) => ({
    placed,
    singleton: singletonHost,
    key: `${singletonHost}|${placed.map((p) => p.node).join(",")}`,
    reportCount: reports.length
  }))
  let previous = yield* snapshot
  const settled = yield* waitFor(
    "placement",
    Effect.map(snapshot, (current) => {
      const stable =
        current.singleton !== undefined &&
        current.key === previous.key &&
        current.reportCount === previous.reportCount
      previous = current
      return stable ? current : undefined
    }),
    { timeoutMs: 20_000, intervalMs: 750 }
  )
  yield* printMembership("Membership, as each node sees it", nodes)
  yield* HealthDemo.printEndpoints(nodes)
  yield* HealthDemo.printSummary(nodes, "Cluster health")
  yield* ChannelsDemo.run(nodes)
  yield* MabeamDemo.run(nodes)
  yield* Console.log(
    `\nPlacement (settled after ${ms(Date.now() - startedAt)})\n` +
      Table.render(
        ["node", "singleton", "Greeter entities"],
        nodeIds.map((id) => {
          const mine = settled.placed.filter((p) => p.node === id).map((p) => p.entityId)
          return [id, settled.singleton === id ? "running" : "-", `${mine.length}: ${mine.join(" ")}`]
        })
      )
  )

  const victim = nodes.find((node) => node.info.id === settled.singleton)!
  const survivors = nodes.filter((node) => node !== victim)
  const orphaned = settled.placed.filter((p) => p.node === victim.info.id).map((p) => p.entityId)
  const downSeen = yield* Effect.forEach(survivors, (survivor) =>
    Effect.flatMap(Effect.flatten(survivor.run(Effect.map(Node, (node) => node.events))), (events) =>
      Effect.succeed(
        events.pipe(
          Stream.filter((event) => event._tag === "NodeDown" && event.node.id === victim.info.id),
          Stream.runHead
        )
      )
    )
  )
  const watchers = yield* Effect.forEach(downSeen, (first) => Effect.fork(first))

  yield* Console.log(
    `\nCrashing ${victim.info.id}, which hosts the singleton and ${orphaned.length} entities ` +
      "(storage severed, sockets destroyed, no goodbye)"
  )
  const crashedAt = Date.now()
  const crash = yield* Effect.fork(victim.crash)

  const caller = survivors[0]
  const answered = yield* caller.run(
    Effect.flatMap(Sample.Greeter.client, (client) =>
      Effect.forEach(
        orphaned,
        (id) =>
          waitFor(
            `entity ${id} after the crash`,
            client(id)
              .Where()
              .pipe(
                Effect.timeout("10 seconds"),
                Effect.mapError((error) => new DemoError({ step: `entity ${id}`, detail: error.message })),
                Effect.map((placement) =>
                  placement.node === victim.info.id ? undefined : { placement, at: Date.now() }
                )
              ),
            { timeoutMs: 20_000, intervalMs: 20 }
          ),
        { concurrency: "unbounded" }
      )
    )
  )
  const singleton = yield* waitFor(
    "singleton after the crash",
    Effect.sync(() =>
      reports.find((r) => r.kind === "started" && r.at >= crashedAt && r.node.id !== victim.info.id)
    ),
    { timeoutMs: 20_000, intervalMs: 10 }
  )
  const downs = yield* Effect.forEach(watchers, (watcher) =>
    Fiber.join(watcher).pipe(
      Effect.timeout("10 seconds"),
      Effect.mapError(() => new DemoError({ step: "detection", detail: "a survivor never saw the crash" }))
    )
  )
  yield* Fiber.join(crash)

  const detection = downs.flatMap((down, i) =>
    down._tag === "Some" && down.value._tag === "NodeDown"
      ? [{ viewer: survivors[i].info.id, ms: down.value.at - crashedAt, reason: down.value.reason }]
      : []
  )
  const entitiesMs = Math.max(0, ...answered.map((a) => a.at - crashedAt))
  const movedTo = survivors
    .map((s) => `${s.info.id}: ${answered.filter((a) => a.placement.node === s.info.id).length}`)
    .join(", ")
  yield* Console.log(
    Table.render(
      ["after the crash", "ms"],
      [
        ...detection.map((d) => [`${d.viewer} declares ${victim.info.id} down (${d.reason})`, ms(d.ms)]),
        [`singleton runs again, on ${singleton.node.id}`, ms(singleton.at - crashedAt)],
        [`all ${orphaned.length} entities of ${victim.info.id} answer again (${movedTo})`, ms(entitiesMs)]
      ]
    )
  )
  yield* printMembership("Membership after the crash, as the survivors see it", survivors)
  yield* HealthDemo.printSummary(survivors, "Cluster health after the crash")
  yield* SupervisorDemo.run(survivors)
  yield* Console.log(`\ndone in ${ms(Date.now() - startedAt)}`)
  return {
    crashed: victim.info.id,
    detection,
    singleton: { node: singleton.node.id, ms: singleton.at - crashedAt },
    entitiesMs,
    movedEntities: orphaned.length
  }
})
