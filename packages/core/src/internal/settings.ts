import * as Duration from "effect/Duration"

/** Overrides of a module's settings: every field optional, durations as `Duration.DurationInput`. */
export type Input<S> = {
  readonly [K in keyof S]?: S[K] extends Duration.Duration ? Duration.DurationInput : S[K]
}

/**
 * `defaults` with `input` applied: a field left out (or `undefined`) keeps its default; a field whose
 * default is a `Duration` is decoded with `Duration.decode`.
 */
export const withDefaults = <S extends object>(defaults: S, input: Input<S> | undefined): S => {
  const resolved: Record<string, unknown> = { ...(defaults as Record<string, unknown>) }
  for (const [key, value] of Object.entries(input ?? {})) {
    if (value === undefined) continue
    resolved[key] = Duration.isDuration(resolved[key])
      ? Duration.decode(value as Duration.DurationInput)
      : value
  }
  return resolved as unknown as S
}
