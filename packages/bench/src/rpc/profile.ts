/**
 * Reads a V8 `.cpuprofile` (from `node --cpu-prof` or the inspector) and says where the CPU went:
 * self time per function, grouped into categories (serialization, Schema, tracing, cluster envelope
 * machinery, the fiber runtime, GC, socket I/O, ...), as a share of the busy (non-idle) time of the
 * main thread and as µs per call.
 *
 * Standalone: `node --import tsx packages/bench/src/rpc/profile.ts <file.cpuprofile> [calls] [top]`, or
 * `... <file.cpuprofile> --under "<function name and location>"` for the inclusive time of a function.
 */
import * as fs from "node:fs"
import { fileURLToPath } from "node:url"

interface CallFrame {
  readonly functionName: string
  readonly url: string
  readonly lineNumber: number
  readonly columnNumber: number
}

interface ProfileNode {
  readonly id: number
  readonly callFrame: CallFrame
  readonly children?: ReadonlyArray<number>
}

/** The `.cpuprofile` JSON. */
export interface CpuProfile {
  readonly nodes: ReadonlyArray<ProfileNode>
  readonly startTime: number
  readonly endTime: number
  readonly samples: ReadonlyArray<number>
  readonly timeDeltas: ReadonlyArray<number>
}

export const read = (file: string): CpuProfile => JSON.parse(fs.readFileSync(file, "utf8"))

interface HeapNode {
  readonly id: number
  readonly callFrame: CallFrame
  readonly children?: ReadonlyArray<HeapNode>
}

/** The `.heapprofile` JSON of the sampling heap profiler. */
export interface HeapProfile {
  readonly head: HeapNode
  readonly samples: ReadonlyArray<{ readonly size: number; readonly nodeId: number }>
}

export const readHeap = (file: string): HeapProfile => JSON.parse(fs.readFileSync(file, "utf8"))

/** Bytes allocated per call: in all, by category and by allocating function (`top`). */
export interface Allocations {
  readonly bytesPerCall: number
  readonly categories: ReadonlyArray<{ readonly category: Category | "idle"; readonly bytesPerCall: number }>
  readonly top: ReadonlyArray<{
    readonly name: string
    readonly location: string
    readonly bytesPerCall: number
  }>
}

/** An amount (µs, bytes) per function and location. */
type ByFunction = Map<string, { readonly frame: CallFrame; amount: number }>

const tally = (byFunction: ByFunction, frame: CallFrame, amount: number) => {
  const key = `${frame.functionName}|${frame.url}|${frame.lineNumber}|${frame.columnNumber}`
  const entry = byFunction.get(key)
  if (entry) entry.amount += amount
  else byFunction.set(key, { frame, amount })
}

/** The `count` functions with the largest amounts, largest first. */
const largest = (byFunction: ByFunction, count: number) =>
  Array.from(byFunction.values())
    .sort((a, b) => b.amount - a.amount)
    .slice(0, count)

/** The sampled allocations of a heap profile, per call, by the function that allocated them. */
export const summarizeAllocations = (profile: HeapProfile, calls: number, topCount = 20): Allocations => {
  const byId = new Map<number, HeapNode>()
  const visit = (node: HeapNode) => {
    byId.set(node.id, node)
    for (const child of node.children ?? []) visit(child)
  }
  visit(profile.head)
  const byCategory = new Map<Category | "idle", number>()
  const byFunction: ByFunction = new Map()
  let total = 0
  for (const sample of profile.samples) {
    const frame = byId.get(sample.nodeId)!.callFrame
    total += sample.size
    const category = categorize(frame)
    byCategory.set(category, (byCategory.get(category) ?? 0) + sample.size)
    tally(byFunction, frame, sample.size)
  }
  const perCall = (bytes: number) => (calls > 0 ? Math.round(bytes / calls) : 0)
  return {
    bytesPerCall: perCall(total),
    categories: Array.from(byCategory, ([category, bytes]) => ({
      category,
      bytesPerCall: perCall(bytes)
    })).sort((a, b) => b.bytesPerCall - a.bytesPerCall),
    top: largest(byFunction, topCount).map(({ frame, amount: bytes }) => ({
      name: frame.functionName || "(anonymous)",
      location: location(frame),
      bytesPerCall: perCall(bytes)
    }))
  }
}

/** `summarizeAllocations` as text. */
export const formatAllocations = (title: string, allocations: Allocations, topCount = 12): string =>
  [
    `== ${title}: ${allocations.bytesPerCall} bytes allocated per call`,
    ...allocations.categories.map(
      (row) => `  ${String(row.bytesPerCall).padStart(7)} B/call  ${row.category}`
    ),
    "  allocating functions:",
    ...allocations.top
      .slice(0, topCount)
      .map((row) => `  ${String(row.bytesPerCall).padStart(7)} B/call  ${row.name}  ${row.location}`)
  ].join("\n")

/** The categories, in the order they are tested: the first match wins. */
export const categories = [
  "gc",
  "serialization (msgpackr)",
  "schema (ParseResult, Schema, SchemaAST)",
  "tracing (spans, Tracer)",
  "cluster envelope/snowflake/reply",
  "cluster other (Sharding, Runners, entity manager)",
  "rpc (RpcClient, RpcServer)",
  "platform socket (Socket, NodeSocket)",
  "fiber runtime and scheduling (FiberRuntime, core, scheduler)",
  "effect other (Context, HashMap, Equal, Option, ...)",
  "socket I/O (node:net, streams, writev)",
  "node other (timers, events, ...)",
  "sql (pg, @effect/sql)",
  "foundation and bench code",
  "native (program, V8 builtins)"
] as const
export type Category = (typeof categories)[number]

const effectFile = (url: string) => /\/node_modules\/effect\/dist\/(?:esm|cjs)\/(.*)\.js$/.exec(url)?.[1]
const packageFile = (url: string, pkg: string) =>
  new RegExp(`/node_modules/@effect/${pkg}/dist/(?:esm|cjs)/(.*)\\.js$`).exec(url)?.[1]

const runtimeFiles = new RegExp(
  "^(internal/)?(" +
    [
      "fiberRuntime",
      "core",
      "core-effect",
      "scheduler",
      "Scheduler",
      "fiberRefs",
      "fiberRefs/patch",
      "runtimeFlags",
      "runtimeFlagsPatch",
      "fiberScope",
      "fiberId",
      "fiberMessage",
      "fiberStatus",
      "runtime",
      "Micro",
      "Effect",
      "Fiber",
      "FiberRef",
      "Deferred",
      "effect/circular",
      "layer",
      "defaultServices",
      "executionStrategy",
      "opCodes/.*"
    ].join("|") +
    ")$"
)

/** The category of one function. */
export const categorize = (frame: CallFrame): Category | "idle" => {
  const { functionName, url } = frame
  if (functionName === "(idle)") return "idle"
  if (functionName === "(garbage collector)") return "gc"
  if (url.includes("/msgpackr/")) return "serialization (msgpackr)"
  const effect = effectFile(url)
  if (effect !== undefined && /^(ParseResult|Schema|SchemaAST|internal\/schema\/.*)$/.test(effect)) {
    return "schema (ParseResult, Schema, SchemaAST)"
  }
  if (/span|tracer/i.test(functionName) || (effect !== undefined && /tracer|Tracer/.test(effect))) {
    return "tracing (spans, Tracer)"
  }
  const cluster = packageFile(url, "cluster")
  if (cluster !== undefined) {
    return /^(Envelope|Snowflake|Reply|Message|EntityAddress|EntityId|ShardId|RunnerAddress)$/.test(cluster)
      ? "cluster envelope/snowflake/reply"
      : "cluster other (Sharding, Runners, entity manager)"
  }
  if (packageFile(url, "rpc") !== undefined) return "rpc (RpcClient, RpcServer)"
  if (/\/node_modules\/@effect\/platform(-node|-node-shared)?\//.test(url)) {
    return "platform socket (Socket, NodeSocket)"
  }
  if (effect !== undefined) {
    return runtimeFiles.test(effect)
      ? "fiber runtime and scheduling (FiberRuntime, core, scheduler)"
      : "effect other (Context, HashMap, Equal, Option, ...)"
  }
  if (
    /^node:(net|internal\/(stream_base_commons|streams\/|net))/.test(url) ||
    (url === "" && /^(writev|writeBuffer|writeUtf8String|writeLatin1String|onStreamRead)$/.test(functionName))
  ) {
    return "socket I/O (node:net, streams, writev)"
  }
  if (url.startsWith("node:")) return "node other (timers, events, ...)"
  if (/\/node_modules\/(pg|pg-[a-z-]+|@effect\/sql[a-z-]*)\//.test(url)) return "sql (pg, @effect/sql)"
  if (url.includes("/packages/") && !url.includes("/node_modules/")) return "foundation and bench code"
  return "native (program, V8 builtins)"
}

/** Where a function is defined, as `package/path/file.js:line` (1-based). */
export const location = (frame: CallFrame): string => {
  if (frame.url === "") return ""
  const short = frame.url
    .replace(/^file:\/\/.*\/node_modules\//, "")
    .replace(/^file:\/\/.*\/packages\//, "packages/")
    .replace("/dist/esm/", "/dist/esm/")
  return `${short}:${frame.lineNumber + 1}`
}

export interface FunctionCost {
  readonly name: string
  readonly location: string
  readonly category: Category
  readonly ms: number
  readonly percent: number
  readonly usPerCall: number
}

export interface CategoryCost {
  readonly category: Category
  readonly ms: number
  readonly percent: number
  readonly usPerCall: number
}

/** Where one process's main thread spent its time. */
export interface Summary {
  readonly wallMs: number
  readonly busyMs: number
  /** busy time / wall time */
  readonly busyPercent: number
  readonly calls: number
  /** busy µs of the main thread per call */
  readonly busyUsPerCall: number
  readonly categories: ReadonlyArray<CategoryCost>
  readonly top: ReadonlyArray<FunctionCost>
}

/** Self time per function and category; `calls` is the number of calls served or made meanwhile. */
export const summarize = (profile: CpuProfile, calls: number, topCount = 30): Summary => {
  const byId = new Map<number, ProfileNode>()
  for (const node of profile.nodes) byId.set(node.id, node)
  const selfUs = new Map<number, number>()
  // sample i lasts until sample i + 1 (the last one until endTime), as Chrome DevTools counts it
  let timestamp = profile.startTime
  const stamps: Array<number> = []
  for (const delta of profile.timeDeltas) stamps.push((timestamp += delta))
  for (let i = 0; i < profile.samples.length; i++) {
    const duration = (i + 1 < stamps.length ? stamps[i + 1]! : profile.endTime) - stamps[i]!
    const id = profile.samples[i]!
    selfUs.set(id, (selfUs.get(id) ?? 0) + Math.max(0, duration))
  }
  const functions: ByFunction = new Map()
  const byCategory = new Map<Category, number>()
  let busyUs = 0
  for (const [id, us] of selfUs) {
    const frame = byId.get(id)!.callFrame
    const category = categorize(frame)
    if (category === "idle") continue
    busyUs += us
    byCategory.set(category, (byCategory.get(category) ?? 0) + us)
    tally(functions, frame, us)
  }
  const wallUs = profile.endTime - profile.startTime
  const perCall = (us: number) => (calls > 0 ? Number((us / calls).toFixed(2)) : 0)
  const percent = (us: number) => Number(((us / busyUs) * 100).toFixed(1))
  return {
    wallMs: Math.round(wallUs / 1000),
    busyMs: Math.round(busyUs / 1000),
    busyPercent: Number(((busyUs / wallUs) * 100).toFixed(1)),
    calls,
    busyUsPerCall: perCall(busyUs),
    categories: Array.from(byCategory, ([category, us]) => ({
      category,
      ms: Math.round(us / 1000),
      percent: percent(us),
      usPerCall: perCall(us)
    })).sort((a, b) => b.ms - a.ms),
    top: largest(functions, topCount).map(({ frame, amount: us }) => ({
      name: frame.functionName || "(anonymous)",
      location: location(frame),
      category: categorize(frame) as Category,
      ms: Number((us / 1000).toFixed(1)),
      percent: percent(us),
      usPerCall: perCall(us)
    }))
  }
}

/**
 * Inclusive time of the frames whose `name location` contains `needle` (outermost match per sample),
 * as a share of busy time: the synchronous cost of an engine function, such as
 * `make effect/dist/esm/Schema.js:1313`. Work it schedules on other fibers is not included.
 */
export const inclusive = (profile: CpuProfile, needle: string): number => {
  const byId = new Map<number, ProfileNode>()
  const parent = new Map<number, number>()
  for (const node of profile.nodes) {
    byId.set(node.id, node)
    for (const child of node.children ?? []) parent.set(child, node.id)
  }
  const label = (frame: CallFrame) => `${frame.functionName || "(anonymous)"} ${location(frame)}`
  let timestamp = profile.startTime
  const stamps = profile.timeDeltas.map((delta) => (timestamp += delta))
  let busy = 0
  let inside = 0
  for (let i = 0; i < profile.samples.length; i++) {
    const duration = (i + 1 < stamps.length ? stamps[i + 1]! : profile.endTime) - stamps[i]!
    const id = profile.samples[i]!
    if (categorize(byId.get(id)!.callFrame) === "idle") continue
    busy += duration
    for (let current: number | undefined = id; current !== undefined; current = parent.get(current)) {
      if (label(byId.get(current)!.callFrame).includes(needle)) {
        inside += duration
        break
      }
    }
  }
  return busy === 0 ? 0 : Number(((inside / busy) * 100).toFixed(1))
}

/** A summary as text: the categories, then the hottest functions. */
export const format = (title: string, summary: Summary, topCount = 15): string => {
  const lines = [
    `== ${title}: main thread busy ${summary.busyMs} of ${summary.wallMs} ms (${summary.busyPercent}%), ` +
      `${summary.busyUsPerCall} µs/call`
  ]
  for (const row of summary.categories) {
    lines.push(
      `  ${row.percent.toFixed(1).padStart(5)}%  ${row.usPerCall.toFixed(2).padStart(7)} µs/call  ${row.category}`
    )
  }
  lines.push("  hottest functions (self time):")
  for (const row of summary.top.slice(0, topCount)) {
    lines.push(
      `  ${row.percent.toFixed(1).padStart(5)}%  ${row.usPerCall.toFixed(2).padStart(7)} µs/call  ${row.name}  ${row.location}  [${row.category}]`
    )
  }
  return lines.join("\n")
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const [file, second, third] = process.argv.slice(2)
  if (!file) {
    console.error("usage: profile.ts <file.cpuprofile> [calls] [top] | <file.cpuprofile> --under <needle>")
    process.exit(2)
  }
  if (second === "--under") {
    console.log(`${inclusive(read(file), third ?? "")}% of busy time under "${third}"`)
  } else {
    const count = Number(third ?? 25)
    console.log(format(file, summarize(read(file), Number(second ?? 0), count), count))
  }
}
