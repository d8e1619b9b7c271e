import { Runner } from "@effect/cluster/Runner"
import { RunnerStorage } from "@effect/cluster/RunnerStorage"
import * as ShardId from "@effect/cluster/ShardId"
import * as ShardingConfig from "@effect/cluster/ShardingConfig"
import { describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as TestClock from "effect/TestClock"
import { TestCluster } from "@foundation/testing"

const shard = (id: number) => ShardId.make("default", id)
const a = TestCluster.runnerAddress("node-1")
const b = TestCluster.runnerAddress("node-2")
const runner = (address: typeof a) => new Runner({ address, groups: ["default"], weight: 1 })

const storage = Layer.provide(
  TestCluster.layerRunnerStorage(TestCluster.makeRunnerStore()),
  ShardingConfig.layer({ shardLockExpiration: "10 seconds" })
)

describe("in-memory RunnerStorage (lease model)", () => {
  it.effect("a shard leased by one runner is refused to another until the lease expires", () =>
    Effect.gen(function* () {
      const store = yield* RunnerStorage
      expect(yield* store.acquire(a, [shard(1), shard(2)])).toEqual([shard(1), shard(2)])
      expect(yield* store.acquire(b, [shard(2), shard(3)])).toEqual([shard(3)])
      expect(yield* store.acquire(a, [shard(1)])).toEqual([shard(1)])
      yield* TestClock.adjust("9 seconds")
      expect(yield* store.acquire(b, [shard(2)])).toEqual([])
      yield* TestClock.adjust("2 seconds")
      expect(yield* store.acquire(b, [shard(2)])).toEqual([shard(2)])
    }).pipe(Effect.provide(storage))
  )

  it.effect("refresh renews the leases a runner still holds and returns only those", () =>
    Effect.gen(function* () {
      const store = yield* RunnerStorage
      yield* store.acquire(a, [shard(1), shard(2)])
      yield* TestClock.adjust("11 seconds")
      yield* store.acquire(b, [shard(2)])
      expect(yield* store.refresh(a, [shard(1), shard(2)])).toEqual([shard(1)])
      yield* TestClock.adjust("5 seconds")
      expect(yield* store.acquire(b, [shard(1)])).toEqual([])
    }).pipe(Effect.provide(storage))
  )

  it.effect("release and releaseAll free leases at once, and only the caller's", () =>
    Effect.gen(function* () {
      const store = yield* RunnerStorage
      yield* store.acquire(a, [shard(1), shard(2), shard(3)])
      yield* store.release(b, shard(1))
      expect(yield* store.acquire(b, [shard(1)])).toEqual([])
      yield* store.release(a, shard(1))
      expect(yield* store.acquire(b, [shard(1)])).toEqual([shard(1)])
      yield* store.releaseAll(a)
      expect(yield* store.acquire(b, [shard(2), shard(3)])).toEqual([shard(2), shard(3)])
    }).pipe(Effect.provide(storage))
  )

  it.effect(
    "runners are listed while their heartbeat is fresh; machine ids are unique and stable per address",
    () =>
      Effect.gen(function* () {
        const store = yield* RunnerStorage
        const first = yield* store.register(runner(a), true)
        const second = yield* store.register(runner(b), true)
        expect(first).not.toBe(second)
        expect(yield* store.register(runner(a), true)).toBe(first)
        yield* store.setRunnerHealth(b, false)
        expect(yield* store.getRunners).toEqual([
          [runner(a), true],
          [runner(b), false]
        ])
        yield* TestClock.adjust("6 seconds")
        yield* store.refresh(a, [])
        yield* TestClock.adjust("6 seconds")
        expect(yield* store.getRunners).toEqual([[runner(a), true]])
        yield* store.unregister(a)
        expect(yield* store.getRunners).toEqual([])
        expect(yield* store.register(runner(a), true)).toBe(first)
      }).pipe(Effect.provide(storage))
  )
})
