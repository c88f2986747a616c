// Loads @moq/lite under Node with the polyfills and prints what the
// moqbridge interop tests rely on, as one JSON line.
import "./polyfill.js";

const Moq = await import("@moq/lite");

const { promise, resolve } = Promise.withResolvers();
resolve(42);
const diff = [...new Set([1, 2, 3]).difference(new Set([2]))];

console.log(
	JSON.stringify({
		withResolvers: await promise,
		difference: diff,
		webSocket: typeof globalThis.WebSocket,
		connect: typeof Moq.Connection.connect,
		broadcast: typeof Moq.Broadcast,
		path: Moq.Path.from("interop", "go"),
	}),
);
