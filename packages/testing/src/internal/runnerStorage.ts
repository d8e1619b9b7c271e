import type { Runner } from "@effect/cluster/Runner"
import type { RunnerAddress } from "@effect/cluster/RunnerAddress"
import { RunnerStorage } from "@effect/cluster/RunnerStorage"
import * as MachineId from "@effect/cluster/MachineId"
import type { ShardId } from "@effect/cluster/ShardId"
import { ShardingConfig } from "@effect/cluster/ShardingConfig"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"

/** A row of the engine's `cluster_runners` table. */
export interface RunnerRow {
  readonly runner: Runner
  healthy: boolean
  lastHeartbeat: number
}

/** A row of the engine's `cluster_locks` table (lease mode). */
export interface LockRow {
  readonly address: string
  acquiredAt: number
}

/** The tables shared by every node of one cluster, keyed like the SQL rows (`host:port`, `group:id`). */
export interface RunnerStore {
  readonly runners: Map<string, RunnerRow>
  readonly locks: Map<string, LockRow>
  readonly machineIds: Map<string, number>
}

export const makeStore = (): RunnerStore => ({ runners: new Map(), locks: new Map(), machineIds: new Map() })

export const addressKey = (address: RunnerAddress): string => `${address.host}:${address.port}`

export const make = (store: RunnerStore) =>
  Effect.gen(function* () {
    const config = yield* ShardingConfig
    const expiration = Duration.toMillis(config.shardLockExpiration)
    // Time is read on every call (not once), so a TestClock adjusted between calls expires leases.
    const at = <A>(f: (now: number) => A) =>
      Effect.clockWith((clock) => Effect.sync(() => f(clock.unsafeCurrentTimeMillis())))

    return RunnerStorage.of({
      register: (runner, healthy) =>
        at((now) => {
          const key = addressKey(runner.address)
          store.runners.set(key, { runner, healthy, lastHeartbeat: now })
          let id = store.machineIds.get(key)
          if (id === undefined) {
            id = store.machineIds.size + 1
            store.machineIds.set(key, id)
          }
          return MachineId.make(id)
        }),
      unregister: (address) =>
        at((now) => {
          store.runners.delete(addressKey(address))
          for (const [key, row] of store.runners) {
            if (row.lastHeartbeat < now - expiration) store.runners.delete(key)
          }
        }),
      getRunners: at((now) =>
        Array.from(store.runners.values())
          .filter((row) => row.lastHeartbeat > now - expiration)
          .map((row) => [row.runner, row.healthy] as const)
      ),
      setRunnerHealth: (address, healthy) =>
        Effect.sync(() => {
          const row = store.runners.get(addressKey(address))
          if (row) row.healthy = healthy
        }),
      acquire: (address, shardIds) =>
        at((now) => {
          const key = addressKey(address)
          const acquired: Array<ShardId> = []
          for (const shardId of shardIds) {
            const shard = shardId.toString()
            const lock = store.locks.get(shard)
            if (lock === undefined || lock.address === key || lock.acquiredAt < now - expiration) {
              store.locks.set(shard, { address: key, acquiredAt: now })
              acquired.push(shardId)
            }
          }
          return acquired
        }),
      refresh: (address, shardIds) =>
        at((now) => {
          const key = addressKey(address)
          const row = store.runners.get(key)
          if (row) row.lastHeartbeat = now
          const refreshed: Array<ShardId> = []
          for (const shardId of shardIds) {
            const lock = store.locks.get(shardId.toString())
            if (lock === undefined || lock.address !== key) continue
            lock.acquiredAt = now
            refreshed.push(shardId)
          }
          return refreshed
        }),
      release: (address, shardId) =>
        Effect.sync(() => {
          const shard = shardId.toString()
          if (store.locks.get(shard)?.address === addressKey(address)) store.locks.delete(shard)
        }),
      releaseAll: (address) =>
        Effect.sync(() => {
          const key = addressKey(address)
          for (const [shard, lock] of store.locks) {
            if (lock.address === key) store.locks.delete(shard)
          }
        })
    })
  })

export const layer = (store: RunnerStore): Layer.Layer<RunnerStorage, never, ShardingConfig> =>
  Layer.effect(RunnerStorage, make(store))
