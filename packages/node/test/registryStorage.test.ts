import * as RunnerStorage from "@effect/cluster/RunnerStorage"
import { describe, expect, it } from "@effect/vitest"
import * as Node from "@foundation/core/Node"
import { Entry } from "@foundation/core/Registry"
import * as RegistryStorage from "@foundation/core/RegistryStorage"
import * as SupervisorStorage from "@foundation/core/SupervisorStorage"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as SqlStorage from "../src/SqlStorage.js"
import { freshPrefix, postgresUrl } from "./utils.js"

const url = postgresUrl("registry storage tests on PostgreSQL")

const entry = (name: string, node: string, claim: string, incarnation = 1, metadata = {}) =>
  new Entry({
    name,
    node: Node.nodeId(node),
    address: new Node.NodeAddress({ host: node, port: 2 }),
    incarnation,
    claim,
    metadata,
    registeredAt: 1
  })

const row = (name: string) =>
  new SupervisorStorage.ProcessRow({
    name,
    kind: "singleton",
    spec: "worker",
    args: '{"n":1}',
    restart: "permanent",
    epoch: 0,
    owner: null,
    incarnation: null,
    leaseExpires: 0,
    createdAt: 5
  })

type Backend = Effect.Effect<
  Layer.Layer<RegistryStorage.RegistryStorage | SupervisorStorage.SupervisorStorage>,
  never,
  import("effect/Scope").Scope
>

const memory: Backend = Effect.sync(() =>
  Layer.mergeAll(
    RegistryStorage.layerMemory(RegistryStorage.makeMemoryStore()),
    SupervisorStorage.layerMemory(SupervisorStorage.makeMemoryStore())
  ).pipe(Layer.provide(RunnerStorage.layerMemory))
)

const sqlBackend = (storage: SqlStorage.Storage): Backend =>
  Effect.gen(function* () {
    const sql = yield* SqlStorage.shared(SqlStorage.layerClient(storage)).pipe(Effect.orDie)
    const prefix = yield* freshPrefix(sql, "rs")
    return Layer.mergeAll(RegistryStorage.layerSql({ prefix }), SupervisorStorage.layerSql({ prefix })).pipe(
      Layer.provide(sql),
      Layer.orDie
    )
  })

const backends: ReadonlyArray<readonly [string, Backend, boolean]> = [
  ["memory", memory, true],
  ["sqlite", sqlBackend({ _tag: "sqlite", filename: ":memory:" }), true],
  ["postgres", sqlBackend({ _tag: "postgres", url: url ?? "" }), url !== undefined]
]

for (const [name, backend, enabled] of backends) {
  describe.skipIf(!enabled)(`registry and supervisor storage on ${name}`, () => {
    it.scopedLive("claims decide one winner per name, in batches, and report the holder to the losers", () =>
      Effect.gen(function* () {
        const layer = yield* backend
        yield* Effect.gen(function* () {
          const storage = yield* RegistryStorage.RegistryStorage
          const first = yield* storage.claim([
            entry("a", "n1", "c1"),
            entry("b", "n1", "c2", 1, { x: [1, "y"] })
          ])
          expect(first).toEqual([undefined, undefined])
          const second = yield* storage.claim([entry("a", "n2", "c3"), entry("c", "n2", "c4")])
          expect(second[0]?.claim).toBe("c1")
          expect(second[1]).toBeUndefined()
          // a claim of our own, already stored, reports itself
          expect((yield* storage.claim([entry("a", "n1", "c1")]))[0]?.claim).toBe("c1")
          const many = Array.from({ length: 1200 }, (_, i) => entry(`bulk-${i}`, "n3", `k${i}`))
          expect((yield* storage.claim(many)).every((result) => result === undefined)).toBe(true)
          const listed = yield* storage.list
          expect(listed.length).toBe(1203)
          expect(listed.find((e) => e.name === "b")?.metadata).toEqual({ x: [1, "y"] })
          expect(listed.find((e) => e.name === "b")?.address.toString()).toBe("n1:2")

          expect(
            yield* storage.update([entry("b", "n1", "c2", 1, { v: 2 }), entry("c", "n1", "wrong")])
          ).toEqual([true, false])
          yield* storage.release([
            { name: "a", claim: "not-the-claim" },
            { name: "c", claim: "c4" }
          ])
          const after = new Map((yield* storage.list).map((e) => [e.name, e]))
          expect(after.has("a")).toBe(true)
          expect(after.has("c")).toBe(false)
          expect(after.get("b")?.metadata).toEqual({ v: 2 })
          yield* storage.claim([entry("old", "n3", "o1", 0)])
          yield* storage.releaseNode(Node.nodeId("n3"), 0)
          expect((yield* storage.list).some((e) => e.name === "old")).toBe(false)
          expect((yield* storage.list).filter((e) => e.node === "n3").length).toBe(1200)
          // more claims than one statement takes
          yield* storage.release(many.slice(0, 1100).map((e) => ({ name: e.name, claim: e.claim })))
          expect((yield* storage.list).filter((e) => e.node === "n3").length).toBe(100)
          yield* storage.releaseNode(Node.nodeId("n3"), 1)
          expect((yield* storage.list).map((e) => e.name).sort()).toEqual(["a", "b"])
        }).pipe(Effect.provide(layer))
      })
    )

    it.scopedLive(
      "process rows: create once, acquire is a compare-and-set on the epoch, renew reports what is still owned",
      () =>
        Effect.gen(function* () {
          const layer = yield* backend
          yield* Effect.gen(function* () {
            const storage = yield* SupervisorStorage.SupervisorStorage
            expect(yield* storage.create(row("p"))).toEqual(Option.none())
            const existing = yield* storage.create(row("p"))
            expect(Option.getOrThrow(existing).args).toBe('{"n":1}')
            const owner = { node: "n1", incarnation: 7, leaseExpires: 1000 }
            const acquired = Option.getOrThrow(yield* storage.acquire("p", 0, owner))
            expect(acquired).toMatchObject({ epoch: 1, owner: "n1", incarnation: 7, leaseExpires: 1000 })
            expect(yield* storage.acquire("p", 0, { node: "n2", incarnation: 1, leaseExpires: 5 })).toEqual(
              Option.none()
            )
            const renewed = yield* storage.renew("n1", 7, 2000)
            expect(renewed.map((r) => [r.name, r.epoch, r.leaseExpires])).toEqual([["p", 1, 2000]])
            expect(yield* storage.renew("n1", 8, 3000)).toEqual([])
            const moved = Option.getOrThrow(
              yield* storage.acquire("p", 1, { node: "n2", incarnation: 3, leaseExpires: 9 })
            )
            expect(moved.epoch).toBe(2)
            expect(yield* storage.renew("n1", 7, 4000)).toEqual([])
            yield* storage.release("p", 1)
            expect(Option.getOrThrow(yield* storage.get("p")).owner).toBe("n2")
            yield* storage.release("p", 2)
            expect(Option.getOrThrow(yield* storage.get("p"))).toMatchObject({
              owner: null,
              incarnation: null,
              epoch: 2
            })
            expect(yield* storage.remove("p", 1)).toBe(false)
            expect(yield* storage.remove("p", 2)).toBe(true)
            expect(yield* storage.get("p")).toEqual(Option.none())
            expect(yield* storage.list).toEqual([])
          }).pipe(Effect.provide(layer))
        })
    )
  })
}
