import { describe, expect, it } from "@effect/vitest"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import { asyncInterruptible } from "../src/internal/asyncCall.js"

/** A suspension that counts its cancels and lets the test resume it. */
const pending = () => {
  let resumeWith: ((effect: Effect.Effect<number, string>) => void) | undefined
  const cancels: Array<"cancelled"> = []
  const registered = Deferred.unsafeMake<void>(undefined as never)
  const effect = asyncInterruptible<number, string>((resume) => {
    resumeWith = resume
    Deferred.unsafeDone(registered, Exit.void)
    return Effect.sync(() => void cancels.push("cancelled"))
  })
  return {
    effect,
    cancels,
    registered,
    resume: (effect: Effect.Effect<number, string>) => resumeWith!(effect)
  }
}

describe("asyncInterruptible", () => {
  it.effect("runs the canceler when the waiting fiber is interrupted, and the fiber ends interrupted", () =>
    Effect.gen(function* () {
      const call = pending()
      const fiber = yield* Effect.fork(call.effect)
      yield* Deferred.await(call.registered)
      const exit = yield* Fiber.interrupt(fiber)
      expect(Exit.isInterrupted(exit)).toBe(true)
      expect(call.cancels).toEqual(["cancelled"])
    })
  )

  it.effect("does not run the canceler on a success or a typed failure", () =>
    Effect.gen(function* () {
      const succeeding = pending()
      const success = yield* Effect.fork(succeeding.effect)
      yield* Deferred.await(succeeding.registered)
      succeeding.resume(Effect.succeed(7))
      expect(yield* Fiber.join(success)).toBe(7)

      const failing = pending()
      const failure = yield* Effect.fork(Effect.either(failing.effect))
      yield* Deferred.await(failing.registered)
      failing.resume(Effect.fail("refused"))
      expect(yield* Fiber.join(failure)).toStrictEqual(Either.left("refused"))
      expect([...succeeding.cancels, ...failing.cancels]).toEqual([])
    })
  )

  it.effect("waits for the answer instead of cancelling inside an uninterruptible region", () =>
    Effect.gen(function* () {
      const call = pending()
      const answered = yield* Deferred.make<number>()
      const fiber = yield* Effect.fork(
        Effect.uninterruptible(Effect.flatMap(call.effect, (value) => Deferred.succeed(answered, value)))
      )
      yield* Deferred.await(call.registered)
      const interrupting = yield* Effect.fork(Fiber.interrupt(fiber))
      yield* Effect.yieldNow()
      call.resume(Effect.succeed(1))
      yield* Fiber.join(interrupting)
      expect(yield* Deferred.await(answered)).toBe(1)
      expect(call.cancels).toEqual([])
    })
  )

  it.effect("interrupts what the registration resumed with, and then runs its canceler", () =>
    Effect.gen(function* () {
      const call = pending()
      const fiber = yield* Effect.fork(call.effect)
      yield* Deferred.await(call.registered)
      call.resume(Effect.never)
      yield* Effect.yieldNow()
      expect(Exit.isInterrupted(yield* Fiber.interrupt(fiber))).toBe(true)
      expect(call.cancels).toEqual(["cancelled"])
    })
  )
})
