/**
 * The behaviour every node RPC transport must show, as a suite run on two nodes: over the in-memory
 * TestCluster network (`nodeRpc.test.ts`) and over real sockets (`packages/node/test/nodeRpc.test.ts`,
 * where the transport's direct hooks take the calls).
 */
import { expect, it } from "@effect/vitest"
import * as Rpc from "@effect/rpc/Rpc"
import type * as RpcClient from "@effect/rpc/RpcClient"
import { RpcClientError } from "@effect/rpc/RpcClientError"
import * as RpcGroup from "@effect/rpc/RpcGroup"
import * as Node from "@foundation/core/Node"
import * as Cause from "effect/Cause"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Layer from "effect/Layer"
import * as Mailbox from "effect/Mailbox"
import * as Schema from "effect/Schema"
import type * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"

export class Overdrawn extends Schema.TaggedError<Overdrawn>()("Overdrawn", { missing: Schema.Number }) {}

export const Bank = RpcGroup.make(
  Rpc.make("Withdraw", {
    payload: { amount: Schema.Number, at: Schema.Date },
    success: Schema.Struct({ left: Schema.Number, at: Schema.Date }),
    error: Overdrawn
  }),
  Rpc.make("Statement", { payload: { lines: Schema.Int }, success: Schema.String, stream: true }),
  /** a stream answered with an `Effect` of a `Mailbox`, as the engine's runner handlers do */
  Rpc.make("Tail", { payload: { lines: Schema.Int }, success: Schema.Int, stream: true }),
  Rpc.make("Hang", { success: Schema.Void }),
  /** bulk bytes in a request (the socket transport writes them without a copy) */
  Rpc.make("Deposit", {
    payload: { note: Schema.String, bytes: Schema.Uint8ArrayFromSelf, memo: Schema.String },
    success: Schema.Struct({ note: Schema.String, length: Schema.Int, sum: Schema.Int, memo: Schema.String })
  })
)

/** The same tag with another payload: what a peer running a different version would send. */
const OldBank = RpcGroup.make(Rpc.make("Withdraw", { payload: { amount: Schema.String } }))
const Unserved = RpcGroup.make(Rpc.make("Audit", { success: Schema.Void }))

const checksum = (bytes: Uint8Array) =>
  bytes.reduce((sum, byte, index) => (sum + byte * (index + 1)) % 1_000_003, 0)

/** Completed with the node id of the first `Hang` handler that was interrupted. */
export const interrupted = Effect.runSync(Deferred.make<string>())

/** Serves `Bank` on the node endpoint. */
export const BankLive = Node.layerServe(Bank).pipe(
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
          Tail: ({ lines }) =>
            Effect.gen(function* () {
              const mailbox = yield* Mailbox.make<number>()
              yield* mailbox.offerAll(Array.from({ length: lines }, (_, i) => i + 1))
              yield* mailbox.end
              return mailbox
            }),
          Hang: () =>
            Effect.never.pipe(Effect.onInterrupt(() => Deferred.succeed(interrupted, node.self.id))),
          Deposit: ({ note, bytes, memo }) =>
            Effect.succeed({ note, length: bytes.length, sum: checksum(bytes), memo })
        })
      )
    )
  )
)

/** Two running nodes, `node-1` and `node-2`, both serving `BankLive`. */
export interface Pair {
  /** a client, on node `from`, of `group` as served by the other node */
  readonly clientFor: <Rpcs extends Rpc.Any>(
    group: RpcGroup.RpcGroup<Rpcs>,
    from: "node-1" | "node-2",
    options?: { readonly lane?: string }
  ) => Effect.Effect<RpcClient.RpcClient<Rpcs, RpcClientError>>
  /** stops `node-2` abruptly */
  readonly crashSecond: Effect.Effect<void>
}

const defectOf = <A, E>(call: Effect.Effect<A, E>) =>
  Effect.map(Effect.exit(call), (exit) =>
    Exit.isFailure(exit) ? String(Cause.squash(exit.cause)) : "no defect"
  )

/** Registers the suite's tests; `start` builds a fresh pair in the test's scope. */
export const nodeRpcContract = (start: Effect.Effect<Pair, unknown, Scope.Scope>) => {
  it.scopedLive(
    "a group served on every node answers typed successes and typed errors, through its Schemas",
    () =>
      Effect.gen(function* () {
        const pair = yield* start
        const bank = yield* pair.clientFor(Bank, "node-1")
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

  it.scopedLive("2,000 concurrent calls each get their own answer", () =>
    Effect.gen(function* () {
      const pair = yield* start
      const bank = yield* pair.clientFor(Bank, "node-1")
      const at = new Date(0)
      const amounts = Array.from({ length: 2000 }, (_, i) => i % 120)
      const results = yield* Effect.forEach(
        amounts,
        (amount) => Effect.either(bank.Withdraw({ amount, at })),
        {
          concurrency: "unbounded"
        }
      )
      results.forEach((result, i) => {
        const amount = amounts[i]!
        if (amount > 100) expect(result).toMatchObject({ _tag: "Left", left: { missing: amount - 100 } })
        else expect(result).toMatchObject({ _tag: "Right", right: { left: 100 - amount } })
      })
    })
  )

  it.scopedLive("requests carrying bulk bytes arrive intact, interleaved with small calls", () =>
    Effect.gen(function* () {
      const pair = yield* start
      const bank = yield* pair.clientFor(Bank, "node-1")
      const sizes = [0, 100, 16 * 1024 - 1, 16 * 1024, 64 * 1024 + 3, 1024 * 1024]
      const deposits = sizes.map((size, i) => ({
        note: `deposit ${i}`,
        bytes: Uint8Array.from({ length: size }, (_, j) => (j * 31 + i) % 251),
        memo: "é".repeat(i)
      }))
      const answers = yield* Effect.all(
        deposits.flatMap((deposit) => [
          Effect.map(bank.Deposit(deposit), (answer) => ({ answer, deposit })),
          Effect.map(bank.Withdraw({ amount: 1, at: new Date(0) }), () => undefined)
        ]),
        { concurrency: "unbounded" }
      )
      for (const entry of answers) {
        if (entry === undefined) continue
        const { answer, deposit } = entry
        expect(answer).toEqual({
          note: deposit.note,
          length: deposit.bytes.length,
          sum: checksum(deposit.bytes),
          memo: deposit.memo
        })
      }
    })
  )

  it.scopedLive("a streaming reply arrives whole and in order, one acknowledged chunk at a time", () =>
    Effect.gen(function* () {
      const pair = yield* start
      const bank = yield* pair.clientFor(Bank, "node-2")
      const lines = yield* Stream.runCollect(bank.Statement({ lines: 50 }))
      expect(Array.from(lines)).toEqual(Array.from({ length: 50 }, (_, i) => `node-1 line ${i + 1}`))
      const firstThree = yield* Stream.runCollect(Stream.take(bank.Statement({ lines: 1000 }), 3))
      expect(firstThree.length).toBe(3)
      const tail = yield* Stream.runCollect(bank.Tail({ lines: 40 }))
      expect(Array.from(tail)).toEqual(Array.from({ length: 40 }, (_, i) => i + 1))
    })
  )

  it.scopedLive("interrupting a call interrupts the handler on the remote node", () =>
    Effect.gen(function* () {
      const pair = yield* start
      const bank = yield* pair.clientFor(Bank, "node-1")
      const exit = yield* Effect.exit(Effect.timeout(bank.Hang(), "100 millis"))
      expect(Exit.isFailure(exit)).toBe(true)
      expect(yield* Effect.timeout(Deferred.await(interrupted), "2 seconds")).toBe("node-2")
    })
  )

  it.scopedLive(
    "a payload the server's Schema rejects, or an unknown tag, is a defect naming it; the link keeps serving",
    () =>
      Effect.gen(function* () {
        const pair = yield* start
        const old = yield* pair.clientFor(OldBank, "node-1")
        expect(yield* defectOf(old.Withdraw({ amount: "ten" }))).toContain("Invalid payload for Withdraw")
        const unserved = yield* pair.clientFor(Unserved, "node-1")
        expect(yield* defectOf(unserved.Audit())).toContain("Unknown request tag: Audit")
        const bank = yield* pair.clientFor(Bank, "node-1")
        expect((yield* bank.Withdraw({ amount: 1, at: new Date() })).left).toBe(99)
      })
  )

  it.scopedLive("calls on another lane use their own connection and see the same handlers", () =>
    Effect.gen(function* () {
      const pair = yield* start
      const control = yield* pair.clientFor(Bank, "node-1")
      const bulk = yield* pair.clientFor(Bank, "node-1", { lane: "bulk" })
      expect(control).not.toBe(bulk)
      const results = yield* Effect.all(
        [control.Withdraw({ amount: 5, at: new Date() }), bulk.Withdraw({ amount: 6, at: new Date() })],
        { concurrency: 2 }
      )
      expect(results.map((result) => result.left)).toEqual([95, 94])
    })
  )

  it.scopedLive("calls waiting on a peer that dies fail with RpcClientError instead of hanging", () =>
    Effect.gen(function* () {
      const pair = yield* start
      const bank = yield* pair.clientFor(Bank, "node-1")
      const waiting = yield* Effect.fork(Effect.all([bank.Hang(), bank.Hang()], { concurrency: 2 }))
      yield* Effect.sleep("100 millis")
      yield* pair.crashSecond
      const error = yield* Effect.flip(
        Effect.timeoutFail(waiting.await.pipe(Effect.flatten), {
          duration: "10 seconds",
          onTimeout: () => new Error("the calls still wait 10 s after the peer died")
        })
      )
      expect(error).toBeInstanceOf(RpcClientError)
    })
  )
}
