// The hostile test plugin in JavaScript (see `../hostile/src/lib.rs`): a record whose
// `action` is `trap` throws, `spin` loops forever, `hog` allocates without bound, `recurse`
// recurses without end, `flood` emits 64 copies of a 64 KiB value, `timers` sets timers until
// the host stops it, `hoard` stores ever more state, `dead-letter` is dead-lettered by the
// plugin itself, `timer` sets a timer a second later, and anything else is counted in state
// and emitted with `"seen": true`. A timer of a key starting with `trap` throws.

import { Event, Transform } from "weir-sdk";
import { exportTransform } from "weir-sdk/guest";

function depth(n) {
  return depth(n + 1) + 1;
}

class Hostile extends Transform {
  constructor(config) {
    super();
    if (config.get("fail_init") !== undefined) throw new Error("init refused: fail_init is set");
  }

  process(event, ctx) {
    switch (event.getString("action")) {
      case "trap":
        throw new Error("hostile plugin asked to trap");
      case "spin":
        for (;;) {}
      case "hog": {
        const hoard = [];
        for (;;) hoard.push(new Uint8Array(1 << 20).fill(1));
      }
      case "recurse":
        ctx.counter("depth", depth(1));
        break;
      case "flood": {
        const big = Event.create({ pad: "x".repeat(64 << 10) }, 0);
        for (let i = 0; i < 64; i++) ctx.emit(big);
        break;
      }
      case "timers":
        for (let at = 0; at < 10_000_000; at++) ctx.setTimer(event.key, at);
        ctx.emit(event);
        break;
      case "hoard": {
        const block = new Uint8Array(64 << 10).fill(7);
        for (let i = 0; i < 1_000_000; i++) ctx.setStateBytes(event.key, `block-${i}`, block);
        ctx.emit(event);
        break;
      }
      case "dead-letter":
        ctx.deadLetter("asked to dead-letter", event);
        break;
      case "timer":
        ctx.setTimer(event.key, event.time + 1000);
        ctx.emit(event);
        break;
      default: {
        const count = ctx.state(event.key, "count", 0) + 1;
        ctx.setState(event.key, "count", count);
        event.set("seen", true);
        event.set("count", count);
        ctx.emit(event);
      }
    }
  }

  onTimer(key, at, ctx) {
    if (new TextDecoder().decode(key).startsWith("trap")) throw new Error("hostile timer asked to trap");
    ctx.route("timers", Event.create({ timer: at }, at));
  }
}

export const { init, process, onTimers } = exportTransform(Hostile);
