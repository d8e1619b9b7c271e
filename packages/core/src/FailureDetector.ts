/**
 * Foundation's failure detector, and how it drives the engine's failover.
 *
 * The model (details in docs/failure-detection.md):
 * - every node pings every other node's endpoint (`NodeRpcs.Ping`) each `heartbeatInterval`
 *   (250 ms) and waits up to `heartbeatTimeout` (3 s) for each answer, so one slow answer is never
 *   a missed beat; silence longer than `suspectAfter` (1 s) makes a member `suspect`;
 * - a failed call is followed by a bare connect (`NodeTransport.probe`): `refused` means the process
 *   is gone (SIGKILL, crash) and the member is declared down at once, in milliseconds;
 * - silence longer than `heartbeatTimeout` (a frozen process: SIGSTOP, a long GC pause, a stalled
 *   VM) declares the member down only while this node sees a majority of the members it does not
 *   know to be dead, so the minority side of a partition never evicts the majority;
 * - a down member's runner is marked unhealthy in `RunnerStorage` and its shard leases are released
 *   (`RunnerStorage.setRunnerHealth(address, false)` then `RunnerStorage.releaseAll(address)`), so
 *   every runner recomputes assignments on its next `refreshAssignmentsInterval` and the new owners
 *   acquire the shards at once instead of waiting for `shardLockExpiration`.
 *
 * The engine's own health check singleton keeps running with `layerRunnerHealth`, so a runner that
 * answers again (a restarted or resumed node) is marked healthy and gets its shards back.
 */
import * as RunnerHealth from "@effect/cluster/RunnerHealth"
import { RunnerStorage } from "@effect/cluster/RunnerStorage"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Schedule from "effect/Schedule"
import * as Stream from "effect/Stream"
import { DetectorConfig, type DetectorSettings, defaultSettings } from "./internal/detectorConfig.js"
import { Node } from "./Node.js"

/** The detector's settings; every field is a `Duration`. */
export type Settings = DetectorSettings

/**
 * The detector's settings as a service (a `Context.Reference`: the defaults apply when nothing is
 * provided).
 */
export const Config = DetectorConfig

/**
 * The defaults: heartbeatInterval 250 ms, suspectAfter 1 s, heartbeatTimeout 3 s, probeTimeout
 * 500 ms, discoveryInterval 500 ms, directoryRefreshInterval 5 s.
 */
export const defaults: Settings = defaultSettings

/** Overrides some detector settings. */
export const layerConfig = (settings: Partial<{ readonly [K in keyof Settings]: Duration.DurationInput }>) =>
  Layer.succeed(DetectorConfig, {
    ...defaultSettings,
    ...Object.fromEntries(Object.entries(settings).map(([key, value]) => [key, Duration.decode(value)]))
  } as Settings)

/**
 * The engine's `RunnerHealth` answered from the failure detector: a runner is alive unless the node
 * hosting it is declared down. It costs a map lookup, so the engine's health check singleton can run
 * every second. Runners that no Foundation node hosts are reported alive.
 */
export const layerRunnerHealth: Layer.Layer<RunnerHealth.RunnerHealth, never, Node> = Layer.effect(
  RunnerHealth.RunnerHealth,
  Effect.map(Node, (node) =>
    RunnerHealth.RunnerHealth.of({
      isAlive: (address) => Effect.map(node.memberByRunner(address), (member) => member?.status !== "down")
    })
  )
)

/**
 * Reacts to `NodeDown`: marks the dead node's runner unhealthy and releases its shard leases, so its
 * shards move on the next assignment refresh. Graceful leaves are skipped (the engine already
 * unregistered the runner). Runs on every node; the writes are idempotent.
 */
export const layerFailover: Layer.Layer<never, never, Node | RunnerStorage> = Layer.scopedDiscard(
  Effect.gen(function* () {
    const node = yield* Node
    const storage = yield* RunnerStorage
    const events = yield* node.events
    yield* events.pipe(
      Stream.filter((event) => event._tag === "NodeDown" && event.reason !== "left"),
      Stream.runForEach((event) =>
        storage.setRunnerHealth(event.node.runnerAddress, false).pipe(
          Effect.zipRight(storage.releaseAll(event.node.runnerAddress)),
          Effect.retry({ times: 5, schedule: Schedule.spaced(100) }),
          Effect.tap(() =>
            Effect.logInfo(`released the shards of ${event.node.id} (${event.node.runnerAddress})`)
          ),
          Effect.catchAllCause((cause) =>
            Effect.logWarning(`could not release the shards of ${event.node.id}`, cause)
          )
        )
      ),
      Effect.forkScoped
    )
  })
)
