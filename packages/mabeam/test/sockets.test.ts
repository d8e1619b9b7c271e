import { describe, expect, it } from "@effect/vitest"
import * as Node from "@foundation/core/Node"
import * as Agent from "@foundation/mabeam/Agent"
import * as AgentRegistry from "@foundation/mabeam/AgentRegistry"
import * as Auction from "@foundation/mabeam/Auction"
import * as Consensus from "@foundation/mabeam/Consensus"
import * as Mabeam from "@foundation/mabeam/Mabeam"
import * as FoundationNode from "@foundation/node/FoundationNode"
import * as SocketTransport from "@foundation/node/SocketTransport"
import * as SqlStorage from "@foundation/node/SqlStorage"
import * as Effect from "effect/Effect"
import * as Schedule from "effect/Schedule"
import * as Schema from "effect/Schema"

const Bidder = Agent.module("bidder", {
  args: Schema.Struct({ valuation: Schema.Number }),
  make: ({ valuation }) =>
    Effect.succeed({
      bid: () => Effect.succeed(Agent.bid(valuation)),
      vote: () => Effect.succeed(Agent.ballot(valuation > 10 ? "yes" : "no"))
    })
})

describe("MABEAM over TCP", () => {
  it.scopedLive(
    "3 nodes on loopback sockets: agents on every node bid and vote through the node endpoints",
    () =>
      Effect.gen(function* () {
        const sql = yield* SqlStorage.shared(SqlStorage.layerClient({ _tag: "sqlite", filename: ":memory:" }))
        const ports = yield* SocketTransport.freePorts(6, "127.0.0.1")
        const nodes = yield* Effect.forEach([0, 1, 2], (i) =>
          FoundationNode.start(
            { id: `node-${i + 1}`, port: ports[i * 2], runnerPort: ports[i * 2 + 1], storage: sql },
            Mabeam.layer({ modules: [Bidder] })
          )
        )
        const [first, second, third] = nodes
        yield* first.run(
          Effect.flatMap(Node.Node, (node) =>
            node.members.pipe(
              Effect.repeat({
                until: (members) => members.length === 3 && members.every((member) => member.status === "up"),
                schedule: Schedule.spaced("50 millis")
              }),
              Effect.timeout("20 seconds")
            )
          )
        )
        const agents = Array.from({ length: 30 }, (_, i) => `bidder-${i}`)
        for (const [index, id] of agents.entries()) {
          yield* first.run(
            Mabeam.startCoordinationAgent(
              Bidder,
              { valuation: index + 1 },
              { name: id, timeout: "20 seconds" }
            )
          )
        }
        const placed = yield* second.run(
          Effect.flatMap(AgentRegistry.AgentRegistry, (registry) => registry.list)
        )
        expect(new Set(placed.map((info) => info.node))).toEqual(new Set(["node-1", "node-2", "node-3"]))

        const auction = yield* third.run(Auction.sealedBid({ agents, paymentRule: "second-price" }))
        expect(auction).toMatchObject({ winner: "bidder-29", payment: 29 })
        expect(auction.bids.every((record) => record.outcome._tag === "Valid")).toBe(true)
        const vote = yield* second.run(Consensus.run({ agents, proposal: "go" }))
        // valuations 11..30 vote yes: 20 of 30
        expect(vote).toMatchObject({ decision: "yes", confidence: 20 / 30 })
      })
  )
})
