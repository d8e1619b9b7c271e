/**
 * The lives of a singleton's instances: when each ran, on which node, under which fencing epoch.
 * `overlaps` finds instances that ran at the same time, which the Supervisor's at-most-one guarantee
 * forbids; the multi-process tests and the singleton benchmark use it to detect duplicates.
 */

/** One instance's life, from its start to its end (`undefined` while it runs). */
export interface Life {
  /** the process it ran in */
  readonly worker: string
  readonly node: string
  readonly epoch: number
  readonly start: number
  end: number | undefined
}

/** Every pair `[earlier, later]` of lives that overlapped: `later` started before `earlier` ended. */
export const overlaps = (lives: ReadonlyArray<Life>): Array<readonly [Life, Life]> => {
  const sorted = [...lives].sort((a, b) => a.start - b.start)
  const pairs: Array<readonly [Life, Life]> = []
  sorted.forEach((later, i) => {
    for (const earlier of sorted.slice(0, i)) {
      if (earlier.end === undefined || earlier.end > later.start) pairs.push([earlier, later])
    }
  })
  return pairs
}
