// Bursts, shared by js/peer.js (Node) and web/burst.js (Chromium); the Go
// side is burst_test.go.
//
// A publisher serving bursts answers every subscribed track whose name is a
// burst shape, "<G>x<F>x<S>.<tag>", by writing G groups at once (no await
// between groups) on the track object it got for that SUBSCRIBE: frame k of
// the group with sequence g is patternFrame(g, k, S), for k < F. The track
// stays open. The tag only makes names distinct, so that every subscriber
// gets a subscription, and a burst, of its own.
//
// A subscriber reads every group in arrival order (track.recvGroup, the
// reference's arrival-order read) and reports, per group, its sequence, the
// size and SHA-256 (hex) of each frame, and the error that ended it if it
// was reset; the Go test compares them with the pattern.

// patternFrame is patternFrame in chromium_test.go: size bytes whose values
// depend on group, frame and offset.
export function patternFrame(group, frame, size) {
	const out = new Uint8Array(size);
	for (let j = 0; j < size; j++) out[j] = (group * 7 + frame * 13 + j) % 251;
	return out;
}

// burstShape parses a burst track name, or returns undefined.
export function burstShape(name) {
	const m = /^(\d+)x(\d+)x(\d+)\.[^.]+$/.exec(name);
	if (!m) return undefined;
	return { groups: Number(m[1]), frames: Number(m[2]), size: Number(m[3]) };
}

// writeBurst writes track's burst at once and returns the sequence of its
// first group.
export function writeBurst(track, shape) {
	let first;
	for (let i = 0; i < shape.groups; i++) {
		const g = track.appendGroup();
		if (first === undefined) first = g.sequence;
		for (let k = 0; k < shape.frames; k++) g.writeFrame(patternFrame(g.sequence, k, shape.size));
		g.close();
	}
	return first;
}

// serveBursts answers the requests for broadcast's tracks until it closes:
// burst tracks get their burst, other names are refused. report receives
// {type: "requested" | "burst-written", track, seq?, error?}.
export async function serveBursts(broadcast, report, describe) {
	for (;;) {
		const req = await broadcast.requested();
		if (!req) break;
		const track = req.track;
		report({ type: "requested", track: track.name });
		const shape = burstShape(track.name);
		if (!shape) {
			track.close(new Error(`no track ${track.name}`));
			continue;
		}
		try {
			const first = writeBurst(track, shape);
			report({ type: "burst-written", track: track.name, seq: first });
		} catch (e) {
			report({ type: "burst-written", track: track.name, error: describe(e) });
		}
	}
}

function hex(buf) {
	const b = new Uint8Array(buf);
	let s = "";
	for (let i = 0; i < b.length; i++) s += b[i].toString(16).padStart(2, "0");
	return s;
}

// readBurstTrack subscribes to track name of broadcast (a consumed
// Moq.Broadcast) and reports every group it receives, in arrival order:
// report({type: "burst-group", track, seq, sizes, hashes, error?}); when
// the track ends, report({type: "burst-track-ended", track, error?}).
export async function readBurstTrack(broadcast, name, report, describe) {
	const track = broadcast.subscribe(name, 0);
	try {
		for (;;) {
			const group = await track.recvGroup();
			if (!group) break;
			void readBurstGroup(name, group, report, describe);
		}
		report({ type: "burst-track-ended", track: name });
	} catch (e) {
		report({ type: "burst-track-ended", track: name, error: describe(e) });
	}
}

async function readBurstGroup(name, group, report, describe) {
	const sizes = [];
	const digests = [];
	let error;
	try {
		for (;;) {
			const f = await group.readFrame();
			if (f === undefined) break;
			sizes.push(f.byteLength);
			digests.push(crypto.subtle.digest("SHA-256", f));
		}
	} catch (e) {
		error = describe(e);
	}
	const hashes = (await Promise.all(digests)).map(hex);
	report({ type: "burst-group", track: name, seq: group.sequence, sizes, hashes, error });
}
