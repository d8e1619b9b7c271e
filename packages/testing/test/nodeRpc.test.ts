import { describe, expect, it } from "@effect/vitest"
import * as Rpc from "@effect/rpc/Rpc"
import * as RpcGroup from "@effect/rpc/RpcGroup"
import * as Node from "@foundation/core/Node"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Cause from "effect/Cause"
import * as Layer from "effect/Layer"
import * as Schema from "effect/Schema"
import * as Stream from "effect/Stream"
import { TestCluster } from "@foundation/testing"

class Overdrawn extends Schema.TaggedError<Overdrawn>()("Overdrawn", { missing: Schema.Number }) {}

const Bank = RpcGroup.make(
  Rpc.make("Withdraw", {
    payload: { amount: Schema.Number, at: Schema.Date },
    success: Schema.Struct({ left: Schema.Number, at: Schema.Date }),
    error: Overdrawn
  }),
  Rpc.make("Statement", { payload: { lines: Schema.Int }, success: Schema.String, stream: true }),
  Rpc.make("Hang", { success: Schema.Void })
)

/** The same tag with another payload: what a peer running a different version would send. */
const OldBank = RpcGroup.make(Rpc.make("Withdraw", { payload: { amount: Schema.String } }))
const Unserved = RpcGroup.make(Rpc.make("Audit", { success: Schema.Void }))

const interrupted = Effect.runSync(Deferred.make<string>())

const BankLive = Node.layerServe(Bank).pipe(
  Layer.provide(
    Bank.toLayer(
      Effect.map(Node.Node, (node) =>
        Bank.of({
          Withdraw: ({ amount, at }) =>
            amount > 100
              ? Effect.fail(new Overdrawn({ missing: amount - 100 }))
              : Effect.succeed({ left: 100 - amount, at: new Date(at.getTime() + 1000) }),
          Statement: ({ lines }) =>
            Stream.range(1, lines).pipe(
              Stream.rechunk(1),
              Stream.map((line) => `${node.self.id} line ${line}`)
            ),
          Hang: () => Effect.never.pipe(Effect.onInterrupt(() => Deferred.succeed(interrupted, node.self.id)))
        })
      )
    )
  )
)

const bankOn = (cluster: TestCluster.Cluster, from: string, to: string) =>
  cluster.on(
    from,
    Effect.flatMap(Node.Node, (node) => node.clientFor(Bank)(Node.nodeId(to)))
  )

describe("node RPC (the fast path)", () => {
  it.scopedLive(
    "a group served on every node answers typed successes and typed errors, through its Schemas",
    () =>
      Effect.gen(function* () {
        const cluster = yield* TestCluster.make({ nodes: 2, layer: BankLive })
        yield* cluster.awaitConverged()
        const bank = yield* bankOn(cluster, "node-1", "node-2")
        const at = new Date("2026-01-01T00:00:00Z")
        const ok = yield* bank.Withdraw({ amount: 30, at })
        expect(ok.left).toBe(70)
        expect(ok.at).toBeInstanceOf(Date)
        expect(ok.at.getTime()).toBe(at.getTime() + 1000)
        const error = yield* Effect.flip(bank.Withdraw({ amount: 130, at }))
        expect(error).toBeInstanceOf(Overdrawn)
        expect(error).toMatchObject({ _tag: "Overdrawn", missing: 30 })
      })
  )

  it.scopedLive("a streaming reply arrives whole and in order, one acknowledged chunk at a time", () =>
    Effect.gen(function* () {
      const cluster = yield* TestCluster.make({ nodes: 2, layer: BankLive })
      yield* cluster.awaitConverged()
      const bank = yield* bankOn(cluster, "node-2", "node-1")
      const lines = yield* Stream.runCollect(bank.Statement({ lines: 50 }))
      expect(Array.from(lines)).toEqual(Array.from({ length: 50 }, (_, i) => `node-1 line ${i + 1}`))
      const firstThree = yield* Stream.runCollect(Stream.take(bank.Statement({ lines: 1000 }), 3))
      expect(firstThree.length).toBe(3)
    })
  )

  it.scopedLive("interrupting a call interrupts the handler on the remote node", () =>
    Effect.gen(function* () {
      const cluster = yield* TestCluster.make({ nodes: 2, layer: BankLive })
      yield* cluster.awaitConverged()
      const bank = yield* bankOn(cluster, "node-1", "node-2")
      const exit = yield* Effect.exit(Effect.timeout(bank.Hang(), "100 millis"))
      expect(Exit.isFailure(exit)).toBe(true)
      expect(yield* Effect.timeout(Deferred.await(interrupted), "2 seconds")).toBe("node-2")
    })
  )

  it.scopedLive(
    "a payload the server's Schema rejects, or an unknown tag, is a defect naming it; the link keeps serving",
    () =>
      Effect.gen(function* () {
        const cluster = yield* TestCluster.make({ nodes: 2, layer: BankLive })
        yield* cluster.awaitConverged()
        const defectOf = <A, E>(call: Effect.Effect<A, E>) =>
          Effect.map(Effect.exit(call), (exit) =>
            Exit.isFailure(exit) ? String(Cause.squash(exit.cause)) : "no defect"
          )
        const old = yield* cluster.on(
          "node-1",
          Effect.flatMap(Node.Node, (node) => node.clientFor(OldBank)(Node.nodeId("node-2")))
        )
        expect(yield* defectOf(old.Withdraw({ amount: "ten" }))).toContain("Invalid payload for Withdraw")
        const unserved = yield* cluster.on(
          "node-1",
          Effect.flatMap(Node.Node, (node) => node.clientFor(Unserved)(Node.nodeId("node-2")))
        )
        expect(yield* defectOf(unserved.Audit())).toContain("Unknown request tag: Audit")
        const bank = yield* bankOn(cluster, "node-1", "node-2")
        expect((yield* bank.Withdraw({ amount: 1, at: new Date() })).left).toBe(99)
      })
  )

  it.scopedLive("calls on another lane use their own connection and see the same handlers", () =>
    Effect.gen(function* () {
      const cluster = yield* TestCluster.make({ nodes: 2, layer: BankLive })
      yield* cluster.awaitConverged()
      const [control, bulk] = yield* cluster.on(
        "node-1",
        Effect.flatMap(Node.Node, (node) =>
          Effect.all([
            node.clientFor(Bank)(Node.nodeId("node-2")),
            node.clientFor(Bank, { lane: "bulk" })(Node.nodeId("node-2"))
          ])
        )
      )
      expect(control).not.toBe(bulk)
      const results = yield* Effect.all(
        [control.Withdraw({ amount: 5, at: new Date() }), bulk.Withdraw({ amount: 6, at: new Date() })],
        { concurrency: 2 }
      )
      expect(results.map((result) => result.left)).toEqual([95, 94])
    })
  )
})
