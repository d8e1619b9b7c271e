import { describe, expect, it } from "@effect/vitest"
import * as Registry from "@foundation/core/Registry"
import * as RegistryStorage from "@foundation/core/RegistryStorage"
import * as Supervisor from "@foundation/core/Supervisor"
import * as SupervisorStorage from "@foundation/core/SupervisorStorage"
import * as Clock from "effect/Clock"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Schema from "effect/Schema"
import { TestCluster } from "@foundation/testing"

const detector = {
  heartbeatInterval: "100 millis",
  suspectAfter: "400 millis",
  heartbeatTimeout: "1 second"
} as const

/** One instance's life: from its start to its end (`end` undefined while it runs). */
interface Life {
  readonly name: string
  readonly node: string
  readonly epoch: number
  readonly args: unknown
  readonly handoff: unknown
  readonly start: number
  end: number | undefined
  ticks: number
  outcome?: string
}

/** Every instance started in one test, on any node: the test's witness of overlaps. */
class Journal extends Context.Tag("test/Journal")<Journal, { readonly lives: Array<Life> }>() {}

const running = (journal: Journal["Type"], name: string) =>
  journal.lives.filter((life) => life.name === name && life.end === undefined)

/** Pairs of lives of one name that overlapped in time: must always be empty. */
const overlaps = (journal: Journal["Type"]) => {
  const found: Array<string> = []
  const byName = new Map<string, Array<Life>>()
  for (const life of journal.lives) byName.set(life.name, [...(byName.get(life.name) ?? []), life])
  for (const [name, lives] of byName) {
    const sorted = [...lives].sort((a, b) => a.start - b.start)
    for (let i = 1; i < sorted.length; i++) {
      const previous = sorted[i - 1]
      if (previous.end === undefined || previous.end > sorted[i].start) {
        found.push(
          `${name}: ${previous.node}#${previous.epoch} overlaps ${sorted[i].node}#${sorted[i].epoch}`
        )
      }
    }
  }
  return found
}

/**
 * Runs until stopped, ticking; `fail` makes it end with a failure after `after` ms, `finish` returns
 * normally after `after` ms. Hands over its tick count.
 */
const Worker = Supervisor.spec("worker", {
  args: Schema.Struct({
    label: Schema.String,
    end: Schema.optional(Schema.Literal("fail", "finish", "die")),
    after: Schema.optional(Schema.Number)
  }),
  handoff: Schema.Struct({ ticks: Schema.Number }),
  run: (args, context) =>
    Effect.gen(function* () {
      const { lives } = yield* Journal
      const clock = yield* Effect.clock
      const life = yield* Effect.acquireRelease(
        Effect.sync(() => {
          const life: Life = {
            name: context.registryName,
            node: context.node,
            epoch: context.epoch,
            args,
            handoff: Option.getOrUndefined(context.handoff),
            start: clock.unsafeCurrentTimeMillis(),
            end: undefined,
            ticks: Option.match(context.handoff, { onNone: () => 0, onSome: (state) => state.ticks })
          }
          lives.push(life)
          return life
        }),
        (life, exit) =>
          Effect.sync(() => {
            life.end = clock.unsafeCurrentTimeMillis()
            life.outcome = exit._tag === "Success" ? "success" : "ended"
          })
      )
      yield* context.onHandoff(Effect.sync(() => ({ ticks: life.ticks })))
      const ticking = Effect.sync(() => life.ticks++).pipe(
        Effect.zipRight(Effect.sleep("10 millis")),
        Effect.forever
      )
      if (args.end === undefined) return yield* ticking
      yield* Effect.race(ticking, Effect.sleep(args.after ?? 50))
      if (args.end === "fail") return yield* Effect.fail("asked to fail")
      if (args.end === "die") return yield* Effect.dieMessage("asked to die")
    })
})

/** Checks its fence every 20 ms and records what it saw. */
const Fenced = Supervisor.spec("fenced", {
  args: Schema.Struct({}),
  run: (_, context) =>
    Effect.gen(function* () {
      const { lives } = yield* Journal
      const life: Life = {
        name: context.registryName,
        node: context.node,
        epoch: context.epoch,
        args: {},
        handoff: undefined,
        start: Date.now(),
        end: undefined,
        ticks: 0
      }
      lives.push(life)
      yield* Effect.addFinalizer(() => Effect.sync(() => (life.end = Date.now())))
      yield* context.fence.pipe(
        Effect.tapError((error) => Effect.sync(() => (life.outcome = error._tag))),
        Effect.zipRight(Effect.sleep("20 millis")),
        Effect.forever
      )
    })
})

const settings = { leaseTimeout: "1 second", reconcileInterval: "300 millis" } as const

const supervisedCluster = (overrides: Supervisor.SettingsInput = {}) =>
  Effect.gen(function* () {
    const journal: Journal["Type"] = { lives: [] }
    const processes = SupervisorStorage.makeMemoryStore()
    const names = RegistryStorage.makeMemoryStore()
    const cluster = yield* TestCluster.make({
      nodes: 3,
      detector,
      layer: Supervisor.layer([Worker, Fenced], { ...settings, ...overrides }).pipe(
        Layer.provideMerge(Registry.layer()),
        Layer.provide([
          RegistryStorage.layerMemory(names),
          SupervisorStorage.layerMemory(processes),
          Layer.succeed(Journal, journal)
        ])
      )
    })
    yield* cluster.awaitConverged()
    return { cluster, journal, processes }
  })

type Cluster = TestCluster.Cluster<Supervisor.Supervisor | Registry.Registry>

const on = <A, E>(
  cluster: Cluster,
  node: string,
  f: (supervisor: Supervisor.Supervisor["Type"]) => Effect.Effect<A, E>
) => cluster.on(node, Effect.flatMap(Supervisor.Supervisor, f))

const lookupEverywhere = (cluster: Cluster, name: string) =>
  Effect.flatMap(cluster.running, (nodes) =>
    Effect.forEach(nodes, (node) =>
      on(cluster, node, (supervisor) => Effect.either(supervisor.lookupSingleton(name)))
    )
  )

describe("Supervisor", () => {
  it.scopedLive(
    "startSingleton from any node runs one instance; starting the name again returns its ref; every node looks it up",
    () =>
      Effect.gen(function* () {
        const { cluster, journal } = yield* supervisedCluster()
        const ref = yield* on(cluster, "node-2", (s) =>
          s.startSingleton(Worker, { label: "a" }, { name: "w1" })
        )
        expect(ref.name).toBe("w1")
        expect(ref.spec).toBe("worker")
        expect(ref.epoch).toBe(1)
        for (const found of yield* lookupEverywhere(cluster, "w1")) {
          expect(Either.getOrThrow(found)).toEqual(ref)
        }
        const again = yield* Effect.forEach(
          cluster.nodes,
          (node) => on(cluster, node, (s) => s.startSingleton(Worker, { label: "b" }, { name: "w1" })),
          { concurrency: "unbounded" }
        )
        for (const other of again) expect(other).toEqual(ref)
        yield* Effect.sleep("100 millis")
        expect(running(journal, "w1").length).toBe(1)
        expect(running(journal, "w1")[0]).toMatchObject({ node: ref.node, args: { label: "a" } })

        // many singletons at once, from every node: each runs exactly once
        const refs = yield* Effect.forEach(
          Array.from({ length: 12 }, (_, i) => i),
          (i) =>
            on(cluster, cluster.nodes[i % 3], (s) =>
              s.startSingleton(Worker, { label: `m${i}` }, { name: `m${i % 6}` })
            ),
          { concurrency: "unbounded" }
        )
        for (let i = 0; i < 6; i++) expect(refs[i + 6]).toEqual(refs[i])
        expect(new Set(refs.map((r) => r.node)).size).toBeGreaterThan(1)
        yield* Effect.sleep("100 millis")
        for (let i = 0; i < 6; i++) expect(running(journal, `m${i}`).length).toBe(1)
        expect(overlaps(journal)).toEqual([])
      })
  )

  it.scoped(
    "on the TestClock: when its node crashes, a singleton runs again on a survivor with the same arguments, every survivor's lookup points at it, and no two instances ever overlap",
    () =>
      Effect.gen(function* () {
        const { cluster, journal } = yield* supervisedCluster()
        expect(cluster.virtualTime).toBe(true)
        const first = yield* on(cluster, "node-1", (s) =>
          s.startSingleton(Worker, { label: "survivor" }, { name: "crashy" })
        )
        const crashedAt = yield* Clock.currentTimeMillis
        // crashing waits on the clock while the node unwinds: on a TestClock, time must pass meanwhile
        yield* cluster.run(cluster.crash(first.node))
        const second = yield* cluster.eventually(
          Effect.flatMap(lookupEverywhere(cluster, "crashy"), (found) => {
            const refs = found.map((f) => Either.getOrThrow(f))
            expect(refs[0].node).not.toBe(first.node)
            for (const ref of refs) expect(ref).toEqual(refs[0])
            return Effect.succeed(refs[0])
          }),
          { timeout: "5 seconds" }
        )
        const elapsed = (yield* Clock.currentTimeMillis) - crashedAt
        expect(second.epoch).toBeGreaterThan(first.epoch)
        const now = running(journal, "crashy")
        expect(now.length).toBe(1)
        expect(now[0]).toMatchObject({ node: second.node, epoch: second.epoch, args: { label: "survivor" } })
        expect(elapsed).toBeLessThan(3000)
        expect(overlaps(journal)).toEqual([])

        // and again: the restarted node does not take it back
        yield* cluster.run(cluster.restart(first.node))
        yield* cluster.awaitConverged()
        yield* cluster.advance("600 millis")
        expect(Either.getOrThrow((yield* lookupEverywhere(cluster, "crashy"))[0])).toEqual(second)
        expect(running(journal, "crashy").length).toBe(1)
        expect(overlaps(journal)).toEqual([])
      })
  )

  it.scoped(
    "on the TestClock: in a partition the minority stops its singleton once its lease lapses, the majority runs it after, and heal leaves exactly one",
    () =>
      Effect.gen(function* () {
        const { cluster, journal } = yield* supervisedCluster()
        expect(cluster.virtualTime).toBe(true)
        const ref = yield* on(cluster, "node-1", (s) =>
          s.startSingleton(Worker, { label: "split" }, { name: "split-brain" })
        )
        const minority = ref.node
        const majority = cluster.nodes.filter((node) => node !== minority)
        yield* cluster.partition([minority], majority)
        const moved = yield* cluster.eventually(
          Effect.sync(() => {
            const now = running(journal, "split-brain")
            expect(now.length).toBe(1)
            expect(majority).toContain(now[0].node)
            return now[0]
          }),
          { timeout: "8 seconds" }
        )
        expect(overlaps(journal)).toEqual([])
        for (const node of majority) {
          const found = yield* on(cluster, node, (s) => s.lookupSingleton("split-brain"))
          expect(found.node).toBe(moved.node)
        }
        yield* cluster.heal
        yield* cluster.awaitConverged()
        yield* cluster.advance("1500 millis")
        expect(running(journal, "split-brain").map((life) => life.node)).toEqual([moved.node])
        for (const found of yield* lookupEverywhere(cluster, "split-brain")) {
          expect(Either.getOrThrow(found).node).toBe(moved.node)
        }
        expect(overlaps(journal)).toEqual([])
      })
  )

  it.scoped(
    "restart policies on the TestClock: permanent restarts after a normal end and a failure, transient only after a failure, temporary never; the delays double from 100 ms",
    () =>
      Effect.gen(function* () {
        const { cluster, journal, processes } = yield* supervisedCluster()
        expect(cluster.virtualTime).toBe(true)
        const start = (name: string, end: "fail" | "finish" | "die", restart: Supervisor.RestartPolicy) =>
          on(cluster, "node-1", (s) =>
            s.startSingleton(Worker, { label: name, end, after: 30 }, { name, restart })
          )
        yield* start("perm-finish", "finish", "permanent")
        yield* start("perm-fail", "fail", "permanent")
        yield* start("trans-finish", "finish", "transient")
        yield* start("trans-die", "die", "transient")
        yield* start("temp-fail", "fail", "temporary")
        // lives of 30 ms, then restarts after 100, 200 and 400 ms: the fourth starts 790 ms after the first
        yield* cluster.advance("900 millis")
        const lives = (name: string) => journal.lives.filter((life) => life.name === name)
        expect(lives("perm-finish").length).toBe(4)
        expect(lives("perm-fail").length).toBe(4)
        expect(lives("trans-die").length).toBe(4)
        expect(lives("trans-finish").length).toBe(1)
        expect(lives("temp-fail").length).toBe(1)
        // each restart is a new epoch, after a delay that doubles from backoffInitial (100 ms)
        const restarts = lives("perm-fail")
        expect(restarts.map((life) => life.epoch)).toEqual([1, 2, 3, 4])
        expect(restarts.slice(1).map((life, i) => life.start - restarts[i].end!)).toEqual([100, 200, 400])
        expect(restarts.map((life) => life.end! - life.start).slice(0, 3)).toEqual([30, 30, 30])
        // a child that ended for good is gone: from storage and from the registry
        for (const name of ["trans-finish", "temp-fail"]) {
          expect(processes.rows.has(name)).toBe(false)
          expect(Either.isLeft((yield* lookupEverywhere(cluster, name))[0])).toBe(true)
        }
        expect(Either.getOrThrow((yield* lookupEverywhere(cluster, "perm-fail"))[2]).epoch).toBe(
          restarts[restarts.length - 1].epoch
        )
        expect(overlaps(journal)).toEqual([])
      })
  )

  it.scopedLive("a temporary singleton is not restarted elsewhere when its node dies", () =>
    Effect.gen(function* () {
      const { cluster, journal, processes } = yield* supervisedCluster()
      const ref = yield* on(cluster, "node-1", (s) =>
        s.startSingleton(Worker, { label: "once" }, { name: "temp", restart: "temporary" })
      )
      yield* cluster.crash(ref.node)
      yield* cluster.eventually(
        Effect.sync(() => expect(processes.rows.has("temp")).toBe(false)),
        {
          timeout: "5 seconds"
        }
      )
      yield* Effect.sleep("500 millis")
      expect(journal.lives.filter((life) => life.name === "temp").length).toBe(1)
    })
  )

  it.scopedLive(
    "startReplicated runs one instance per node named {name}@{node}; a node that joins later gets one; a node that leaves takes its own",
    () =>
      Effect.gen(function* () {
        const { cluster, journal } = yield* supervisedCluster()
        yield* cluster.stop("node-3")
        yield* cluster.awaitConverged()
        const results = yield* on(cluster, "node-1", (s) =>
          s.startReplicated(Worker, { label: "r" }, { name: "rep" })
        )
        expect(results.map((r) => r.node).sort()).toEqual(["node-1", "node-2"])
        for (const { node, result } of results) {
          const ref = Either.getOrThrow(result)
          expect(ref.registryName).toBe(Supervisor.replicaName("rep", node))
          expect(ref.node).toBe(node)
        }
        // starting it again is idempotent
        const again = yield* on(cluster, "node-2", (s) =>
          s.startReplicated(Worker, { label: "r" }, { name: "rep" })
        )
        expect(again.map((r) => Either.getOrThrow(r.result).registryName).sort()).toEqual([
          "rep@node-1",
          "rep@node-2"
        ])

        yield* cluster.restart("node-3")
        // read-your-writes covers the members a node knows: wait until everyone discovered node-3
        yield* cluster.awaitConverged()
        yield* cluster.eventually(
          Effect.sync(() => expect(running(journal, "rep@node-3").length).toBe(1)),
          { timeout: "5 seconds" }
        )
        yield* cluster.eventually(
          Effect.forEach(cluster.nodes, (node) =>
            cluster.on(
              node,
              Effect.flatMap(Registry.Registry, (registry) =>
                Effect.map(registry.lookup("rep@node-3"), (entry) => expect(Option.isSome(entry)).toBe(true))
              )
            )
          )
        )
        yield* cluster.stop("node-2")
        expect(running(journal, "rep@node-2")).toEqual([])
        for (const node of ["node-1", "node-3"]) {
          const entry = yield* cluster.on(
            node,
            Effect.flatMap(Registry.Registry, (registry) => registry.lookup("rep@node-2"))
          )
          expect(entry).toEqual(Option.none())
        }
        const children = yield* on(cluster, "node-1", (s) => s.whichChildren)
        expect(children).toHaveLength(1)
        expect(children[0].running.map((ref) => ref.node).sort()).toEqual(["node-1", "node-3"])
        for (const name of ["rep@node-1", "rep@node-3"]) expect(running(journal, name).length).toBe(1)
      })
  )

  it.scopedLive("stop ends a singleton and a replicated process everywhere before it returns", () =>
    Effect.gen(function* () {
      const { cluster, journal, processes } = yield* supervisedCluster()
      yield* on(cluster, "node-1", (s) => s.startSingleton(Worker, { label: "s" }, { name: "single" }))
      yield* on(cluster, "node-1", (s) => s.startReplicated(Worker, { label: "r" }, { name: "many" }))
      expect(yield* on(cluster, "node-3", (s) => s.countChildren)).toEqual({
        specs: 1,
        children: 2,
        singletons: 1,
        replicated: 1,
        active: 4
      })
      yield* on(cluster, "node-2", (s) => s.stop("single"))
      yield* on(cluster, "node-3", (s) => s.stop("many"))
      for (const found of yield* lookupEverywhere(cluster, "single")) {
        expect(Either.getLeft(found).pipe(Option.map((e) => e._tag))).toEqual(Option.some("NotFound"))
      }
      expect(journal.lives.filter((life) => life.end === undefined)).toEqual([])
      expect(processes.rows.size).toBe(0)
      const error = yield* on(cluster, "node-1", (s) => Effect.flip(s.stop("single")))
      expect(error._tag).toBe("NotFound")
      yield* Effect.sleep("700 millis")
      expect(journal.lives.filter((life) => life.end === undefined)).toEqual([])
    })
  )

  it.scopedLive(
    "a node that stops gracefully hands its singleton over at once, with the state its onHandoff hook returns",
    () =>
      Effect.gen(function* () {
        const { cluster, journal } = yield* supervisedCluster()
        const ref = yield* on(cluster, "node-1", (s) =>
          s.startSingleton(Worker, { label: "h" }, { name: "handed" })
        )
        yield* Effect.sleep("200 millis")
        const stoppedAt = Date.now()
        yield* cluster.stop(ref.node)
        const next = yield* cluster.eventually(
          Effect.sync(() => {
            const now = running(journal, "handed")
            expect(now.length).toBe(1)
            return now[0]
          }),
          { timeout: "3 seconds", interval: "5 millis" }
        )
        expect(next.start - stoppedAt).toBeLessThan(1000)
        const previous = journal.lives.find((life) => life.name === "handed" && life.node === ref.node)!
        expect(previous.ticks).toBeGreaterThan(0)
        expect(next.handoff).toEqual({ ticks: previous.ticks })
        expect(next.ticks).toBeGreaterThanOrEqual(previous.ticks)
        expect(overlaps(journal)).toEqual([])
        for (const found of yield* lookupEverywhere(cluster, "handed")) {
          expect(Either.getOrThrow(found).node).toBe(next.node)
        }
      })
  )

  it.scopedLive("an instance superseded by a later start fails its fence with StaleEpoch and stops", () =>
    Effect.gen(function* () {
      // lease renewals far apart, so that the instance's own fence is what notices
      const { cluster, journal, processes } = yield* supervisedCluster({ leaseTimeout: "1 minute" })
      const ref = yield* on(cluster, "node-1", (s) => s.startSingleton(Fenced, {}, { name: "fenced" }))
      yield* Effect.sleep("100 millis")
      const life = journal.lives.find((life) => life.name === "fenced")!
      expect(life).toMatchObject({ node: ref.node, epoch: ref.epoch, end: undefined })
      // a later start elsewhere, as a node that wrongly believed the owner dead would make it
      const row = processes.rows.get("fenced")!
      processes.rows.set(
        "fenced",
        new SupervisorStorage.ProcessRow({
          ...row,
          epoch: row.epoch + 1,
          owner: "a-node-outside-this-cluster",
          leaseExpires: Date.now() + 60_000
        })
      )
      yield* cluster.eventually(
        Effect.sync(() => expect(life.end).toBeDefined()),
        { timeout: "3 seconds" }
      )
      expect(life.outcome).toBe("StaleEpoch")
      yield* Effect.sleep("300 millis")
      expect(journal.lives.filter((life) => life.name === "fenced").length).toBe(1)
      expect(processes.rows.get("fenced")?.epoch).toBe(row.epoch + 1)
    })
  )

  it.scopedLive("an unknown spec, bad arguments and a name of the other kind are typed errors", () =>
    Effect.gen(function* () {
      const { cluster } = yield* supervisedCluster()
      const Undeclared = Supervisor.spec("undeclared", { args: Schema.Struct({}), run: () => Effect.void })
      const unknown = yield* on(cluster, "node-1", (s) => Effect.flip(s.startSingleton(Undeclared, {})))
      expect(unknown._tag).toBe("UnknownProcessSpec")
      expect(unknown.message).toContain("[worker, fenced]")
      const invalid = yield* on(cluster, "node-1", (s) =>
        Effect.flip(s.startSingleton(Worker, { label: 42 } as unknown as { label: string }))
      )
      expect(invalid._tag).toBe("InvalidArgs")
      yield* on(cluster, "node-1", (s) => s.startReplicated(Worker, { label: "r" }, { name: "kinds" }))
      const mismatch = yield* on(cluster, "node-2", (s) =>
        Effect.flip(s.startSingleton(Worker, { label: "s" }, { name: "kinds" }))
      )
      expect(mismatch._tag).toBe("KindMismatch")
      const notFound = yield* on(cluster, "node-3", (s) => Effect.flip(s.lookupSingleton("nothing")))
      expect(notFound._tag).toBe("NotFound")
    })
  )
})
