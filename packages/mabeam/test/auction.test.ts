import { describe, expect, it } from "@effect/vitest"
import * as Agent from "@foundation/mabeam/Agent"
import * as AgentCalls from "@foundation/mabeam/AgentCalls"
import * as Auction from "@foundation/mabeam/Auction"
import * as Effect from "effect/Effect"
import * as Schema from "effect/Schema"

/** Bids its valuation (sealed), the minimum bid while it can afford it (English), the price once it is low enough (Dutch). */
const bidder = (valuation: number): Agent.AgentHandlers => ({
  bid: (request) => {
    switch (request.auctionType) {
      case "sealed-bid":
        return Effect.succeed(Agent.bid(valuation))
      case "english":
        return Effect.succeed(request.minimumBid! <= valuation ? Agent.bid(request.minimumBid!) : Agent.pass)
      case "dutch":
        return Effect.succeed(request.price! <= valuation ? Agent.bid(request.price!) : Agent.pass)
    }
  }
})

const fixed = (reply: Agent.BidReply): Agent.AgentHandlers => ({ bid: () => Effect.succeed(reply) })

const answered = (agent: string, amount: number): AgentCalls.Answer<Agent.BidReply> => ({
  _tag: "Answered",
  agent,
  reply: Agent.bid(amount)
})

/** The `NoWinner` a run must fail with. */
const noWinner = <R>(run: Effect.Effect<Auction.AuctionResult, Auction.AuctionError, R>) =>
  run.pipe(
    Effect.flatMap((result) => Effect.dieMessage(`expected NoWinner, the auction sold to ${result.winner}`)),
    Effect.catchTag("NoWinner", Effect.succeed)
  )

const outcomes = (result: { readonly bids: ReadonlyArray<Auction.BidRecord> }) =>
  result.bids.map((record) => `${record.round}:${record.agent}:${record.outcome._tag}`)

describe("auction rules (pure)", () => {
  const rules = { round: 1, validBid: Auction.defaultValidBid }

  it("judge: a bid must be a finite non-negative number, at least the reserve, the minimum and the price", () => {
    expect(Auction.judge(answered("a", 10), rules).outcome).toEqual({ _tag: "Valid", amount: 10 })
    for (const amount of [Number.NaN, -5, Number.POSITIVE_INFINITY]) {
      const outcome = Auction.judge(answered("a", amount), rules).outcome
      expect(outcome).toMatchObject({ _tag: "Rejected", rule: "schema" })
    }
    expect(Auction.judge(answered("a", 9), { ...rules, reserve: 10 }).outcome).toMatchObject({
      _tag: "Rejected",
      rule: "reserve",
      reason: "9 is below the reserve of 10"
    })
    expect(Auction.judge(answered("a", 19), { ...rules, minimum: 20 }).outcome).toMatchObject({
      rule: "minimum",
      reason: "19 is below the minimum bid of 20"
    })
    expect(Auction.judge(answered("a", 49), { ...rules, price: 50 }).outcome).toMatchObject({ rule: "price" })
    expect(Auction.judge({ _tag: "Answered", agent: "a", reply: Agent.pass }, rules).outcome._tag).toBe(
      "Passed"
    )
    const silent = Auction.judge(
      { _tag: "NoAnswer", agent: "a", reason: "timeout", detail: "no answer" },
      rules
    )
    expect(silent.outcome).toEqual({ _tag: "NoAnswer", reason: "timeout", detail: "no answer" })
  })

  const records = (bids: ReadonlyArray<readonly [string, number]>, reserve?: number) =>
    bids.map(([agent, amount]) => Auction.judge(answered(agent, amount), { ...rules, reserve }))

  it("sealed first price: the highest bid wins and pays its bid", () => {
    const bids = records([
      ["a", 10],
      ["b", 30],
      ["c", 20]
    ])
    expect(Auction.settleSealed(bids, { paymentRule: "first-price" })).toEqual({
      _tag: "Sold",
      winner: "b",
      payment: 30
    })
  })

  it("sealed second price (Vickrey): the winner pays the second-highest bid", () => {
    const bids = records([
      ["a", 10],
      ["b", 30],
      ["c", 20]
    ])
    expect(Auction.settleSealed(bids, { paymentRule: "second-price" })).toEqual({
      _tag: "Sold",
      winner: "b",
      payment: 20
    })
  })

  it("a tie goes to the agent listed first, and under second price it pays the tied amount", () => {
    const bids = records([
      ["c", 10],
      ["a", 30],
      ["b", 30]
    ])
    expect(Auction.settleSealed(bids, { paymentRule: "second-price" })).toEqual({
      _tag: "Sold",
      winner: "a",
      payment: 30
    })
    const reordered = records([
      ["b", 30],
      ["a", 30]
    ])
    expect(Auction.settleSealed(reordered, { paymentRule: "first-price" })).toMatchObject({ winner: "b" })
  })

  it("second price with one bid: its own bid, or the reserve when there is one", () => {
    expect(Auction.settleSealed(records([["a", 25]]), { paymentRule: "second-price" })).toMatchObject({
      payment: 25
    })
    expect(
      Auction.settleSealed(records([["a", 25]], 10), { paymentRule: "second-price", reserve: 10 })
    ).toMatchObject({ payment: 10 })
  })

  it("bids under the reserve do not count: the second price comes from the valid bids", () => {
    const bids = records(
      [
        ["a", 5],
        ["b", 12],
        ["c", 15]
      ],
      10
    )
    expect(bids[0].outcome._tag).toBe("Rejected")
    expect(Auction.settleSealed(bids, { paymentRule: "second-price", reserve: 10 })).toEqual({
      _tag: "Sold",
      winner: "c",
      payment: 12
    })
    const under = records(
      [
        ["a", 5],
        ["b", 8]
      ],
      10
    )
    expect(Auction.settleSealed(under, { paymentRule: "first-price", reserve: 10 })).toEqual({
      _tag: "Unsold",
      reason: "reserve-not-met"
    })
  })

  it("English steps: the minimum rises by the increment, the leader is not asked, passing leaves", () => {
    const englishRules: Auction.EnglishRules = { startingPrice: 10, increment: 5, maxRounds: 10 }
    let state = Auction.englishStart(["a", "b", "c"])
    expect(Auction.englishMinimum(state, englishRules)).toBe(10)
    const round1 = [
      answered("a", 10),
      answered("b", 12),
      { _tag: "Answered", agent: "c", reply: Agent.pass } as const
    ]
    const step1 = Auction.englishStep(
      state,
      round1.map((answer) => Auction.judge(answer, { ...rules, minimum: 10 })),
      englishRules
    )
    expect(step1._tag).toBe("Continue")
    state = step1.state
    expect(state.standing).toEqual({ agent: "b", amount: 12 })
    expect(state.active).toEqual(["a", "b"])
    expect(Auction.englishAsked(state)).toEqual(["a"])
    expect(Auction.englishMinimum(state, englishRules)).toBe(17)
    const step2 = Auction.englishStep(
      state,
      [Auction.judge(answered("a", 16), { ...rules, round: 2, minimum: 17 })],
      englishRules
    )
    expect(step2).toMatchObject({ _tag: "Sold", winner: "b", payment: 12 })
  })

  it("Dutch prices fall by the decrement and stop at the reserve", () => {
    const dutch = { startingPrice: 100, decrement: 15, reserve: 60 }
    expect([1, 2, 3, 4].map((round) => Auction.dutchPrice(round, dutch))).toEqual([100, 85, 70, undefined])
    expect(Auction.dutchPrice(2, { startingPrice: 0.3, decrement: 0.1 })).toBeCloseTo(0.2)
    expect(Auction.dutchPrice(4, { startingPrice: 0.3, decrement: 0.1 })).toBe(0)
  })
})

describe("auction runs (in-process agents)", () => {
  it.effect("sealed-bid second price: the winner pays the second-highest valuation", () =>
    Effect.gen(function* () {
      const result = yield* Auction.sealedBid({
        agents: ["a", "b", "c", "d"],
        resources: { cpu: 4 },
        paymentRule: "second-price"
      })
      expect(result).toMatchObject({
        auctionType: "sealed-bid",
        winner: "c",
        payment: 70,
        allocation: { agent: "c", resources: { cpu: 4 } },
        rounds: 1,
        paymentRule: "second-price"
      })
      expect(outcomes(result)).toEqual(["1:a:Valid", "1:b:Valid", "1:c:Valid", "1:d:Valid"])
    }).pipe(
      Effect.provide(AgentCalls.layerLocal({ a: bidder(50), b: bidder(70), c: bidder(90), d: bidder(20) }))
    )
  )

  it.effect(
    "a bid that fails the schema is rejected with a reason; the others still settle the auction",
    () =>
      Effect.gen(function* () {
        const result = yield* Auction.sealedBid({
          agents: ["nan", "garbage", "negative", "big", "ok"],
          paymentRule: "first-price",
          validBid: Schema.Number.pipe(Schema.finite(), Schema.nonNegative(), Schema.lessThanOrEqualTo(1000))
        })
        expect(result.winner).toBe("ok")
        const rejected = Object.fromEntries(
          result.bids.flatMap((record) =>
            record.outcome._tag === "Rejected" ? [[record.agent, record.outcome.reason]] : []
          )
        )
        expect(Object.keys(rejected).sort()).toEqual(["big", "garbage", "nan", "negative"])
        expect(rejected.big).toContain("1000")
        expect(rejected.garbage).toContain("amount")
      }).pipe(
        Effect.provide(
          AgentCalls.layerLocal({
            nan: fixed(Agent.bid(Number.NaN)),
            garbage: {
              bid: () => Effect.succeed({ _tag: "Bid", amount: "ten" } as unknown as Agent.BidReply)
            },
            negative: fixed(Agent.bid(-1)),
            big: fixed(Agent.bid(5000)),
            ok: fixed(Agent.bid(7))
          })
        )
      )
  )

  it.live(
    "an agent that does not answer within the timeout counts as no bid, and the run ends at the timeout",
    () =>
      Effect.gen(function* () {
        const startedAt = Date.now()
        const result = yield* Auction.sealedBid({
          agents: ["slow", "fast", "broken", "mute"],
          paymentRule: "second-price",
          timeout: "150 millis"
        })
        const elapsed = Date.now() - startedAt
        expect(elapsed).toBeLessThan(2000)
        expect(result).toMatchObject({ winner: "fast", payment: 3 })
        const byAgent = Object.fromEntries(result.bids.map((record) => [record.agent, record.outcome]))
        expect(byAgent.slow).toMatchObject({ _tag: "NoAnswer", reason: "timeout" })
        expect(byAgent.broken).toMatchObject({ _tag: "NoAnswer", reason: "failed", detail: "out of budget" })
        expect(byAgent.mute).toMatchObject({ _tag: "NoAnswer", reason: "not-supported" })
      }).pipe(
        Effect.provide(
          AgentCalls.layerLocal({
            slow: { bid: () => Effect.as(Effect.sleep("10 seconds"), Agent.bid(1000)) },
            fast: fixed(Agent.bid(3)),
            broken: { bid: () => Effect.fail(new Error("out of budget")) },
            mute: {}
          })
        )
      )
  )

  it.effect("no valid bid is a typed NoWinner carrying every record", () =>
    Effect.gen(function* () {
      const noBids = yield* noWinner(Auction.sealedBid({ agents: ["a", "b"] }))
      expect(noBids).toMatchObject({ _tag: "NoWinner", reason: "no-bids" })
      expect(noBids.bids).toHaveLength(2)
      const low = yield* noWinner(Auction.sealedBid({ agents: ["c"], reserve: 100 }))
      expect(low).toMatchObject({ _tag: "NoWinner", reason: "reserve-not-met", reserve: 100 })
      expect(low.message).toContain("reserve of 100")
    }).pipe(
      Effect.provide(
        AgentCalls.layerLocal({ a: fixed(Agent.pass), b: fixed(Agent.pass), c: fixed(Agent.bid(40)) })
      )
    )
  )

  it.effect("English: raising by the increment, the second-highest valuation sets the price", () =>
    // valuations a 50, b 70, c 65; start 10, increment 10; everyone bids the minimum while it can:
    // r1 a,b,c bid 10 -> a leads (listed first); r2 b,c bid 20 -> b; r3 a,c 30 -> a; r4 b,c 40 -> b;
    // r5 a,c 50 -> a; r6 b,c 60 -> b; r7 a (max 50) and c (max 65) cannot bid 70: b wins at 60
    Effect.gen(function* () {
      const result = yield* Auction.english({ agents: ["a", "b", "c"], startingPrice: 10, increment: 10 })
      expect(result).toMatchObject({ auctionType: "english", winner: "b", payment: 60, rounds: 7 })
      expect(outcomes(result).slice(-2)).toEqual(["7:a:Passed", "7:c:Passed"])
    }).pipe(Effect.provide(AgentCalls.layerLocal({ a: bidder(50), b: bidder(70), c: bidder(65) })))
  )

  it.effect("English: a jump bid ends it as soon as only the leader is left", () =>
    Effect.gen(function* () {
      const result = yield* Auction.english({ agents: ["a", "b"], startingPrice: 10, increment: 10 })
      // r1: a 10, b 100 -> b leads; r2: a cannot reach 110 and passes -> b alone, pays 100
      expect(result).toMatchObject({ winner: "b", payment: 100, rounds: 2 })
    }).pipe(
      Effect.provide(
        AgentCalls.layerLocal({
          a: bidder(60),
          b: { bid: (request) => Effect.succeed(Agent.bid(request.round === 1 ? 100 : request.minimumBid!)) }
        })
      )
    )
  )

  it.effect("English: a bid under the minimum is rejected and takes the agent out; maxRounds ends it", () =>
    Effect.gen(function* () {
      const result = yield* Auction.english({
        agents: ["low", "a", "b"],
        startingPrice: 10,
        increment: 1,
        maxRounds: 3
      })
      // r1: low bids 5 (rejected, out), a and b bid 10 -> a; r2: b 11; r3: a 12 -> maxRounds: a pays 12
      expect(result).toMatchObject({ winner: "a", payment: 12, rounds: 3 })
      expect(result.bids[0]).toMatchObject({ agent: "low", outcome: { _tag: "Rejected", rule: "minimum" } })
      expect(result.bids.filter((record) => record.agent === "low")).toHaveLength(1)
    }).pipe(
      Effect.provide(AgentCalls.layerLocal({ low: fixed(Agent.bid(5)), a: bidder(1000), b: bidder(1000) }))
    )
  )

  it.effect("English: nobody opening at the reserve is NoWinner", () =>
    Effect.gen(function* () {
      const error = yield* noWinner(Auction.english({ agents: ["a", "b"], startingPrice: 10, reserve: 100 }))
      expect(error).toMatchObject({ _tag: "NoWinner", reason: "reserve-not-met" })
      expect(error.bids.map((record) => record.outcome._tag)).toEqual(["Passed", "Rejected"])
    }).pipe(Effect.provide(AgentCalls.layerLocal({ a: bidder(60), b: fixed(Agent.bid(50)) })))
  )

  it.effect("Dutch: the first round with a taker ends it; the first taker listed wins at that price", () =>
    // prices 100, 90, 80, 70: at 70, b (75) and c (75) take it, b is listed first
    Effect.gen(function* () {
      const result = yield* Auction.dutch({
        agents: ["a", "b", "c"],
        startingPrice: 100,
        decrement: 10,
        reserve: 55
      })
      expect(result).toMatchObject({ auctionType: "dutch", winner: "b", payment: 70, rounds: 4 })
      expect(result.bids).toHaveLength(12)
    }).pipe(Effect.provide(AgentCalls.layerLocal({ a: bidder(62), b: bidder(75), c: bidder(75) })))
  )

  it.effect("Dutch: no taker down to the reserve is NoWinner after the last price above it", () =>
    Effect.gen(function* () {
      const error = yield* noWinner(
        Auction.dutch({ agents: ["a", "b", "c"], startingPrice: 100, decrement: 10, reserve: 55 })
      )
      // prices 100, 90, 80, 70, 60; 50 is under the reserve
      expect(error).toMatchObject({ _tag: "NoWinner", reason: "reserve-not-met" })
      expect(error.bids).toHaveLength(15)
    }).pipe(Effect.provide(AgentCalls.layerLocal({ a: bidder(50), b: bidder(40), c: bidder(30) })))
  )

  it.effect("bad input: an unknown agent, or impossible options, fail before anyone is asked", () =>
    Effect.gen(function* () {
      const unknown = yield* Effect.flip(Auction.sealedBid({ agents: ["a", "ghost"] }))
      expect(unknown).toMatchObject({ _tag: "UnknownAgents", agents: ["ghost"] })
      const increment = yield* Effect.flip(Auction.english({ agents: ["a"], increment: 0 }))
      expect(increment).toMatchObject({ _tag: "InvalidOptions", protocol: "english auction" })
      const dutch = yield* Effect.flip(
        Auction.run({ type: "dutch", agents: ["a"], startingPrice: 10, decrement: 1, reserve: 20 })
      )
      expect(dutch.message).toContain("below the reserve")
      const empty = yield* Effect.flip(Auction.sealedBid({ agents: [] }))
      expect(empty._tag).toBe("InvalidOptions")
    }).pipe(Effect.provide(AgentCalls.layerLocal({ a: bidder(10) })))
  )
})
