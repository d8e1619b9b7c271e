import * as Cause from "effect/Cause"
import * as Effect from "effect/Effect"

/**
 * `Effect.async` whose registration may return a canceler, for per-call hot paths. When the
 * registration returns one, `Effect.async` wraps the suspension in `Effect.onInterrupt`, whose
 * `onExit` builds an exit and a cleanup effect on every success too: that wrapper was 2.7 µs of the
 * node RPC caller's 8.7 µs per call (docs/performance.md, session 6). Here the suspension runs
 * interruptible inside `Effect.uninterruptibleMask`, and one failure handler runs the canceler when
 * the cause is an interruption only: the same semantics, with nothing to do on success.
 */
export const asyncInterruptible = <A, E>(
  register: (resume: (effect: Effect.Effect<A, E>) => void) => Effect.Effect<void> | void
): Effect.Effect<A, E> =>
  Effect.uninterruptibleMask((restore) => {
    let cancel: Effect.Effect<void> | void = undefined
    return Effect.catchAllCause(
      restore(
        Effect.async<A, E>((resume) => {
          cancel = register(resume)
        })
      ),
      (cause) =>
        cancel !== undefined && Cause.isInterruptedOnly(cause)
          ? Effect.zipRight(cancel, Effect.failCause(cause))
          : Effect.failCause(cause)
    )
  })
