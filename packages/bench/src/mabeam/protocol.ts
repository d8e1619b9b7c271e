/**
 * The commands the mabeam benchmark sends to its node processes (one JSON line on stdin each), the
 * prefix of their one-line replies on stdout, and the agent module every node declares.
 */
import * as Agent from "@foundation/mabeam/Agent"
import * as Effect from "effect/Effect"
import * as Schema from "effect/Schema"

/** The commands a worker takes on stdin. */
export const Command = Schema.Union(
  /** until every listed node is up in this node's membership view */
  Schema.TaggedStruct("AwaitMembers", { nodes: Schema.Array(Schema.String) }),
  /** registers and starts agents `bench-0` .. `bench-{count-1}`; the reply says where they run */
  Schema.TaggedStruct("Register", { count: Schema.Int }),
  /** `runs` sealed-bid second-price auctions among all agents, one after the other */
  Schema.TaggedStruct("Sealed", { runs: Schema.Int }),
  /** `runs` English auctions among all agents */
  Schema.TaggedStruct("English", { runs: Schema.Int }),
  /** `runs` majority votes among all agents */
  Schema.TaggedStruct("Consensus", { runs: Schema.Int })
)
export type Command = typeof Command.Type

/** One command line. */
export const Request = Schema.Struct({ id: Schema.Number, command: Command })

/** Agent i's valuation: a permutation of 100 .. 1099 over i = 0 .. 999 (7919 is prime to 1000). */
export const valuationOf = (index: number) => ((index * 7919) % 1000) + 100

/** English auctions start at 100 and rise by 50. */
export const english = { startingPrice: 100, increment: 50 } as const

/**
 * The benchmark's agent: bids its valuation (sealed), the minimum bid while it is at most its
 * valuation (English), and votes yes from a valuation of 500.
 */
export const BenchAgent = Agent.module("bench-agent", {
  args: Schema.Struct({ valuation: Schema.Number }),
  make: ({ valuation }) =>
    Effect.succeed({
      bid: (request) =>
        Effect.succeed(
          request.auctionType === "english"
            ? request.minimumBid! <= valuation
              ? Agent.bid(request.minimumBid!)
              : Agent.pass
            : Agent.bid(valuation)
        ),
      vote: () => Effect.succeed(Agent.ballot(valuation >= 500 ? "yes" : "no"))
    })
})
