/**
 * The demo's MABEAM step: a small agent market across the nodes. Nine traders are started from
 * the first node (`Mabeam.startCoordinationAgent`) and placed by the engine; the second node runs a
 * sealed-bid second-price auction among them (`Auction.sealedBid`); the third runs a majority vote
 * (`Consensus.run`). It prints where each agent runs, every bid, the winner and what it pays, and
 * the tally.
 *
 * Wiring: add `layer` to each node's application layer (it needs the node's `Sharding` and
 * `Node.Node`), then run `run` with the running nodes (`FoundationNode.RunningNode`s), all up:
 * ```ts
 * FoundationNode.start(options, Layer.merge(Sample.layer(report), MabeamDemo.layer))
 * yield* MabeamDemo.run(nodes)
 * ```
 */
import * as Agent from "@foundation/mabeam/Agent"
import * as Auction from "@foundation/mabeam/Auction"
import * as Consensus from "@foundation/mabeam/Consensus"
import * as Mabeam from "@foundation/mabeam/Mabeam"
import type * as Node from "@foundation/core/Node"
import * as Console from "effect/Console"
import * as Effect from "effect/Effect"
import * as Schema from "effect/Schema"
import * as Table from "../internal/table.js"

/**
 * A trader: bids its valuation for the GPUs on sale, and votes for adding a node when its
 * valuation is at least 50, with a confidence that grows with it.
 */
export const Trader = Agent.module("demo-trader", {
  args: Schema.Struct({ valuation: Schema.Number }),
  make: ({ valuation }) =>
    Effect.succeed({
      bid: () => Effect.succeed(Agent.bid(valuation)),
      vote: () =>
        Effect.succeed(
          valuation >= 50 ? Agent.ballot("yes", Math.min(1, valuation / 100)) : Agent.ballot("no", 0.8)
        ),
      status: Effect.succeed({ load: 0, detail: { valuation } })
    })
})

/** What each node needs for this step. */
export const layer = Mabeam.layer({ modules: [Trader] })

/** The services `layer` provides. */
export type Services = Mabeam.Services

/** A running node with `layer` in its application: a `FoundationNode.RunningNode` fits. */
export interface DemoNode {
  readonly info: Node.NodeInfo
  readonly run: <X, E>(effect: Effect.Effect<X, E, Services>) => Effect.Effect<X, E>
}

/** A part of the step failed; `step` says which. */
export class MabeamDemoError extends Schema.TaggedError<MabeamDemoError>()("MabeamDemoError", {
  step: Schema.String,
  detail: Schema.String
}) {
  get message(): string {
    return `The MABEAM demo failed at "${this.step}": ${this.detail}`
  }
}

/** What the step observed. */
export interface Report {
  /** agent id to the node it runs on */
  readonly placement: Record<string, string>
  readonly auction: Auction.AuctionResult
  readonly vote: Consensus.ConsensusResult
}

const traders: ReadonlyArray<readonly [string, number]> = [
  ["ada", 42],
  ["bob", 87],
  ["cyd", 55],
  ["dee", 91],
  ["eve", 30],
  ["fay", 64],
  ["gus", 12],
  ["hal", 76],
  ["ivy", 49]
]

/** Runs the step on the given nodes (at least one). */
export const run = (nodes: ReadonlyArray<DemoNode>): Effect.Effect<Report, MabeamDemoError> =>
  Effect.gen(function* () {
    const on = (index: number) => nodes[index % nodes.length]
    const fail = (step: string) => (error: { readonly message: string }) =>
      new MabeamDemoError({ step, detail: error.message })
    yield* Console.log(`\nMABEAM: an agent market of ${traders.length} traders across ${nodes.length} nodes`)

    const placement: Record<string, string> = {}
    for (const [name, valuation] of traders) {
      const info = yield* on(0)
        .run(
          Mabeam.startCoordinationAgent(
            Trader,
            { valuation },
            {
              name,
              capabilities: ["auction_bidding", "consensus_voting"],
              protocols: ["sealed_bid_auction"]
            }
          )
        )
        .pipe(Effect.mapError(fail(`start ${name}`)))
      placement[name] = info.node ?? "?"
    }
    const agents = traders.map(([name]) => name)
    yield* Console.log(
      `\nStarted from ${on(0).info.id}; the engine placed each agent by its shard\n` +
        Table.render(
          ["agent", "valuation", "runs on"],
          traders.map(([name, valuation]) => [name, String(valuation), placement[name]])
        )
    )

    const auction = yield* on(1)
      .run(
        Auction.sealedBid({
          agents,
          resources: { gpus: 8 },
          paymentRule: "second-price",
          timeout: "2 seconds"
        })
      )
      .pipe(Effect.mapError(fail("auction")))
    yield* Console.log(
      `\nSealed-bid auction for 8 GPUs, second price, run from ${on(1).info.id}\n` +
        Table.render(
          ["agent", "on", "bid"],
          auction.bids.map((record) => [
            record.agent,
            placement[record.agent],
            record.outcome._tag === "Valid" ? String(record.outcome.amount) : record.outcome._tag
          ])
        ) +
        `\n  winner: ${auction.winner} (on ${placement[auction.winner]}), pays ${auction.payment}, the second-highest bid`
    )

    const vote = yield* on(2)
      .run(
        Consensus.run({
          agents,
          proposal: { action: "add a fourth node" },
          rule: Consensus.majority,
          timeout: "2 seconds"
        })
      )
      .pipe(Effect.mapError(fail("vote")))
    yield* Console.log(
      `\nMajority vote on "add a fourth node", run from ${on(2).info.id}\n` +
        Table.render(
          ["choice", "ballots"],
          Object.entries(vote.tally).map(([choice, { votes }]) => [choice, String(votes)])
        ) +
        `\n  decision: ${vote.decision}, confidence ${vote.confidence.toFixed(2)} ` +
        `(support weighted by each voter's confidence, over all ${agents.length} voters)`
    )
    return { placement, auction, vote }
  })
