// Node side of the moqbridge WebSocket interop tests (node_test.go).
//
//   node js/peer.js MODE URL DIALECT [ARGS…]
//
// URL is the moqbridge relay (http://127.0.0.1:PORT/…); DIALECT selects how
// @moq/lite 0.2.2 reaches it over the @moq/qmux 0.0.6 WebSocket polyfill:
//   legacy  Connection.connect(url): subprotocols "qmux-00, webtransport",
//           no application protocol, version chosen by SETUP
//   qmux    a qmux Session created here with protocols ["moq-lite-04"],
//           handed to Connection.connect(url, { transport })
//
// The script writes one JSON object per line on stdout (events for the Go
// test) and reads commands, one per line, on stdin ("final", "done").
// Everything the libraries log goes to stderr.
//
// Modes:
//   publish PATH       publishes PATH with tracks "a" and "b": warm-up groups
//                      every 100 ms until "final", then NODE_FINAL
//   subscribe PATH     subscribes to PATH tracks "a" and "b" and reports every
//                      group, frames in base64
//   announced PREFIX   reports connection.announced(PREFIX)
//   auth               with a token for root "room", put "alice", get "bob":
//                      publishes "mallory" and "alice", subscribes to "bob"
//                      and to "secret"
//   refused            connects and reports how the connection fails
//   burst PATH         publishes PATH (unless PATH is "-") serving bursts (see
//                      js/burst.js) and, for each command "sub PATH TRACK",
//                      subscribes to that burst track and reports its groups
import "./polyfill.js";

// Record the sockets the polyfill opens, to report the negotiated
// WebSocket subprotocol and handshake errors.
const sockets = [];
const BaseWebSocket = globalThis.WebSocket;
globalThis.WebSocket = class TracedWebSocket extends BaseWebSocket {
	constructor(...args) {
		super(...args);
		const rec = { errors: [] };
		sockets.push(rec);
		this.on("error", (e) => rec.errors.push(String(e?.message ?? e)));
		this.on("open", () => {
			rec.subprotocol = this.protocol;
		});
	}
};

// The libraries log with console.*: keep stdout for events.
for (const level of ["log", "debug", "info", "warn"]) console[level] = console.error.bind(console);

const Moq = await import("@moq/lite");
const Qmux = (await import("@moq/qmux")).default;
const { patternFrame, readBurstTrack, serveBursts } = await import("./burst.js");

const [mode, relay, dialect, ...args] = process.argv.slice(2);

function emit(obj) {
	process.stdout.write(`${JSON.stringify(obj, (_k, v) => (typeof v === "bigint" ? v.toString() : v))}\n`);
}

function describe(e) {
	if (e instanceof Error) return `${e.name}: ${e.message}`;
	return String(e);
}

function fail(e) {
	emit({ type: "failed", error: describe(e) });
	process.exit(1);
}
process.on("unhandledRejection", (e) => console.error("unhandled rejection:", e));

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const text = new TextEncoder();

// NODE_FINAL is nodeFinal in node_test.go: per track, per final group, the
// sizes of the pattern frames after the marker "node-final <track> <i>".
// Frames over 16 360 bytes need several WebSocket messages.
const NODE_FINAL = {
	a: [[1, 0, 100], [20000], [0]],
	b: [[3, 70000, 5], [16361, 16360], [0, 0]],
};
const TRACK_BASE = { a: 0, b: 50 };

function toBase64(bytes) {
	return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString("base64");
}

// --- commands from the Go test -------------------------------------------------

const commands = { final: Promise.withResolvers(), done: Promise.withResolvers() };
// Commands with arguments ("sub PATH TRACK"), by name, once a mode sets them.
const handlers = {};
{
	let buf = "";
	process.stdin.setEncoding("utf8");
	process.stdin.on("data", (chunk) => {
		buf += chunk;
		let i;
		while ((i = buf.indexOf("\n")) >= 0) {
			const cmd = buf.slice(0, i).trim();
			buf = buf.slice(i + 1);
			const [name, ...cmdArgs] = cmd.split(" ");
			if (handlers[name]) handlers[name](...cmdArgs);
			else commands[cmd]?.resolve();
		}
	});
	process.stdin.on("end", () => commands.done.resolve());
}
let finalSent = false;
void commands.final.promise.then(() => {
	finalSent = true;
});

// --- connecting ----------------------------------------------------------------

async function connect(url) {
	if (dialect === "legacy") return Moq.Connection.connect(url);
	if (dialect !== "qmux") throw new Error(`unknown dialect ${dialect}`);
	const session = new Qmux(url, { protocols: ["moq-lite-04"] });
	// ready never settles when the WebSocket fails: watch closed too.
	const closed = session.closed.then((info) => {
		throw new Error(`qmux session closed before ready: ${JSON.stringify(info)}`);
	});
	await Promise.race([session.ready, closed]);
	return Moq.Connection.connect(url, { transport: session });
}

async function connectAndReport(url) {
	const conn = await connect(url);
	emit({
		type: "connected",
		version: conn.version,
		subprotocol: sockets.map((s) => s.subprotocol).find((p) => p !== undefined) ?? "",
	});
	return conn;
}

// --- publishing ------------------------------------------------------------------

async function serveTrack(track) {
	const name = track.name;
	const finals = NODE_FINAL[name];
	while (!finalSent) {
		const g = track.appendGroup();
		g.writeFrame(text.encode(`node-warmup ${name} ${g.sequence}`));
		g.close();
		await Promise.race([sleep(100), commands.final.promise]);
	}
	let first;
	finals.forEach((sizes, i) => {
		const g = track.appendGroup();
		if (first === undefined) first = g.sequence;
		g.writeFrame(text.encode(`node-final ${name} ${i}`));
		sizes.forEach((size, k) => g.writeFrame(patternFrame(TRACK_BASE[name] + i, k, size)));
		g.close();
	});
	emit({ type: "final", track: name, seq: first });
}

async function publishMode(conn, path) {
	const broadcast = new Moq.Broadcast();
	conn.publish(Moq.Path.from(path), broadcast);
	emit({ type: "published", path });
	for (;;) {
		const req = await broadcast.requested();
		if (!req) break;
		emit({ type: "requested", path, track: req.track.name });
		if (!NODE_FINAL[req.track.name]) {
			req.track.close(new Error(`no track ${req.track.name}`));
			continue;
		}
		void serveTrack(req.track).catch((e) => emit({ type: "failed", error: `serving ${req.track.name}: ${describe(e)}` }));
	}
}

// --- subscribing -----------------------------------------------------------------

async function readGroup(path, name, group) {
	const frames = [];
	try {
		for (;;) {
			const f = await group.readFrame();
			if (f === undefined) break;
			frames.push(toBase64(f));
		}
		emit({ type: "group", path, track: name, seq: group.sequence, frames });
	} catch (e) {
		emit({ type: "group", path, track: name, seq: group.sequence, frames, error: describe(e) });
	}
}

async function subscribeTrack(conn, path, name) {
	const track = conn.consume(Moq.Path.from(path)).subscribe(name, 0);
	let first = true;
	for (;;) {
		const group = await track.recvGroup();
		if (!group) break;
		if (first) emit({ type: "subscribed", path, track: name, seq: group.sequence });
		first = false;
		void readGroup(path, name, group);
	}
	emit({ type: "track-ended", path, track: name });
}

// --- modes -----------------------------------------------------------------------

async function main() {
	const url = new URL(relay);
	switch (mode) {
		case "publish": {
			const conn = await connectAndReport(url);
			void publishMode(conn, args[0]).catch((e) => fail(`publish: ${describe(e)}`));
			break;
		}
		case "subscribe": {
			const conn = await connectAndReport(url);
			for (const name of ["a", "b"]) {
				void subscribeTrack(conn, args[0], name).catch((e) => fail(`subscribe ${name}: ${describe(e)}`));
			}
			break;
		}
		case "announced": {
			const conn = await connectAndReport(url);
			const announced = conn.announced(Moq.Path.from(args[0]));
			emit({ type: "listening", prefix: args[0] });
			void (async () => {
				for (;;) {
					const a = await announced.next();
					if (!a) break;
					emit({ type: "announced", path: a.path, active: a.active });
				}
				emit({ type: "announced-ended" });
			})().catch((e) => fail(`announced: ${describe(e)}`));
			break;
		}
		case "auth": {
			const conn = await connectAndReport(url);
			// Outside the token's put: the relay must not take it.
			void publishMode(conn, "mallory").catch((e) => emit({ type: "publish-error", path: "mallory", error: describe(e) }));
			void publishMode(conn, "alice").catch((e) => fail(`publish alice: ${describe(e)}`));
			void subscribeTrack(conn, "bob", "a").catch((e) => fail(`subscribe bob: ${describe(e)}`));
			// Outside the token's get: the relay refuses the subscription.
			void (async () => {
				const track = conn.consume(Moq.Path.from("secret")).subscribe("a", 0);
				try {
					const group = await track.recvGroup();
					emit({ type: "secret", result: group ? `group ${group.sequence}` : "ended" });
				} catch (e) {
					emit({ type: "secret", result: "error", error: describe(e) });
				}
			})();
			break;
		}
		case "burst": {
			const conn = await connectAndReport(url);
			const path = args[0];
			if (path !== "-") {
				const broadcast = new Moq.Broadcast();
				conn.publish(Moq.Path.from(path), broadcast);
				emit({ type: "published", path });
				void serveBursts(broadcast, (m) => emit({ ...m, path }), describe).catch((e) => fail(`publish: ${describe(e)}`));
			}
			const consumed = new Map();
			handlers.sub = (subPath, track) => {
				if (!consumed.has(subPath)) consumed.set(subPath, conn.consume(Moq.Path.from(subPath)));
				void readBurstTrack(consumed.get(subPath), track, (m) => emit({ ...m, path: subPath }), describe);
			};
			break;
		}
		case "refused": {
			const result = await Promise.race([
				connect(url).then(
					(conn) => ({ connected: true, version: conn.version }),
					(e) => ({ connected: false, error: describe(e) }),
				),
				// connect() never settles when the qmux session fails before
				// ready: give up 1 s after the WebSocket reported an error.
				(async () => {
					for (let i = 0; i < 100 && !sockets.some((s) => s.errors.length > 0); i++) await sleep(50);
					await sleep(1000);
					return { connected: false, error: "connect() still pending 1 s after the WebSocket failed" };
				})(),
			]);
			emit({ type: "refused", ...result, socketErrors: sockets.flatMap((s) => s.errors) });
			process.exit(0);
			break;
		}
		default:
			throw new Error(`unknown mode ${mode}`);
	}
	await commands.done.promise;
	process.exit(0);
}

main().catch(fail);
