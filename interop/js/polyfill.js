// Node 20 support for @moq/lite 0.2.2 in Node scripts: the package expects
// Node 22+ (Promise.withResolvers, Set.prototype.difference and a global
// WebSocket). Import this module before "@moq/lite". Browsers need none of it.
import WebSocket from "ws";

if (typeof Promise.withResolvers !== "function") {
	Promise.withResolvers = function withResolvers() {
		let resolve;
		let reject;
		const promise = new this((res, rej) => {
			resolve = res;
			reject = rej;
		});
		return { promise, resolve, reject };
	};
}

if (typeof Set.prototype.difference !== "function") {
	Object.defineProperty(Set.prototype, "difference", {
		configurable: true,
		writable: true,
		value: function difference(other) {
			const out = new Set();
			for (const v of this) {
				if (!other.has(v)) out.add(v);
			}
			return out;
		},
	});
}

if (typeof globalThis.WebSocket !== "function") {
	globalThis.WebSocket = WebSocket;
}
