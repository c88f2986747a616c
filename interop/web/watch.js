// Browser side of the moqbridge playback test (TestWatchPlays). The Go test
// serves this page (bundled with esbuild) and passes in the query string:
//   relay  the URL of the moqbridge relay, https://127.0.0.1:PORT/
//   hash   the SHA-256 of the relay's certificate, in hex
//   name   the broadcast path to play
// The page plays the broadcast with the <moq-watch> element of @moq/watch
// 0.4.6 over WebTransport and reports to the page server over plain HTTP:
//   POST /log     every console message and uncaught error
//   POST /event   failed (with the error)
//   POST /report  every 250 ms, a snapshot of the player (see snapshot())
//   GET  /state   {done}: the test has what it needs, close the player
import MoqWatch from "@moq/watch/element";

import { describe, pollState, post, sleep, state, status } from "./report.js";

const params = new URLSearchParams(location.search);

// --- evidence of decoding --------------------------------------------------

// Every VideoFrame the decoder outputs (the element's video.out.frame
// signal): how many, their timestamps and size, and a checksum of a few
// of their pixels, so the test can tell real, changing pictures from a
// stuck or blank decoder.
const decoded = { count: 0, firstTs: undefined, lastTs: undefined, width: 0, height: 0, pictures: new Set() };
const probe = new OffscreenCanvas(16, 16);
const probeCtx = probe.getContext("2d", { willReadFrequently: true });

function onFrame(frame) {
	if (!frame) return;
	decoded.count++;
	const ts = frame.timestamp / 1000; // µs → ms
	if (decoded.firstTs === undefined) decoded.firstTs = ts;
	decoded.lastTs = ts;
	decoded.width = frame.displayWidth;
	decoded.height = frame.displayHeight;
	if (decoded.pictures.size < 1000) {
		try {
			probeCtx.drawImage(frame, 0, 0, 16, 16);
			const px = probeCtx.getImageData(0, 0, 16, 16).data;
			let h = 2166136261;
			for (let i = 0; i < px.length; i++) h = Math.imul(h ^ px[i], 16777619);
			decoded.pictures.add(h >>> 0);
		} catch (e) {
			console.warn("pixel probe:", e);
		}
	}
}

// --- main --------------------------------------------------------------------


function snapshot(el) {
	const est = el.connection.established.peek();
	const vstats = el.video.out.stats.peek();
	const astats = el.audio.out.stats.peek();
	const vconfig = el.video.source.out.config.peek();
	const aconfig = el.audio.source.out.config.peek();
	return {
		t: performance.now(),
		connection: el.connection.status.peek(),
		version: est?.version ?? "",
		broadcast: el.broadcast.out.status.peek(),
		catalog: el.broadcast.out.catalog.peek() ?? null,
		videoTrack: el.video.source.out.track.peek() ?? "",
		videoCodec: vconfig?.codec ?? "",
		videoError: el.video.source.out.error.peek() ? describe(el.video.source.out.error.peek()) : "",
		videoSubmitted: vstats?.frameCount ?? 0,
		videoBytes: vstats?.bytesReceived ?? 0,
		videoTimestamp: el.video.out.timestamp.peek() ?? null,
		rendererTimestamp: el.renderer.out.timestamp.peek() ?? null,
		videoStalled: el.video.out.stalled.peek(),
		decoded: decoded.count,
		decodedFirstTs: decoded.firstTs ?? null,
		decodedLastTs: decoded.lastTs ?? null,
		width: decoded.width,
		height: decoded.height,
		pictures: decoded.pictures.size,
		audioTrack: el.audio.source.out.track.peek() ?? "",
		audioCodec: aconfig?.codec ?? "",
		audioBytes: astats?.bytesReceived ?? 0,
		audioTimestamp: el.audio.out.timestamp.peek() ?? null,
		audioEnabled: el.emitter.out.enabled.peek(),
	};
}

async function main() {
	const relay = params.get("relay");
	const hash = params.get("hash");
	const name = params.get("name");
	if (!relay || !hash || !name) throw new Error("relay, hash and name are required in the query string");
	status(`playing ${name} from ${relay}`);
	void pollState();

	// The element connects once it has a url and is in the document; the
	// connection options are read at each attempt, so set them first.
	const el = document.createElement("moq-watch");
	if (!(el instanceof MoqWatch)) throw new Error("moq-watch is not the @moq/watch element");
	el.connection.webtransport = { serverCertificateHashes: [{ algorithm: "sha-256", value: hash }] };
	el.connection.websocket = { enabled: false };
	el.setAttribute("visible", "always");
	el.setAttribute("volume", "0.5");
	el.setAttribute("name", name);
	el.setAttribute("url", relay);
	el.appendChild(document.createElement("canvas"));
	document.body.appendChild(el);
	el.video.out.frame.subscribe(onFrame);
	void el.connection.closed.catch((e) => {
		console.error("connection gave up:", e);
		void post("/event", { type: "failed", error: `connection: ${describe(e)}` });
	});

	let last = "";
	while (!state.done) {
		const s = snapshot(el);
		const line = `${s.connection} ${s.version} ${s.broadcast} video=${s.videoTrack} decoded=${s.decoded}`;
		if (line !== last) {
			console.info(line);
			last = line;
		}
		await post("/report", s);
		await sleep(250);
	}
	status("done");
	el.remove();
}

main().catch((e) => {
	status(`failed: ${describe(e)}`);
	void post("/event", { type: "failed", error: describe(e) });
});
