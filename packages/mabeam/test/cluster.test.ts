import * as EntityId from "@effect/cluster/EntityId"
import { Sharding } from "@effect/cluster/Sharding"
import { describe, expect, it } from "@effect/vitest"
import * as Agent from "@foundation/mabeam/Agent"
import * as AgentCalls from "@foundation/mabeam/AgentCalls"
import * as AgentRegistry from "@foundation/mabeam/AgentRegistry"
import * as Auction from "@foundation/mabeam/Auction"
import * as Consensus from "@foundation/mabeam/Consensus"
import * as Mabeam from "@foundation/mabeam/Mabeam"
import * as Negotiation from "@foundation/mabeam/Negotiation"
import { TestCluster } from "@foundation/testing"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as Option from "effect/Option"
import * as Schema from "effect/Schema"

/**
 * A trader bids its valuation (sealed), the minimum bid while it can afford it (English), votes yes
 * from a valuation of 50, and reports its valuation as its load. On the node named `slowOn` it takes
 * 2 s to bid (and would bid 10000), so a crash of that node catches its bids in flight.
 */
const Trader = Agent.module("trader", {
  args: Schema.Struct({ valuation: Schema.Number, slowOn: Schema.optional(Schema.String) }),
  make: ({ slowOn, valuation }, context) =>
    Effect.succeed({
      bid: (request) =>
        context.node === slowOn
          ? Effect.as(Effect.sleep("2 seconds"), Agent.bid(10_000))
          : request.auctionType === "english"
            ? Effect.succeed(request.minimumBid! <= valuation ? Agent.bid(request.minimumBid!) : Agent.pass)
            : Effect.succeed(Agent.bid(valuation)),
      vote: () => Effect.succeed(Agent.ballot(valuation >= 50 ? "yes" : "no")),
      status: Effect.succeed({ load: valuation, detail: { node: context.node } })
    })
})

const Terms = Schema.Struct({ price: Schema.Number })
const priceOf = (terms: unknown) => Schema.decodeUnknownSync(Terms)(terms).price

/** Concedes 5 per round from 100 down to `floor`; accepts any price at least its current aspiration. */
const Seller = Agent.module("seller", {
  args: Schema.Struct({ floor: Schema.Number }),
  make: ({ floor }) => {
    const aspiration = (round: number) => Math.max(floor, 100 - 5 * (round - 1))
    return Effect.succeed({
      offer: ({ round }) =>
        Effect.succeed(Agent.proposal({ price: aspiration(round) }, aspiration(round) - floor)),
      respond: ({ round, terms }) =>
        Effect.succeed(
          priceOf(terms) >= aspiration(round) ? Agent.accept(priceOf(terms) - floor) : Agent.reject()
        )
    })
  }
})

/** Concedes 5 per round from 40 up to `ceiling`. */
const Buyer = Agent.module("buyer", {
  args: Schema.Struct({ ceiling: Schema.Number }),
  make: ({ ceiling }) => {
    const aspiration = (round: number) => Math.min(ceiling, 40 + 5 * (round - 1))
    return Effect.succeed({
      offer: ({ round }) =>
        Effect.succeed(Agent.proposal({ price: aspiration(round) }, ceiling - aspiration(round))),
      respond: ({ round, terms }) =>
        Effect.succeed(
          priceOf(terms) <= aspiration(round) ? Agent.accept(ceiling - priceOf(terms)) : Agent.reject()
        )
    })
  }
})

const AppLayer = Mabeam.layer({ modules: [Trader, Seller, Buyer], loadInterval: "100 millis" })

type Cluster = TestCluster.Cluster<Mabeam.Services>
const nodes = ["node-1", "node-2", "node-3"] as const

/** The node whose runner owns the shard of entity `id`. */
const ownerOf = (cluster: Cluster, id: string) =>
  Effect.gen(function* () {
    for (const node of yield* cluster.running) {
      const owns = yield* cluster.on(
        node,
        Effect.map(Sharding, (sharding) =>
          sharding.hasShardId(sharding.getShardId(EntityId.make(id), "default"))
        )
      )
      if (owns) return node
    }
    return yield* Effect.dieMessage(`no running node owns the shard of ${id}`)
  })

/** `perNode` ids `${prefix}-0`, `${prefix}-1`, ... whose entities the engine places on each node. */
const idsByNode = (cluster: Cluster, prefix: string, perNode: number) =>
  Effect.gen(function* () {
    const picked: Record<string, Array<string>> = { "node-1": [], "node-2": [], "node-3": [] }
    for (let index = 0; Object.values(picked).some((ids) => ids.length < perNode); index++) {
      if (index > 1000) return yield* Effect.dieMessage("could not place ids on every node")
      const id = `${prefix}-${index}`
      const owner = yield* ownerOf(cluster, id)
      if (picked[owner].length < perNode) picked[owner].push(id)
    }
    return picked
  })

const registry = AgentRegistry.AgentRegistry

const converged = Effect.gen(function* () {
  const cluster = yield* TestCluster.make({ nodes: 3, layer: AppLayer })
  yield* cluster.awaitConverged()
  return cluster
})

describe("MABEAM on a 3-node cluster", () => {
  it.scopedLive(
    "agents started from one node run where the engine places them, and every node's registry sees them there",
    () =>
      Effect.gen(function* () {
        const cluster = yield* converged
        const placed = yield* idsByNode(cluster, "trader", 3)
        const all = nodes.flatMap((node) => placed[node])
        const valuation = (id: string) => 10 * (all.indexOf(id) + 1)
        for (const [index, id] of all.entries()) {
          const info = yield* cluster.on(
            "node-1",
            Mabeam.startCoordinationAgent(
              Trader,
              { valuation: valuation(id) },
              {
                name: id,
                capabilities: index % 2 === 0 ? ["bidding", "gpu"] : ["bidding"],
                protocols: ["sealed_bid_auction"],
                resources: { memoryMb: 64 }
              }
            )
          )
          expect(info).toMatchObject({ id, node: yield* ownerOf(cluster, id), health: "healthy" })
          // read-your-writes: the other nodes have it when the call returns
          const seen = yield* cluster.on(
            "node-3",
            Effect.flatMap(registry, (r) => r.lookup(id))
          )
          expect(Option.isSome(seen)).toBe(true)
        }
        for (const viewer of nodes) {
          const list = yield* cluster.on(
            viewer,
            Effect.flatMap(registry, (r) => r.list)
          )
          expect(list.map((info) => info.id)).toEqual([...all].sort())
          for (const node of nodes) {
            const here = list.filter((info) => info.node === node).map((info) => info.id)
            expect(here.sort()).toEqual([...placed[node]].sort())
          }
          expect(list.every((info) => info.health === "healthy")).toBe(true)
        }
        const gpu = yield* cluster.on(
          "node-2",
          Effect.flatMap(registry, (r) => r.findByCapabilities(["bidding", "gpu"]))
        )
        expect(gpu.map((info) => info.id)).toEqual(all.filter((_, index) => index % 2 === 0).sort())
        const onThree = yield* cluster.on(
          "node-2",
          Effect.flatMap(registry, (r) => r.byNode("node-3"))
        )
        expect(onThree.map((info) => info.id).sort()).toEqual([...placed["node-3"]].sort())

        // the raw entity call reaches the same agent the registry locates
        const status = yield* cluster.on(
          "node-2",
          Effect.flatMap(Agent.AgentEntity.client, (client) => client(placed["node-3"][0]).Status())
        )
        expect(status).toMatchObject({ node: "node-3", module: "trader", detail: { node: "node-3" } })

        // loads are published by each node; the least loaded are the lowest valuations
        yield* cluster.eventually(
          Effect.gen(function* () {
            const least = yield* cluster.on(
              "node-1",
              Effect.flatMap(registry, (r) => r.leastLoaded(2))
            )
            expect(least.map((info) => [info.id, info.load])).toEqual([
              [all[0], 10],
              [all[1], 20]
            ])
          }),
          { timeout: "5 seconds" }
        )

        // bad input is typed
        const again = yield* cluster.on(
          "node-2",
          Effect.flip(Mabeam.startCoordinationAgent(Trader, { valuation: 1 }, { name: all[0] }))
        )
        expect(again).toMatchObject({ _tag: "AgentAlreadyRegistered", agent: all[0] })
        const badArgs = yield* cluster.on(
          "node-2",
          Effect.flatMap(registry, (r) =>
            Effect.flip(r.register({ id: "bad", module: "trader", args: { valuation: "high" } }))
          )
        )
        expect(badArgs._tag).toBe("InvalidAgentSpec")
        const noModule = yield* cluster.on(
          "node-2",
          Effect.flatMap(registry, (r) => Effect.flip(r.register({ id: "x", module: "nobody", args: {} })))
        )
        expect(noModule).toMatchObject({ _tag: "UnknownModule", known: ["trader", "seller", "buyer"] })

        // deregistered on one node: gone everywhere, and its entity answers UnknownAgent
        const gone = placed["node-1"][0]
        expect(
          yield* cluster.on(
            "node-2",
            Effect.flatMap(registry, (r) => r.deregister(gone))
          )
        ).toBe(true)
        expect(
          Option.isNone(
            yield* cluster.on(
              "node-1",
              Effect.flatMap(registry, (r) => r.lookup(gone))
            )
          )
        ).toBe(true)
        const unknown = yield* cluster.on(
          "node-3",
          Effect.flip(Auction.sealedBid({ agents: [gone, all[1]] }))
        )
        expect(unknown).toMatchObject({ _tag: "UnknownAgents", agents: [gone] })
        const raw = yield* cluster.on(
          "node-3",
          Effect.flatMap(Agent.AgentEntity.client, (client) => Effect.flip(client(gone).Status()))
        )
        expect(raw).toMatchObject({ _tag: "UnknownAgent", agent: gone })
      })
  )

  it.scopedLive("auctions, votes and negotiations run from any node over agents on all three", () =>
    Effect.gen(function* () {
      const cluster = yield* converged
      const placed = yield* idsByNode(cluster, "trader", 3)
      const all = nodes.flatMap((node) => placed[node])
      // valuations 10, 20, ... 90 in node order: node-3 holds the three highest
      for (const [index, id] of all.entries()) {
        yield* cluster.on(
          "node-1",
          Mabeam.startCoordinationAgent(Trader, { valuation: 10 * (index + 1) }, { name: id })
        )
      }
      const sealed = yield* cluster.on(
        "node-2",
        Auction.sealedBid({ agents: all, resources: { gpus: 2 }, paymentRule: "second-price" })
      )
      expect(sealed).toMatchObject({ winner: all[8], payment: 80, allocation: { agent: all[8] } })
      expect(sealed.bids.every((record) => record.outcome._tag === "Valid")).toBe(true)

      const english = yield* cluster.on(
        "node-1",
        Auction.english({ agents: all, startingPrice: 10, increment: 5 })
      )
      expect(english.winner).toBe(all[8])
      expect(english.payment).toBeGreaterThanOrEqual(80)
      expect(english.payment).toBeLessThanOrEqual(90)

      const allocated = yield* cluster.on("node-3", Mabeam.coordinateResourceAllocation(all, { cpu: 8 }))
      expect(allocated).toMatchObject({ winner: all[8], payment: 80 })

      // yes from a valuation of 50: 5 of 9
      const vote = yield* cluster.on("node-3", Mabeam.coordinateConsensus(all, { scale: "up" }))
      expect(vote).toMatchObject({ decision: "yes", reached: true, confidence: 5 / 9, abstained: [] })
      const strict = yield* cluster.on(
        "node-1",
        Effect.flip(Consensus.run({ agents: all, proposal: null, rule: Consensus.supermajority() }))
      )
      expect(strict).toMatchObject({ _tag: "NoDecision", reason: "below-threshold" })

      // a seller on node-1 and a buyer on node-3 negotiate, driven from node-2
      const sellers = yield* idsByNode(cluster, "seller", 1)
      const buyers = yield* idsByNode(cluster, "buyer", 1)
      const [seller] = sellers["node-1"]
      const [buyer] = buyers["node-3"]
      yield* cluster.on("node-2", Mabeam.startCoordinationAgent(Seller, { floor: 60 }, { name: seller }))
      yield* cluster.on("node-2", Mabeam.startCoordinationAgent(Buyer, { ceiling: 80 }, { name: buyer }))
      const agreement = yield* cluster.on(
        "node-2",
        Negotiation.run({ parties: [seller, buyer], terms: Terms, topic: "gpu-hours" })
      )
      expect(agreement).toMatchObject({
        round: 7,
        terms: { price: 70 },
        utilities: { [seller]: 10, [buyer]: 10 }
      })
    })
  )

  it.scopedLive(
    "a node crashing mid-auction: its agents count as non-responders, the auction completes within its timeout, they restart on survivors, and move back when it returns",
    () =>
      Effect.gen(function* () {
        const cluster = yield* converged
        const placed = yield* idsByNode(cluster, "trader", 3)
        const temporary = (yield* idsByNode(cluster, "temp", 1))["node-3"][0]
        const all = nodes.flatMap((node) => placed[node])
        const valuation = (id: string) => [35, 80, 20, 55, 10, 60, 90, 70, 40][all.indexOf(id)]
        for (const id of all) {
          yield* cluster.on(
            "node-1",
            Mabeam.startCoordinationAgent(
              Trader,
              { valuation: valuation(id), slowOn: "node-3" },
              { name: id }
            )
          )
        }
        yield* cluster.on(
          "node-1",
          Mabeam.startCoordinationAgent(Trader, { valuation: 1 }, { name: temporary, restart: "temporary" })
        )
        // survivors' valuations: node-1 35, 80, 20 and node-2 55, 10, 60: 80 wins and pays 60
        const startedAt = Date.now()
        const auction = yield* cluster
          .on("node-1", Auction.sealedBid({ agents: all, paymentRule: "second-price", timeout: "4 seconds" }))
          .pipe(Effect.fork)
        yield* Effect.sleep("300 millis")
        yield* cluster.crash("node-3")
        const result = yield* Fiber.join(auction)
        const elapsed = Date.now() - startedAt
        expect(elapsed).toBeLessThan(4000)
        expect(result).toMatchObject({ winner: placed["node-1"][1], payment: 60 })
        for (const record of result.bids) {
          if (placed["node-3"].includes(record.agent)) {
            expect(record.outcome).toMatchObject({ _tag: "NoAnswer", reason: "unreachable" })
          } else {
            expect(record.outcome).toEqual({ _tag: "Valid", amount: valuation(record.agent) })
          }
        }

        // the survivors show the temporary agent unhealthy and start the permanent ones again
        yield* cluster.eventually(
          Effect.gen(function* () {
            const info = yield* cluster.on(
              "node-2",
              Effect.flatMap(registry, (r) => r.lookup(temporary))
            )
            expect(Option.getOrThrow(info)).toMatchObject({ health: "unhealthy", node: "node-3" })
            expect(Option.getOrThrow(info).healthReason).toContain("node-3 is down")
            for (const id of placed["node-3"]) {
              const moved = Option.getOrThrow(
                yield* cluster.on(
                  "node-1",
                  Effect.flatMap(registry, (r) => r.lookup(id))
                )
              )
              expect(moved.health).toBe("healthy")
              expect(["node-1", "node-2"]).toContain(moved.node)
            }
          }),
          { timeout: "10 seconds" }
        )

        // now everyone answers, from their new nodes: 90 (formerly on node-3) wins and pays 80
        const after = yield* cluster.on(
          "node-2",
          Auction.sealedBid({ agents: all, paymentRule: "second-price", timeout: "4 seconds" })
        )
        expect(after).toMatchObject({ winner: placed["node-3"][0], payment: 80 })
        expect(after.bids.every((record) => record.outcome._tag === "Valid")).toBe(true)

        // a restarted node-3 gets the whole registry from its peers
        yield* cluster.restart("node-3")
        yield* cluster.eventually(
          Effect.gen(function* () {
            const list = yield* cluster.on(
              "node-3",
              Effect.flatMap(registry, (r) => r.list)
            )
            expect(list.map((info) => info.id).sort()).toEqual([...all, temporary].sort())
          }),
          { timeout: "10 seconds" }
        )
        // its shards come back to it, and the agents that moved are started there again at once
        yield* cluster.awaitConverged()
        yield* cluster.eventually(
          Effect.gen(function* () {
            for (const id of all) {
              const info = Option.getOrThrow(
                yield* cluster.on(
                  "node-2",
                  Effect.flatMap(registry, (r) => r.lookup(id))
                )
              )
              expect([id, info.health, info.node]).toEqual([id, "healthy", yield* ownerOf(cluster, id)])
            }
            expect(
              (yield* cluster.on(
                "node-1",
                Effect.flatMap(registry, (r) => r.byNode("node-3"))
              ))
                .map((i) => i.id)
                .sort()
            ).toEqual([...placed["node-3"]].sort())
          }),
          { timeout: "10 seconds" }
        )
      })
  )

  it.scopedLive("a node leaving gracefully: its agents run again on the others and answer", () =>
    Effect.gen(function* () {
      const cluster = yield* converged
      const placed = yield* idsByNode(cluster, "trader", 2)
      const all = nodes.flatMap((node) => placed[node])
      for (const [index, id] of all.entries()) {
        yield* cluster.on(
          "node-1",
          Mabeam.startCoordinationAgent(Trader, { valuation: index + 1 }, { name: id })
        )
      }
      yield* cluster.stop("node-2")
      yield* cluster.eventually(
        Effect.gen(function* () {
          const list = yield* cluster.on(
            "node-3",
            Effect.flatMap(registry, (r) => r.list)
          )
          expect(list.map((info) => [info.id, info.health])).toEqual(
            [...all].sort().map((id) => [id, "healthy"])
          )
          expect(list.every((info) => info.node === "node-1" || info.node === "node-3")).toBe(true)
        }),
        { timeout: "10 seconds" }
      )
      const auction = yield* cluster.on(
        "node-3",
        Auction.sealedBid({ agents: all, paymentRule: "first-price" })
      )
      expect(auction).toMatchObject({ winner: all[5], payment: 6 })
      expect(auction.bids.every((record) => record.outcome._tag === "Valid")).toBe(true)
    })
  )

  it.scopedLive("an agent whose location is unknown is reached through the engine, which starts it", () =>
    Effect.gen(function* () {
      const cluster = yield* converged
      const placed = yield* idsByNode(cluster, "lazy", 1)
      const ids = nodes.map((node) => placed[node][0])
      for (const [index, id] of ids.entries()) {
        // registered only: nothing runs until the first call
        yield* cluster.on(
          "node-2",
          Effect.flatMap(registry, (r) => r.register({ id, module: Trader, args: { valuation: index + 1 } }))
        )
      }
      const view = Effect.map(
        cluster.on(
          "node-1",
          Effect.flatMap(registry, (r) => r.list)
        ),
        (list) => Object.fromEntries(list.map((info) => [info.id, [info.health, info.node]]))
      )
      expect(yield* view).toEqual(Object.fromEntries(ids.map((id) => [id, ["starting", undefined]])))
      const answers = yield* cluster.on(
        "node-1",
        Effect.flatMap(AgentCalls.AgentCalls, (calls) =>
          calls.ask(ids, { _tag: "Status" }, { timeout: "5 seconds" })
        )
      )
      expect(answers.map((answer) => (answer._tag === "Answered" ? answer.reply : answer))).toMatchObject(
        nodes.map((node) => ({ _tag: "Status", node }))
      )
      expect(yield* view).toEqual(
        Object.fromEntries(nodes.map((node) => [placed[node][0], ["healthy", node]]))
      )
    })
  )
})
