import type { RunnerStorage } from "@effect/cluster/RunnerStorage"
import * as Effect from "effect/Effect"

/**
 * For in-memory storages that follow the fate of their node: `live(operation, f)` runs `f` only
 * while this node's `RunnerStorage` answers, and fails with `toError(operation, cause)` once it does
 * not (a node severed from storage, as `TestCluster.crash` does), as a killed process's database
 * connection would.
 */
export const whileStorageAnswers =
  <E>(runners: RunnerStorage["Type"], toError: (operation: string, cause: unknown) => E) =>
  <A>(operation: string, f: () => A): Effect.Effect<A, E> =>
    runners.getRunners.pipe(
      Effect.mapError((cause) => toError(operation, cause)),
      Effect.zipRight(Effect.sync(f))
    )
