import * as Context from "effect/Context"
import * as Duration from "effect/Duration"

export interface DetectorSettings {
  readonly heartbeatInterval: Duration.Duration
  readonly suspectAfter: Duration.Duration
  readonly heartbeatTimeout: Duration.Duration
  readonly probeTimeout: Duration.Duration
  readonly discoveryInterval: Duration.Duration
  readonly directoryRefreshInterval: Duration.Duration
}

export const defaultSettings: DetectorSettings = {
  heartbeatInterval: Duration.millis(250),
  suspectAfter: Duration.seconds(1),
  heartbeatTimeout: Duration.seconds(3),
  probeTimeout: Duration.millis(500),
  discoveryInterval: Duration.millis(500),
  directoryRefreshInterval: Duration.seconds(5)
}

export class DetectorConfig extends Context.Reference<DetectorConfig>()(
  "@foundation/core/FailureDetector/Config",
  {
    defaultValue: () => defaultSettings
  }
) {}
