// Browser side of the Chromium burst tests (burst_test.go). The Go test
// serves this page (bundled with esbuild) and passes in the query string:
//   conn   NAME:TRANSPORT, repeated: the connections to open to the relay,
//          TRANSPORT being "webtransport" or "websocket"
//   wt     the relay's WebTransport URL, https://127.0.0.1:PORT/
//   hash   the SHA-256 of the relay's certificate, in hex
//   ws     the relay's URL for the WebSocket fallback, http://127.0.0.1:PORT/
//          (legacy dialect, moq-lite-02 via SETUP)
// Every connection NAME publishes interop/browser-NAME, answering each
// subscribed burst track with its burst (js/burst.js), and subscribes to the
// burst tracks GET /state lists for it. Reports, as JSON to POST /event:
//   {type: "connected", conn, version}, {type: "failed", conn, error}
//   {type: "published", conn, path}
//   {type: "requested" | "burst-written", conn, path, track, seq, error}
//     (publishing)
//   {type: "burst-group", conn, path, track, seq, sizes, hashes, error},
//   {type: "burst-track-ended", conn, path, track, error} (subscribing)
// GET /state says what the test wants next:
//   {subscribe: [{conn, path, track}, …] (only ever appended to), done}
import * as Moq from "@moq/lite";
import Qmux from "@moq/qmux";

import { readBurstTrack, serveBursts } from "../js/burst.js";
import { describe, post, status } from "./report.js";

const params = new URLSearchParams(location.search);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function hexToBytes(hex) {
	if (!/^([0-9a-fA-F]{2})+$/.test(hex)) throw new Error(`bad certificate hash ${hex}`);
	const out = new Uint8Array(hex.length / 2);
	for (let i = 0; i < out.length; i++) out[i] = parseInt(hex.slice(2 * i, 2 * i + 2), 16);
	return out;
}

async function connect(transport) {
	if (transport === "webtransport") {
		const hash = hexToBytes(params.get("hash") ?? "");
		return Moq.Connection.connect(new URL(params.get("wt")), {
			webtransport: { serverCertificateHashes: [{ algorithm: "sha-256", value: hash }] },
			websocket: { enabled: false },
		});
	}
	if (transport !== "websocket") throw new Error(`unknown transport ${transport}`);
	// What connect() does when the page has no WebTransport: a qmux session
	// offering "qmux-00, webtransport" without an application protocol.
	const url = new URL(params.get("ws"));
	const session = new Qmux(url);
	// ready never settles when the WebSocket is refused: watch closed too.
	const closed = session.closed.then((info) => {
		throw new Error(`WebSocket session closed before ready: ${describe(info)}`);
	});
	await Promise.race([session.ready, closed]);
	return Moq.Connection.connect(url, { transport: session });
}

// open connects one connection, publishes its broadcast and returns it.
async function open(name, transport) {
	const conn = await connect(transport);
	await post("/event", { type: "connected", conn: name, version: conn.version });
	void conn.closed.then(
		() => console.info(`${name}: connection closed`),
		(e) => console.warn(`${name}: connection closed:`, e),
	);
	const path = `interop/browser-${name}`;
	const broadcast = new Moq.Broadcast();
	conn.publish(Moq.Path.from(path), broadcast);
	await post("/event", { type: "published", conn: name, path });
	void serveBursts(broadcast, (m) => post("/event", { ...m, conn: name, path }), describe).catch((e) =>
		post("/event", { type: "failed", conn: name, error: `publish: ${describe(e)}` }),
	);
	return conn;
}

async function main() {
	const conns = new Map(); // name → Promise of its connection
	for (const spec of params.getAll("conn")) {
		const [name, transport] = spec.split(":");
		status(`connecting ${name} over ${transport}`);
		const p = open(name, transport);
		p.catch((e) => post("/event", { type: "failed", conn: name, error: `connect over ${transport}: ${describe(e)}` }));
		conns.set(name, p);
	}

	// Subscribe to what the test lists, as it lists it.
	const consumed = new Map(); // conn + " " + path → consumed broadcast
	let subscribed = 0;
	for (;;) {
		let state;
		try {
			state = await (await fetch("/state", { cache: "no-store" })).json();
		} catch (e) {
			console.warn("state poll:", e);
			await sleep(50);
			continue;
		}
		const subs = state.subscribe ?? [];
		for (; subscribed < subs.length; subscribed++) {
			const { conn: name, path, track } = subs[subscribed];
			void (async () => {
				const conn = await conns.get(name);
				const key = `${name} ${path}`;
				if (!consumed.has(key)) consumed.set(key, conn.consume(Moq.Path.from(path)));
				await readBurstTrack(consumed.get(key), track, (m) => post("/event", { ...m, conn: name, path }), describe);
			})().catch((e) => post("/event", { type: "failed", conn: name, error: `subscribe ${path} ${track}: ${describe(e)}` }));
		}
		if (state.done) break;
		await sleep(50);
	}
	status("done");
	for (const p of conns.values()) {
		p.then((conn) => conn.close()).catch(() => {});
	}
}

main().catch((e) => {
	status(`failed: ${describe(e)}`);
	void post("/event", { type: "failed", error: describe(e) });
});
