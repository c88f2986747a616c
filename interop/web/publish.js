// Browser side of the moqbridge browser-publisher tests
// (TestPublishRecord*). The Go test serves this page (bundled with esbuild)
// and passes in the query string:
//   relay  the URL of the moqbridge relay, https://127.0.0.1:PORT/
//   hash   the SHA-256 of the relay's certificate, in hex
//   name   the broadcast path to publish
//   audio  "0" to publish the camera only (the element's muted attribute)
// The page publishes Chromium's fake camera and microphone with the
// <moq-publish> element of @moq/publish 0.2.17 (its default encoder
// choice) over WebTransport and reports to the page server over plain HTTP:
//   POST /log     every console message and uncaught error
//   POST /event   failed (with the error)
//   POST /report  every 250 ms, a snapshot of the publisher
//   GET  /state   {done}: the test has what it needs, stop publishing
import MoqPublish from "@moq/publish/element";

import { describe, pollState, post, sleep, state, status } from "./report.js";

const params = new URLSearchParams(location.search);


function snapshot(el) {
	const est = el.connection.established.peek();
	return {
		t: performance.now(),
		connection: el.connection.status.peek(),
		version: est?.version ?? "",
		video: el.broadcast.video.source.peek() !== undefined,
		audio: el.broadcast.audio.source.peek() !== undefined,
	};
}

async function main() {
	const relay = params.get("relay");
	const hash = params.get("hash");
	const name = params.get("name");
	if (!relay || !hash || !name) throw new Error("relay, hash and name are required in the query string");
	status(`publishing ${name} to ${relay}`);
	void pollState();

	const el = document.createElement("moq-publish");
	if (!(el instanceof MoqPublish)) throw new Error("moq-publish is not the @moq/publish element");
	// Read at each connection attempt: set before the element connects.
	el.connection.webtransport = { serverCertificateHashes: [{ algorithm: "sha-256", value: hash }] };
	el.connection.websocket = { enabled: false };
	el.setAttribute("preview", "none");
	if (params.get("audio") === "0") el.setAttribute("muted", "");
	el.setAttribute("name", name);
	el.setAttribute("url", relay);
	el.setAttribute("source", "camera");
	document.body.appendChild(el);
	void el.connection.closed.catch((e) => {
		console.error("connection gave up:", e);
		void post("/event", { type: "failed", error: `connection: ${describe(e)}` });
	});

	let last = "";
	while (!state.done) {
		const s = snapshot(el);
		const line = `${s.connection} ${s.version} video=${s.video} audio=${s.audio}`;
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
