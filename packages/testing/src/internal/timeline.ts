import type * as Clock from "effect/Clock"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import type * as TestClock from "effect/TestClock"

/**
 * The time a cluster runs on: the live clock, or a `TestClock` that only moves when told to.
 *
 * Under a `TestClock` every engine loop sleeps until the clock is adjusted, so waiting means
 * driving the clock: small steps, each followed by a few scheduler turns so that the fibers woken
 * by the step (and the messages they send each other) run before the next step.
 */
export interface Timeline {
  readonly virtual: boolean
  readonly now: () => number
  readonly advance: (duration: Duration.DurationInput) => Effect.Effect<void>
  readonly sleep: (duration: Duration.DurationInput) => Effect.Effect<void>
  /** Runs `effect` while time passes; `onTimeout` if it has not finished after `timeout`. */
  readonly run: <A, E, R, E2>(
    effect: Effect.Effect<A, E, R>,
    timeout: Duration.DurationInput,
    onTimeout: () => E2
  ) => Effect.Effect<A, E | E2, R>
}

// TestClock's implementation class is internal; its interface is what tells the two clocks apart.
const isTestClock = (clock: Clock.Clock): clock is TestClock.TestClock =>
  typeof (clock as Partial<TestClock.TestClock>).adjust === "function"

const stepMillis = 50
const turnsPerStep = 20

export const make = (clock: Clock.Clock): Timeline => {
  const now = () => clock.unsafeCurrentTimeMillis()
  if (!isTestClock(clock)) {
    return {
      virtual: false,
      now,
      advance: (duration) => clock.sleep(Duration.decode(duration)),
      sleep: (duration) => clock.sleep(Duration.decode(duration)),
      run: (effect, timeout, onTimeout) =>
        Effect.raceFirst(
          Effect.disconnect(effect),
          Effect.zipRight(
            clock.sleep(Duration.decode(timeout)),
            Effect.suspend(() => Effect.fail(onTimeout()))
          )
        )
    }
  }
  const testClock = clock
  const turns = Effect.repeatN(Effect.yieldNow(), turnsPerStep - 1)
  const step = (millis: number) => Effect.zipRight(testClock.adjust(millis), turns)
  const advance = (duration: Duration.DurationInput) =>
    Effect.suspend(() => {
      let remaining = Duration.toMillis(duration)
      return Effect.whileLoop({
        while: () => remaining > 0,
        body: () => step(Math.min(stepMillis, remaining)),
        step: () => {
          remaining -= stepMillis
        }
      })
    })
  return {
    virtual: true,
    now,
    advance,
    sleep: (duration) => testClock.sleep(Duration.decode(duration)),
    run: (effect, timeout, onTimeout) =>
      Effect.gen(function* () {
        const fiber = yield* Effect.fork(effect)
        const deadline = now() + Duration.toMillis(timeout)
        // A first step of 0 ms lets an effect that needs no time finish without moving the clock.
        let millis = 0
        while (true) {
          yield* step(millis)
          const exit = fiber.unsafePoll()
          if (exit) return yield* exit
          if (now() >= deadline) {
            yield* Fiber.interruptFork(fiber)
            return yield* Effect.fail(onTimeout())
          }
          millis = stepMillis
        }
      })
  }
}
