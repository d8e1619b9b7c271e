/**
 * The cost of one line of the engine, measured alone: `RpcClient` calls `rpc.payloadSchema.make(payload)`
 * on every call (`@effect/rpc/src/RpcClient.ts:306`). For the cluster's own runner RPC
 * (`Runners.Rpcs`, `Effect`), whose payload holds transformations (`SnowflakeFromString`,
 * `EntityAddress`, `Headers`), `make` validates with `ParseResult.validateSync(this)`, which derives a
 * fresh type AST (`SchemaAST.typeAST`) and so misses the parser memo and compiles a new parser on
 * every call. A validator built once does the same check.
 *
 * `node --import tsx packages/bench/src/rpc/payloadMake.ts`
 */
import { EntityAddress } from "@effect/cluster/EntityAddress"
import * as EntityId from "@effect/cluster/EntityId"
import type * as EntityType from "@effect/cluster/EntityType"
import * as Runners from "@effect/cluster/Runners"
import * as ShardId from "@effect/cluster/ShardId"
import * as Snowflake from "@effect/cluster/Snowflake"
import * as Headers from "@effect/platform/Headers"
import * as ParseResult from "effect/ParseResult"
import type * as Schema from "effect/Schema"

const schema = Runners.Rpcs.requests.get("Effect")!.payloadSchema as Schema.Schema.Any & {
  readonly make: (props: unknown) => unknown
}
const payload = {
  request: {
    _tag: "Request",
    requestId: Snowflake.Snowflake(123456789n),
    address: new EntityAddress({
      shardId: ShardId.make("default", 1),
      entityId: EntityId.make("echo-1"),
      entityType: "BenchEcho" as EntityType.EntityType
    }),
    tag: "Echo",
    payload: { seq: 1, text: "the quick brown fox" },
    headers: Headers.empty
  },
  persisted: false
}
const validateOnce = ParseResult.validateSync(schema)

const time = (name: string, f: () => unknown, n: number) => {
  for (let i = 0; i < n / 10; i++) f()
  const startedAt = performance.now()
  for (let i = 0; i < n; i++) f()
  console.log(`${name}: ${(((performance.now() - startedAt) * 1000) / n).toFixed(2)} µs per call`)
}

for (let round = 1; round <= 3; round++) {
  time("payloadSchema.make, as the engine calls it", () => schema.make(payload), 20_000)
  time("a validator built once", () => validateOnce(payload), 200_000)
}
