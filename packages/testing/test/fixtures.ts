/**
 * One application, defined once and outside any TestCluster: an entity that reports where it runs,
 * a persisted entity that counts executions, and a singleton that records where it is running.
 */
import * as ClusterSchema from "@effect/cluster/ClusterSchema"
import * as Entity from "@effect/cluster/Entity"
import { RunnerAddress } from "@effect/cluster/RunnerAddress"
import * as Singleton from "@effect/cluster/Singleton"
import * as Rpc from "@effect/rpc/Rpc"
import * as Node from "@foundation/core/Node"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Schema from "effect/Schema"
import { TestCluster } from "@foundation/testing"

/** Answers with the runner that served the call. */
export const Whoami = Entity.make("Whoami", [Rpc.make("Whoami", { success: RunnerAddress })])

/** Records a key once (persisted, deduplicated by primary key) and answers with the runner that did. */
export const Ledger = Entity.make("Ledger", [
  Rpc.make("Record", {
    payload: { key: Schema.String },
    success: RunnerAddress,
    primaryKey: ({ key }) => key
  })
]).annotateRpcs(ClusterSchema.Persisted, true)

/** Per-node observations the tests read through `cluster.on`. */
export class Observations extends Context.Tag("test/Observations")<
  Observations,
  { leaderRunning: boolean; leaderStarts: number; recorded: number }
>() {}

const WhoamiLive = Whoami.toLayer(
  Effect.map(Entity.CurrentRunnerAddress, (address) => Whoami.of({ Whoami: () => Effect.succeed(address) }))
)

const LedgerLive = Ledger.toLayer(
  Effect.gen(function* () {
    const address = yield* Entity.CurrentRunnerAddress
    const observations = yield* Observations
    return Ledger.of({
      Record: () =>
        Effect.sync(() => {
          observations.recorded++
          return address
        })
    })
  })
)

const LeaderLive = Singleton.make(
  "leader",
  Effect.gen(function* () {
    const observations = yield* Observations
    yield* Effect.acquireRelease(
      Effect.sync(() => {
        observations.leaderRunning = true
        observations.leaderStarts++
      }),
      () => Effect.sync(() => (observations.leaderRunning = false))
    )
    return yield* Effect.never
  })
)

/** The application layer: needs only what every Foundation node provides. */
export const AppLayer = Layer.mergeAll(WhoamiLive, LedgerLive, LeaderLive).pipe(
  Layer.provideMerge(Layer.sync(Observations, () => ({ leaderRunning: false, leaderStarts: 0, recorded: 0 })))
)

/** How `observer` currently sees `target`. */
export const memberOn = <ROut>(cluster: TestCluster.Cluster<ROut>, observer: string, target: string) =>
  cluster.on(
    observer,
    Effect.flatMap(Node.Node, (node) => node.member(Node.nodeId(target)))
  )

/** Calls the `Whoami` entity `entityId` from node `from`; the answer is the runner that served it. */
export const whoami = <ROut>(cluster: TestCluster.Cluster<ROut>, from: string, entityId: string) =>
  cluster.on(
    from,
    Effect.flatMap(Whoami.client, (client) => client(entityId).Whoami())
  )

/** The first `Whoami` id (e-0, e-1, ...) whose shard lives on `node`, asked from `from`. */
export const entityOn = <ROut>(cluster: TestCluster.Cluster<ROut>, from: string, node: string) =>
  Effect.gen(function* () {
    for (let index = 0; index < 100; index++) {
      const address = yield* whoami(cluster, from, `e-${index}`)
      if (address.host === node) return `e-${index}`
    }
    return yield* Effect.dieMessage(`no entity id among e-0..e-99 lives on ${node}`)
  })

/** A 3-node cluster running `AppLayer`, returned once every node sees every other and all shards are held. */
export const convergedCluster = Effect.tap(TestCluster.make({ nodes: 3, layer: AppLayer }), (cluster) =>
  cluster.awaitConverged()
)
