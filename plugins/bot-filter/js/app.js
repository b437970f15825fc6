// The component's entry module: componentize-js builds its `init`, `process` and `onTimers`.
import { exportTransform } from "weir-sdk/guest";

import { BotFilter } from "./bot-filter.js";

export const { init, process, onTimers } = exportTransform(BotFilter);
