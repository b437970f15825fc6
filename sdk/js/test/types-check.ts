// Type-checked (`npm run check-types`, part of the test suite), not run: a transform written
// in TypeScript against the SDK's types, and its export through the WIT's generated types.

import { Config, Context, Event, GeoError, Level, Needs, Transform, TtlRefresh } from "weir-sdk";
import { exportTransform } from "weir-sdk/guest";
import { TestHarness } from "weir-sdk/testing";
import type { Batch } from "../types/wit/interfaces/weir-transform-types.js";

class Tag extends Transform {
  private readonly env: string;

  constructor(config: Config) {
    super(config);
    this.env = config.nonEmptyOr("env", "prod");
  }

  needs(): Needs {
    return Needs.fields(["ip"]).withState(["seen"]).withTtl("seen", 60_000, TtlRefresh.ON_WRITE);
  }

  process(event: Event, ctx: Context): void {
    const seen = ctx.state(event.key, "seen", 0);
    ctx.setState(event.key, "seen", typeof seen === "number" ? seen + 1 : 1);
    const place = ctx.geoMany([event.getString("ip") ?? ""])[0];
    event.set("country", place instanceof GeoError ? null : (place?.countryIso ?? null));
    event.set("env", this.env);
    ctx.log(Level.DEBUG, `tagged ${event.keyText}`);
    ctx.emit(event);
  }
}

const { process } = exportTransform(Tag);
declare const batch: Batch;
const outputs: number = process(batch).outputs.length;
const [out] = new TestHarness(Tag, { env: "test" }).processOne("u", 1, { ip: "81.2.69.10" });
const env: string | undefined = out?.route;
export { outputs, env };
