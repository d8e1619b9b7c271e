/**
 * Fault injection for tests and demos: cut a node off from storage and the directory, so that
 * closing its scope afterwards behaves like a crash (no goodbye reaches anyone) instead of a
 * graceful leave.
 *
 * Production code never needs this; TestCluster's `crash(node)` and the demo's crash use it.
 * Underneath it wraps the node's `RunnerStorage` and `NodeDirectory`: once severed, every call fails
 * with `PersistenceError` / `NodeDirectoryError`, as if the process had lost its connections.
 */
import { PersistenceError } from "@effect/cluster/ClusterError"
import { RunnerStorage } from "@effect/cluster/RunnerStorage"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import { NodeDirectory } from "./NodeDirectory.js"
import { NodeDirectoryError } from "./NodeError.js"

/** A switch shared by the wrappers of one node. */
export interface Severance {
  severed: boolean
}

/** Creates a closed switch. */
export const makeSeverance = (): Severance => ({ severed: false })

const guard =
  (severance: Severance, onSevered: () => unknown) =>
  <A, E, R>(effect: Effect.Effect<A, E, R>): Effect.Effect<A, E, R> =>
    Effect.suspend(() => (severance.severed ? Effect.fail(onSevered() as E) : effect))

/** Wraps the `RunnerStorage` below it so that it fails once `severance.severed` is set. */
export const severableRunnerStorage = (
  severance: Severance
): Layer.Layer<RunnerStorage, never, RunnerStorage> =>
  Layer.effect(
    RunnerStorage,
    Effect.map(RunnerStorage, (storage) => {
      const cut = guard(severance, () => new PersistenceError({ cause: "node severed from storage" }))
      return RunnerStorage.of({
        register: (runner, healthy) => cut(storage.register(runner, healthy)),
        unregister: (address) => cut(storage.unregister(address)),
        getRunners: cut(storage.getRunners),
        setRunnerHealth: (address, healthy) => cut(storage.setRunnerHealth(address, healthy)),
        acquire: (address, shardIds) => cut(storage.acquire(address, shardIds)),
        refresh: (address, shardIds) => cut(storage.refresh(address, shardIds)),
        release: (address, shardId) => cut(storage.release(address, shardId)),
        releaseAll: (address) => cut(storage.releaseAll(address))
      })
    })
  )

/** Wraps the `NodeDirectory` below it so that it fails once `severance.severed` is set. */
export const severableDirectory = (severance: Severance): Layer.Layer<NodeDirectory, never, NodeDirectory> =>
  Layer.effect(
    NodeDirectory,
    Effect.map(NodeDirectory, (directory) => {
      const cut = guard(
        severance,
        () => new NodeDirectoryError({ operation: "any", cause: "node severed from storage" })
      )
      return NodeDirectory.of({
        register: (info) => cut(directory.register(info)),
        unregister: (id) => cut(directory.unregister(id)),
        list: cut(directory.list)
      })
    })
  )
