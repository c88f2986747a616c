// Browser side of the moqbridge Chromium interop test. The Go test serves
// this page (bundled with esbuild) and passes in the query string:
//   relay      the URL of the moqbridge relay: https://127.0.0.1:PORT/ for
//              WebTransport, http://127.0.0.1:PORT/ for the WebSocket fallback
//   hash       the SHA-256 of the relay's certificate, in hex (WebTransport)
//   transport  "websocket": no WebTransport, connect over the WebSocket
//              fallback (legacy dialect, moq-lite-02 via SETUP)
// The page talks @moq/lite 0.2.2 to the relay and reports back to the
// page server over plain HTTP:
//   POST /log    every console message and uncaught error
//   POST /event  milestones: connected (with the negotiated version),
//                announced (each announcement under "interop"), subscribed,
//                published, browser-final, failed
//   POST /group  each group received on interop/go "data", frames in base64
//   GET  /state  what the test wants next: {browserFinal, done}
import * as Moq from "@moq/lite";

import { patternFrame } from "../js/burst.js";
import { describe, post, status } from "./report.js";

const params = new URLSearchParams(location.search);

// --- helpers shared with the Go test (keep in step with chromium_test.go) --

// BROWSER_FINAL lists, per final group, the sizes of the pattern frames that
// follow the group's marker frame "browser-final <i>".
const BROWSER_FINAL = [[1, 0, 100], [20000], [0], [3, 70000, 5]];

const text = new TextEncoder();

function toBase64(bytes) {
	let s = "";
	for (let i = 0; i < bytes.length; i += 0x8000) {
		s += String.fromCharCode.apply(null, bytes.subarray(i, i + 0x8000));
	}
	return btoa(s);
}

function hexToBytes(hex) {
	if (!/^([0-9a-fA-F]{2})+$/.test(hex)) throw new Error(`bad certificate hash ${hex}`);
	const out = new Uint8Array(hex.length / 2);
	for (let i = 0; i < out.length; i++) out[i] = parseInt(hex.slice(2 * i, 2 * i + 2), 16);
	return out;
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

let state = { browserFinal: false, done: false };
async function pollState() {
	while (!state.done) {
		try {
			const r = await fetch("/state");
			state = await r.json();
		} catch (e) {
			console.warn("state poll:", e);
		}
		await sleep(50);
	}
}

// --- subscribing to the Go broadcast ---------------------------------------

async function readGroup(group, first) {
	const frames = [];
	try {
		for (;;) {
			const f = await group.readFrame();
			if (f === undefined) break;
			frames.push(toBase64(f));
		}
		await post("/group", { seq: group.sequence, first, frames });
	} catch (e) {
		await post("/group", { seq: group.sequence, first, frames, error: describe(e) });
	}
}

async function subscribe(conn) {
	const broadcast = conn.consume(Moq.Path.from("interop/go"));
	const track = broadcast.subscribe("data", 0);
	let first = true;
	for (;;) {
		const group = await track.recvGroup();
		if (!group) break;
		if (first) void post("/event", { type: "subscribed", seq: group.sequence });
		void readGroup(group, first);
		first = false;
	}
	console.info("interop/go data ended");
}

// --- discovering broadcasts ------------------------------------------------

async function discover(conn) {
	const announced = conn.announced(Moq.Path.from("interop"));
	for (;;) {
		const a = await announced.next();
		if (!a) break;
		void post("/event", { type: "announced", path: a.path, active: a.active });
	}
}

// --- publishing the browser broadcast --------------------------------------

async function serveData(track) {
	// Warm-up groups until the Go subscriber has joined (it starts at the
	// latest group), then the final groups the Go test checks byte for byte.
	while (!state.browserFinal && !state.done) {
		const g = track.appendGroup();
		g.writeFrame(text.encode(`browser-warmup ${g.sequence}`));
		g.close();
		await sleep(100);
	}
	let firstFinal;
	BROWSER_FINAL.forEach((sizes, i) => {
		const g = track.appendGroup();
		if (firstFinal === undefined) firstFinal = g.sequence;
		g.writeFrame(text.encode(`browser-final ${i}`));
		sizes.forEach((size, k) => g.writeFrame(patternFrame(i, k, size)));
		g.close();
	});
	await post("/event", { type: "browser-final", seq: firstFinal });
	// Keep the track open: the test closes the session when it has checked.
}

async function publish(conn) {
	const broadcast = new Moq.Broadcast();
	conn.publish(Moq.Path.from("interop/browser"), broadcast);
	void post("/event", { type: "published" });
	for (;;) {
		const req = await broadcast.requested();
		if (!req) break;
		console.info(`track requested: ${req.track.name} priority ${req.priority}`);
		if (req.track.name !== "data") {
			req.track.close(new Error(`no track ${req.track.name}`));
			continue;
		}
		void serveData(req.track).catch((e) => console.error("serving data:", e));
	}
}

// --- main --------------------------------------------------------------------

async function main() {
	const relay = params.get("relay");
	const hash = params.get("transport") === "websocket" ? undefined : hexToBytes(params.get("hash") ?? "");
	if (!relay) throw new Error("no relay URL in the query string");
	status(`connecting to ${relay}`);
	void pollState();

	let conn;
	if (params.get("transport") === "websocket") {
		// connect() races WebTransport only when globalThis.WebTransport
		// exists: without it, the WebSocket fallback is the only path.
		delete globalThis.WebTransport;
		conn = await Moq.Connection.connect(new URL(relay));
	} else {
		conn = await Moq.Connection.connect(new URL(relay), {
			webtransport: { serverCertificateHashes: [{ algorithm: "sha-256", value: hash }] },
			websocket: { enabled: false },
		});
	}
	status(`connected: ${conn.version}`);
	await post("/event", { type: "connected", version: conn.version });
	void conn.closed.then(
		() => console.info("connection closed"),
		(e) => console.warn("connection closed:", e),
	);

	void discover(conn).catch((e) => {
		console.error("announced:", e);
		void post("/event", { type: "failed", error: `announced: ${describe(e)}` });
	});
	void subscribe(conn).catch((e) => {
		console.error("subscribe:", e);
		void post("/event", { type: "failed", error: `subscribe: ${describe(e)}` });
	});
	void publish(conn).catch((e) => {
		console.error("publish:", e);
		void post("/event", { type: "failed", error: `publish: ${describe(e)}` });
	});

	while (!state.done) await sleep(50);
	status("done");
	conn.close();
}

main().catch((e) => {
	status(`failed: ${describe(e)}`);
	void post("/event", { type: "failed", error: describe(e) });
});
